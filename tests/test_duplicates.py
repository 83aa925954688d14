"""`duplicate`: one original per content, decided once, the same in a dry run and a scan.

Real files, the real `clerk` in a subprocess, the real store; trash goes to a
`trash_dir` inside the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import test_scan
from conftest import run_clerk
from test_scan import rules

world = test_scan.world  # the same fixture: inbox, out/, a trash_dir in tmp, batches of 7

Clerk = Callable[..., subprocess.CompletedProcess[str]]


TAG = "  - name: tag\n    in: inbox\n    actions: [{tag: [seen]}]\n"


def trash_duplicates(original: str | None = None) -> str:
    match = "{duplicate: true}" if original is None else f"{{duplicate: {{original: {original}}}}}"
    return f"  - name: dupes\n    in: inbox\n    match: {match}\n    actions: [{{trash: {{}}}}]\n"


def scan(clerk: Clerk, *args: str) -> dict[str, Any]:
    return json.loads(clerk("scan", "--json", *args, check=True).stdout)  # type: ignore[no-any-return]


def catalog_ids(clerk: Clerk) -> dict[str, int]:
    listed = json.loads(clerk("files", "list", "--root", "inbox", "--json", check=True).stdout)
    return {row["relpath"]: row["id"] for row in listed}


def test_trashing_duplicates_keeps_the_copy_catalogued_first(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    """Both copies catalogued, then `duplicate: true` + trash: one goes (it trashed
    both, each "duplicate of" the other), the same one after undo, and the one left is
    no duplicate of the one in the trash."""
    inbox = world["inbox"]
    (inbox / "a.txt").write_text("the same\n")
    (inbox / "b.txt").write_text("the same\n")
    rules(write_rules, world, TAG)
    clerk("scan", check=True)
    ids = catalog_ids(clerk)
    first, second = sorted(ids, key=ids.__getitem__)
    rules(write_rules, world, trash_duplicates())
    for _ in range(2):  # the same again after undo
        summary = scan(clerk)
        assert summary["done"] == {"trash": 1}, summary
        assert sorted(p.name for p in inbox.iterdir()) == [first]
        [outcome] = summary["files"]
        assert outcome["path"] == str(inbox / second)
        again = scan(clerk)
        assert again["done"] == {} and again["matched"] == 0, again
        clerk("undo", "--batch", summary["batches"][0], check=True)
        assert sorted(p.name for p in inbox.iterdir()) == ["a.txt", "b.txt"]


def test_the_copy_left_is_no_duplicate_of_one_that_is_gone(world, write_rules, clerk) -> None:  # type: ignore[no-untyped-def]
    """The catalog still says present, the file is gone (removed by hand, not rescanned):
    the copies left pick their original among themselves."""
    inbox = world["inbox"]
    for name in ("a.txt", "b.txt", "c.txt"):
        (inbox / name).write_text("the same\n")
    rules(write_rules, world, TAG)
    clerk("scan", check=True)
    ids = catalog_ids(clerk)
    first, second, _ = sorted(ids, key=ids.__getitem__)
    (inbox / first).unlink()
    rules(write_rules, world, trash_duplicates())
    summary = scan(clerk)
    assert summary["done"] == {"trash": 1}, summary
    assert sorted(p.name for p in inbox.iterdir()) == [second]
    (inbox / "d.txt").write_text("the same\n")  # new: the one catalogued first stays
    assert scan(clerk)["done"] == {"trash": 1}
    assert sorted(p.name for p in inbox.iterdir()) == [second]
    (inbox / second).unlink()
    assert scan(clerk)["done"] == {}


@pytest.mark.parametrize(
    ("original", "kept"), [("oldest", "zz-old.txt"), ("shortest_name", "b.txt")]
)
def test_the_user_picks_the_original(world, write_rules, clerk, original, kept) -> None:  # type: ignore[no-untyped-def]
    """`original: oldest | shortest_name`, in a first scan of copies nobody catalogued:
    whichever copy the walk meets first, the original is the one the order puts first."""
    inbox = world["inbox"]
    now = 1_700_000_000
    for age, name in enumerate(["a copy.txt", "b.txt", "c (1).txt", "zz-old.txt"]):
        (inbox / name).write_text("the same\n")
        os.utime(inbox / name, (now - age * 3600, now - age * 3600))
    rules(write_rules, world, trash_duplicates(original))
    dry = scan(clerk, "--dry-run")
    summary = scan(clerk)
    assert summary["done"] == {"trash": 3}, summary
    assert [p.name for p in inbox.iterdir()] == [kept]
    assert sorted(f["path"] for f in dry["files"]) == sorted(f["path"] for f in summary["files"])
    assert scan(clerk)["done"] == {}


def _plan(summary: dict[str, Any]) -> dict[str, list[tuple[str, str, str | None]]]:
    """Per file, the operations (kind, source, destination) a scan did or would do."""
    return {
        f["path"]: [(op["kind"], op["src"], op.get("dst")) for op in f["ops"]]
        for f in summary["files"]
    }


@pytest.mark.parametrize("original", [None, "oldest"])
def test_a_dry_run_plans_what_the_scan_does(world, write_rules, clerk, original) -> None:  # type: ignore[no-untyped-def]
    """A few hundred files of 3 contents, half of them catalogued by an earlier scan,
    met in batches of 7: the dry run's plan is what the scan then does, file by file
    (it said 594 trash where the scan trashed 597), and one copy of each content stays."""
    inbox, out = world["inbox"], world["out"]
    contents = [bytes([65 + k]) * 64 for k in range(3)]  # one size: one group of copies
    now = 1_700_000_000

    def write(start: int, count: int) -> None:
        for i in range(start, start + count):
            (inbox / f"f{i:03d}.dat").write_bytes(contents[i % 3])
            os.utime(inbox / f"f{i:03d}.dat", (now - (i * 7919) % 1000, now - (i * 7919) % 1000))

    write(0, 150)
    rules(write_rules, world, TAG)
    clerk("scan", check=True)
    write(150, 150)
    rules(
        write_rules,
        world,
        trash_duplicates(original)
        + f"  - name: keep\n    in: inbox\n    actions: [{{move: '{out}/{{name}}'}}]\n",
    )
    dry = scan(clerk, "--dry-run")
    done = scan(clerk)
    assert dry["planned"] == done["done"] == {"move": 3, "trash": 297}, (dry, done)
    assert _plan(dry) == _plan(done)
    kept = sorted(p.read_bytes() for p in out.iterdir())
    assert kept == contents and list(inbox.iterdir()) == []


@pytest.mark.parametrize("dry_run", [True, False])
def test_copies_of_a_size_are_read_from_the_catalog_once_a_run(world, write_rules, dry_run) -> None:  # type: ignore[no-untyped-def]
    """The catalog's copies of a size are read once per run, not once per file: a
    scan of N same-size files read N times N rows (hundreds of seconds for 20,000)."""
    from clerk.app import App

    inbox = world["inbox"]
    for i in range(300):
        (inbox / f"f{i:03d}.dat").write_bytes(bytes([65 + i % 3]) * 64)
    app = App()
    rules(write_rules, world, TAG)
    app.engine(app.rules()).scan()
    rules(write_rules, world, trash_duplicates())
    statements: list[str] = []
    app.store.conn.set_trace_callback(statements.append)
    try:
        summary = app.engine(app.rules(), dry_run=dry_run).scan()
    finally:
        app.store.conn.set_trace_callback(None)
    by_size = [s for s in statements if "FROM files WHERE size = " in s]
    assert len(by_size) == 1, (len(by_size), by_size[:3])
    assert (summary.planned if dry_run else summary.done) == {"trash": 297}


def test_the_daemon_keeps_the_original_too(tmp_path, clerk_home, write_rules) -> None:  # type: ignore[no-untyped-def]
    """Copies arriving while the daemon runs go to the trash, the catalogued original
    stays; once it is gone (removed by hand), the next copy is nobody's duplicate."""
    from test_daemon_support import files_under, running_daemon, wait_until, write_config

    inbox, trash = tmp_path / "inbox", tmp_path / "trash"
    inbox.mkdir()
    write_config(clerk_home, f"reconcile_interval: 1h\ntrash_dir: {trash}\n")
    write_rules(
        f"roots:\n  inbox: {{path: {inbox}, settle: 0.2s}}\nrules:\n"
        + trash_duplicates()
        + "  - name: unique\n    in: inbox\n    actions: [{tag: [unique]}]\n"
    )
    (inbox / "original.txt").write_text("the same\n")
    with running_daemon(tmp_path) as (daemon, _):
        for name in ("copy-1.txt", "copy-2.txt"):
            (inbox / name).write_text("the same\n")
        wait_until(lambda: len(files_under(trash / "files")) == 2, what="two copies trashed")
        assert files_under(inbox) == ["original.txt"], daemon.log()
        (inbox / "original.txt").unlink()
        (inbox / "copy-3.txt").write_text("the same\n")
        listed = ["files", "list", "--tag", "unique", "--path", "copy-3.txt", "--json"]
        wait_until(
            lambda: json.loads(run_clerk(*listed, check=True).stdout) != [],
            what="copy-3.txt tagged unique",
        )
        assert files_under(inbox) == ["copy-3.txt"] and len(files_under(trash / "files")) == 2
