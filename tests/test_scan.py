"""`clerk scan` end to end: real files, the real CLI in a subprocess, the real store."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from clerk.samples import jpeg, mp3, pdf, png


@pytest.fixture
def world(tmp_path: Path, clerk_home: Path) -> dict[str, Path]:
    inbox, out, trash = tmp_path / "inbox", tmp_path / "out", tmp_path / "trash"
    for d in (inbox, out):
        d.mkdir()
    (clerk_home / "config.yaml").write_text(f"trash_dir: {trash}\njournal_batch: 7\n")
    return {"inbox": inbox, "out": out, "trash": trash, "db": clerk_home / "clerk.db"}


def rules(write_rules: Callable[[str], Path], world: dict[str, Path], body: str) -> None:
    write_rules(
        f"roots:\n  inbox: {{path: {world['inbox']}}}\n"
        f"  out: {{path: {world['out']}, watch: false}}\nrules:\n{body}"
    )


SORT = """\
  - name: images
    in: inbox
    match: [{mime: "image/*"}]
    actions: [{move: "{out}/images/{name}"}]
  - name: pdfs
    in: inbox
    match: [{extension: pdf}]
    actions: [{move: "{out}/docs/{mtime:%Y}/{name}"}]
"""


def move_everything(write_rules: Callable[[str], Path], world: dict[str, Path]) -> None:
    """One rule: every file of the inbox goes to out/ under its own name."""
    out = world["out"]
    rules(
        write_rules,
        world,
        f"""\
  - name: all
    in: inbox
    actions: [{{move: "{out}/{{name}}"}}]
""",
    )


def sort_rules(write_rules: Callable[[str], Path], world: dict[str, Path]) -> None:
    rules(write_rules, world, SORT.replace("{out}", str(world["out"])))


def ops(world: dict[str, Path]) -> list[dict[str, object]]:
    return list(sqlite_utils.Database(world["db"])["ops"].rows)


def test_scan_moves_journals_and_catalogs(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    sort_rules(write_rules, world)
    (world["inbox"] / "a.png").write_bytes(png(1))
    (world["inbox"] / "disguised.txt").write_bytes(jpeg(2))  # MIME sees through the name
    (world["inbox"] / "report.pdf").write_bytes(pdf(3))
    (world["inbox"] / "notes.md").write_text("nothing matches me")
    result = clerk("scan", check=True)
    assert "4 files seen, 3 matched; done: 3 move" in result.stdout
    assert (world["out"] / "images" / "a.png").read_bytes() == png(1)
    assert (world["out"] / "images" / "disguised.txt").exists()
    year = next((world["out"] / "docs").iterdir()).name
    assert (world["out"] / "docs" / year / "report.pdf").exists()
    assert sorted(p.name for p in world["inbox"].iterdir()) == ["notes.md"]
    journal = ops(world)
    assert len(journal) == 3 and {o["state"] for o in journal} == {"done"}
    assert {o["rule"] for o in journal} == {"images", "pdfs"}
    listed = json.loads(clerk("files", "list", "--json", check=True).stdout)
    by_path = {(r["root"], r["relpath"]): r for r in listed}
    assert by_path[("out", "images/disguised.txt")]["mime"] == "image/jpeg"
    assert by_path[("inbox", "notes.md")]["mime"] == "text/plain"  # sniffed once, cached
    # a second scan finds nothing new to do
    again = clerk("scan", check=True)
    assert "done: nothing" in again.stdout
    assert len(ops(world)) == 3


def test_dry_run_changes_nothing(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    sort_rules(write_rules, world)
    (world["inbox"] / "a.png").write_bytes(png(1))
    result = clerk("scan", "--dry-run", check=True)
    assert f"[images] move {world['inbox']}/a.png -> {world['out']}/images/a.png" in result.stdout
    assert "would do: 1 move" in result.stdout
    assert (world["inbox"] / "a.png").exists()
    assert not (world["out"] / "images").exists()
    assert ops(world) == []


def test_first_match_wins_unless_continue(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    out = world["out"]
    rules(
        write_rules,
        world,
        f"""\
  - name: tag-invoices
    in: inbox
    match: [{{content: 'Invoice\\s+(?P<customer>\\w+)'}}]
    actions: [{{tag: [invoice, "{{customer}}"]}}]
    continue: true
  - name: texts
    in: inbox
    match: [{{extension: txt}}]
    actions: [{{move: "{out}/texts/{{name}}"}}]
  - name: never
    in: inbox
    match: [{{extension: txt}}]
    actions: [{{move: "{out}/never/{{name}}"}}]
""",
    )
    (world["inbox"] / "inv.txt").write_text("Invoice ACME\n")
    (world["inbox"] / "plain.txt").write_text("hello\n")
    clerk("scan", check=True)
    assert sorted(p.name for p in (out / "texts").iterdir()) == ["inv.txt", "plain.txt"]
    listed = json.loads(clerk("files", "list", "--json", check=True).stdout)
    assert {r["mime"] for r in listed} == {None}  # no rule needed it: never sniffed
    assert not (out / "never").exists()
    tagged = json.loads(clerk("files", "list", "--tag", "ACME", "--json", check=True).stdout)
    assert [r["relpath"] for r in tagged] == ["texts/inv.txt"]
    assert tagged[0]["tags"] == ["ACME", "invoice"]


def test_conflicts_never_overwrite(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    sort_rules(write_rules, world)
    (world["out"] / "images").mkdir()
    (world["out"] / "images" / "a.png").write_bytes(b"the one already there")
    (world["inbox"] / "a.png").write_bytes(png(1))
    clerk("scan", check=True)
    assert (world["out"] / "images" / "a.png").read_bytes() == b"the one already there"
    assert (world["out"] / "images" / "a (1).png").read_bytes() == png(1)


def test_duplicates_go_to_the_trash_and_come_back(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    rules(
        write_rules,
        world,
        """\
  - name: dupes
    in: inbox
    match: [{duplicate: true}]
    actions: [{trash: {}}]
""",
    )
    (world["inbox"] / "a.mp3").write_bytes(mp3(5))
    (world["inbox"] / "b.mp3").write_bytes(mp3(5))
    (world["inbox"] / "c.mp3").write_bytes(mp3(6))  # same size, other content
    result = clerk("scan", "--json", check=True)
    summary = json.loads(result.stdout)
    assert summary["done"] == {"trash": 1}
    left = sorted(p.name for p in world["inbox"].iterdir())
    assert len(left) == 2 and "c.mp3" in left
    trashed = list((world["trash"] / "files").iterdir())
    assert len(trashed) == 1 and trashed[0].read_bytes() == mp3(5)
    undo = clerk("undo", "--batch", summary["batches"][0], check=True)
    assert undo.stdout.startswith("done:")
    assert sorted(p.name for p in world["inbox"].iterdir()) == ["a.mp3", "b.mp3", "c.mp3"]


def test_destination_outside_roots_is_refused(world, write_rules, clerk, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rules(
        write_rules,
        world,
        """\
  - name: escape
    in: inbox
    match: [{extension: txt}]
    actions: [{move: "{stem}/../../../elsewhere/{name}"}]
""",
    )
    (world["inbox"] / "x.txt").write_text("x")
    result = clerk("scan")
    assert result.returncode == 1
    assert "outside every root" in result.stderr
    assert (world["inbox"] / "x.txt").exists()


def test_destination_through_a_symlink_is_judged_where_it_leads(  # type: ignore[no-untyped-def]
    world, write_rules, clerk, tmp_path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (world["out"] / "real").mkdir()
    os.symlink(outside, world["out"] / "sneaky")  # out of the roots: refused
    os.symlink("real", world["out"] / "alias")  # to a directory inside them: followed
    out = world["out"]
    rules(
        write_rules,
        world,
        f"""\
  - name: sneaky
    in: inbox
    match: [{{extension: txt}}]
    actions: [{{move: "{out}/sneaky/{{name}}"}}]
  - name: alias
    in: inbox
    match: [{{extension: md}}]
    actions: [{{move: "{out}/alias/sub/{{name}}"}}]
""",
    )
    (world["inbox"] / "x.txt").write_text("x")
    (world["inbox"] / "y.md").write_text("y")
    for dry in (["--dry-run"], []):
        result = clerk("scan", *dry)
        assert result.returncode == 1, result.stdout
        assert f"{out}/sneaky resolves to {outside}, outside every root" in result.stderr
    assert (world["inbox"] / "x.txt").exists() and not os.listdir(outside)
    assert (out / "real" / "sub" / "y.md").read_text() == "y"


def test_awkward_names(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    out = world["out"]
    move_everything(write_rules, world)
    names = [b"with space.txt", b"new\nline.txt", b"-rf", b"--help", b"caf\xe9-latin1.txt",
             b"$(touch pwned)"]  # fmt: skip
    for name in names:
        with open(os.path.join(os.fsencode(world["inbox"]), name), "wb") as fh:
            fh.write(name)
    clerk("scan", check=True)
    # control characters in rendered names become "_" (DESIGN: sanitized components)
    expected = {name.replace(b"\n", b"_"): name for name in names}
    assert sorted(os.listdir(os.fsencode(out))) == sorted(expected)
    for placed, name in expected.items():
        with open(os.path.join(os.fsencode(out), placed), "rb") as fh:
            assert fh.read() == name
    assert not Path("pwned").exists()
    history = json.loads(clerk("files", "list", "--root", "out", "--json", check=True).stdout)
    assert len(history) == len(names)


def test_symlinks_and_fifos_are_left_alone(world, write_rules, clerk, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = world["out"]
    move_everything(write_rules, world)
    target = tmp_path / "secret.txt"
    target.write_text("outside")
    os.symlink(target, world["inbox"] / "link.txt")
    os.mkfifo(world["inbox"] / "pipe")
    (world["inbox"] / "real.txt").write_text("r")
    clerk("scan", check=True)
    assert sorted(os.listdir(out)) == ["real.txt"]
    assert os.path.islink(world["inbox"] / "link.txt") and target.exists()


def test_organizing_inside_one_root_moves_each_file_once(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    inbox = world["inbox"]
    rules(
        write_rules,
        world,
        f"""\
  - name: nest
    in: inbox
    actions: [{{move: "{inbox}/sorted/{{ext}}/{{name}}"}}]
""",
    )
    for i in range(30):
        (inbox / f"f{i}.txt").write_text(str(i))
    clerk("scan", check=True)
    moved = sorted(p.name for p in (inbox / "sorted" / "txt").iterdir())
    assert len(moved) == 30 and all("(" not in n for n in moved)
    assert len(ops(world)) == 30


def test_scan_a_single_path_and_gone_files(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    sort_rules(write_rules, world)
    (world["inbox"] / "a.png").write_bytes(png(1))
    (world["inbox"] / "b.png").write_bytes(png(2))
    (world["inbox"] / "keep.md").write_text("k")
    clerk("scan", str(world["inbox"] / "a.png"), check=True)
    assert (world["out"] / "images" / "a.png").exists()
    assert (world["inbox"] / "b.png").exists()
    clerk("scan", "inbox", check=True)
    (world["inbox"] / "keep.md").unlink()
    clerk("scan", "inbox", check=True)
    everything = json.loads(clerk("files", "list", "--all", "--json", check=True).stdout)
    assert sorted(r["state"] for r in everything) == ["gone", "present", "present"]


def test_explain_shows_every_verdict(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    sort_rules(write_rules, world)
    path = world["inbox"] / "report.pdf"
    path.write_bytes(pdf(1))
    result = clerk("explain", str(path), check=True)
    assert "rule images: no" in result.stdout
    assert "- mime: mime application/pdf" in result.stdout
    assert "rule pdfs: MATCH" in result.stdout
    assert f"=> move -> {world['out']}/docs/" in result.stdout
    assert "would apply: pdfs" in result.stdout
    report = json.loads(clerk("explain", str(path), "--json", check=True).stdout)
    assert report["would_apply"] == ["pdfs"]
    assert path.exists() and ops(world) == []


def test_json_summary_lists_files(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    sort_rules(write_rules, world)
    (world["inbox"] / "a.png").write_bytes(png(1))
    data = json.loads(clerk("scan", "--json", check=True).stdout)
    assert data["seen"] == 1 and data["matched"] == 1 and data["failed"] == 0
    assert data["files"][0]["rules"] == ["images"]
    assert data["files"][0]["ops"][0]["status"] == "done"


def test_bad_rules_refuse_to_scan(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    rules(
        write_rules,
        world,
        """\
  - name: typo
    in: inbx
    match: [{extention: pdf}]
    actions: [{move: "/tmp/{name}"}]
""",
    )
    (world["inbox"] / "a.pdf").write_bytes(pdf(1))
    result = clerk("scan")
    assert result.returncode == 1
    assert "rules.yaml:" in result.stderr and "extension" in result.stderr
    assert "Traceback" not in result.stderr
    assert (world["inbox"] / "a.pdf").exists()


def test_keep_newest_spares_the_newest_per_group(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    rules(
        write_rules,
        world,
        """\
  - name: prune
    in: inbox
    every: 1d
    keep_newest: 2
    group_by: "{reldir}"
    match: [{extension: log}]
    actions: [{trash: {}}]
""",
    )
    for group in ("a", "b"):
        (world["inbox"] / group).mkdir()
        for age in range(4):
            path = world["inbox"] / group / f"{age}.log"
            path.write_text(str(age))
            stamp = 1_700_000_000 - age * 3600
            os.utime(path, (stamp, stamp))
    assert "done: nothing" in clerk("scan", check=True).stdout  # lifecycle: not on a plain scan
    clerk("scan", "--rule", "prune", check=True)
    for group in ("a", "b"):
        assert sorted(p.name for p in (world["inbox"] / group).iterdir()) == ["0.log", "1.log"]
    assert len(list((world["trash"] / "files").iterdir())) == 4


def test_a_stale_catalog_row_gives_way_to_the_file_now_there(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    sort_rules(write_rules, world)
    (world["inbox"] / "a.png").write_bytes(png(1))
    clerk("scan", check=True)
    (world["out"] / "images" / "a.png").unlink()  # gone behind clerk's back, not rescanned
    (world["inbox"] / "a.png").write_bytes(png(2))
    clerk("scan", "inbox", check=True)
    assert (world["out"] / "images" / "a.png").read_bytes() == png(2)
    rows = json.loads(clerk("files", "list", "--all", "--json", check=True).stdout)
    placed = [r for r in rows if r["relpath"] == "images/a.png"]
    assert len(placed) == 1 and placed[0]["state"] == "present"
    assert placed[0]["size"] == len(png(2))
    assert sorted(r["state"] for r in rows) == ["gone", "present"]


def test_a_trashed_file_keeps_its_name_in_the_catalog(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    """`files history/show ORIGINAL_PATH` find a trashed file; undo puts it back; a new
    file may take the trashed one's place meanwhile."""
    rules(
        write_rules,
        world,
        """\
  - name: junk
    in: inbox
    match: [{extension: junk}]
    actions: [{trash: {}}]
""",
    )
    path = world["inbox"] / "old.junk"
    path.write_text("junk")
    summary = json.loads(clerk("scan", "--json", check=True).stdout)
    assert summary["done"] == {"trash": 1} and not path.exists()
    shown = json.loads(clerk("files", "show", str(path), "--json", check=True).stdout)
    assert (shown["root"], shown["relpath"], shown["state"]) == ("inbox", "old.junk", "trashed")
    history = json.loads(clerk("files", "history", str(path), "--json", check=True).stdout)
    assert [(h["kind"], h["src"], h["state"]) for h in history] == [("trash", str(path), "done")]
    present = json.loads(clerk("files", "list", "--json", check=True).stdout)
    assert present == []  # a trashed file is no longer in its root
    everything = json.loads(clerk("files", "list", "--all", "--json", check=True).stdout)
    assert [(r["relpath"], r["state"]) for r in everything] == [("old.junk", "trashed")]
    # undo restores it, and the same catalog row is present at its place again
    clerk("undo", "--batch", summary["batches"][0], check=True)
    assert path.read_text() == "junk"
    back = json.loads(clerk("files", "show", str(path), "--json", check=True).stdout)
    assert (back["id"], back["relpath"], back["state"]) == (shown["id"], "old.junk", "present")
    # trashed again, then another file arrives under the same name: both are catalogued,
    # the path names the file there now, and the trashed one keeps its history
    clerk("scan", check=True)
    path.write_text("new junk, kept this time")
    rules(write_rules, world, "  - name: tag\n    in: inbox\n    actions: [{tag: [kept]}]\n")
    clerk("scan", check=True)
    now = json.loads(clerk("files", "show", str(path), "--json", check=True).stdout)
    assert now["state"] == "present" and now["id"] != shown["id"] and now["tags"] == ["kept"]
    old = json.loads(clerk("files", "history", str(shown["id"]), "--json", check=True).stdout)
    assert [h["kind"] for h in old] == ["trash", "move", "trash"]
    everything = json.loads(clerk("files", "list", "--all", "--json", check=True).stdout)
    assert sorted((r["relpath"], r["state"]) for r in everything) == [
        ("old.junk", "present"),
        ("old.junk", "trashed"),
    ]


def test_a_chained_rule_reads_facts_where_the_file_is(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    """After a planned move (`continue: true`), MIME, content and hash are read from the
    file where it is, not from its planned place (that said "mime failed ... No such
    file", cached application/octet-stream and matched no content)."""
    out = world["out"]
    rules(
        write_rules,
        world,
        f"""\
  - name: first
    in: inbox
    actions: [{{move: "{out}/{{name}}"}}]
    continue: true
  - name: second
    in: inbox
    match: [{{mime: "text/*"}}, {{content: 'hello (?P<who>\\w+)'}}]
    actions: [{{tag: ["{{who}}", "{{mime}}"]}}, {{copy: "{out}/{{hash}}-{{name}}"}}]
""",
    )
    (world["inbox"] / "a.txt").write_text("hello world\n")
    digest = hashlib.blake2b(b"hello world\n").hexdigest()
    copy = f"{out}/{digest}-a.txt"
    dry = clerk("scan", "--dry-run", check=True)
    assert f"[second] copy {out}/a.txt -> {copy}" in dry.stdout, dry.stdout
    assert "would do: 1 copy, 1 move, 1 tag" in dry.stdout and "failed" not in dry.stderr
    result = clerk("scan", check=True)
    assert "done: 1 copy, 1 move, 1 tag; 0 skipped, 0 failed" in result.stdout, result.stderr
    assert "No such file" not in result.stderr
    assert (out / "a.txt").read_text() == (Path(copy)).read_text() == "hello world\n"
    shown = json.loads(clerk("files", "show", str(out / "a.txt"), "--json", check=True).stdout)
    assert shown["mime"] == "text/plain" and shown["tags"] == ["text/plain", "world"]
    assert shown["errors"] == []


def test_actions_after_a_copy_or_link_act_on_the_file_not_on_what_was_made(
    clerk: Callable[..., Any], write_rules: Callable[[str], Path], world: dict[str, Path]
) -> None:
    """Only a move or rename takes the file elsewhere for the next action (docs/rules.md):
    `[copy, symlink, move]` moved the copy and linked to it, leaving the original behind."""
    inbox, out = world["inbox"], world["out"]
    rules(
        write_rules,
        world,
        f"""\
  - name: backup-then-file
    in: inbox
    actions: [{{copy: "{out}/backup/{{name}}"}}, {{symlink: "{out}/links/{{name}}"}},
              {{move: "{out}/filed/{{name}}"}}, {{hardlink: "{out}/filed/again-{{name}}"}}]
""",
    )
    (inbox / "a.txt").write_text("the original")
    original_inode = (inbox / "a.txt").stat().st_ino
    planned = clerk("scan", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert f"symlink {inbox}/a.txt -> {out}/links/a.txt" in planned.stdout
    assert f"move {inbox}/a.txt -> {out}/filed/a.txt" in planned.stdout
    assert f"hardlink {out}/filed/a.txt -> {out}/filed/again-a.txt" in planned.stdout
    done = clerk("scan")
    assert done.returncode == 0, done.stderr
    assert not (inbox / "a.txt").exists()
    assert (out / "filed" / "a.txt").stat().st_ino == original_inode
    assert (out / "filed" / "again-a.txt").stat().st_ino == original_inode
    assert (out / "backup" / "a.txt").read_text() == "the original"
    assert os.readlink(out / "links" / "a.txt") == str(inbox / "a.txt")


KEEPING = """\
  - name: keep
    in: inbox
    actions: [{{copy: "{out}/copies/{{name}}"}}, {{symlink: "{out}/links/{{name}}"}},
              {{archive: "{out}/tars/{{stem}}.tar", keep_source: true}}]
"""


def test_a_rule_acts_once_on_a_file_version_it_left_in_place(
    clerk: Callable[..., Any], write_rules: Callable[[str], Path], world: dict[str, Path]
) -> None:
    """A copy, link or kept-source archive is not made again by the next scan of an
    unchanged file (it made `a (1).txt` every time); a changed file, or an undone op,
    gets it again. The daemon's reconcile never re-ran them: now scan agrees."""
    inbox, out = world["inbox"], world["out"]
    rules(write_rules, world, KEEPING.format(out=out))
    (inbox / "a.txt").write_text("one")
    first = clerk("scan", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["done"] == {"copy": 1, "symlink": 1, "archive": 1}
    listing = sorted(str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir())

    again = clerk("scan", "--json")
    summary = json.loads(again.stdout)
    assert (summary["done"], summary["matched"], summary["already_done"]) == ({}, 1, 1)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir()) == listing
    dry = clerk("scan", "--dry-run")
    assert "would do: nothing" in dry.stdout and "1 already done" in dry.stdout
    explained = json.loads(clerk("explain", str(inbox / "a.txt"), "--json").stdout)
    (keep,) = [r for r in explained["rules"] if r["rule"] == "keep"]
    assert keep["status"] == "already done" and "op " in keep["reason"], keep

    (inbox / "a.txt").write_text("two, longer")  # a new version: acted on again
    assert json.loads(clerk("scan", "--json").stdout)["done"]["copy"] == 1
    assert (out / "copies" / "a (1).txt").read_text() == "two, longer"
