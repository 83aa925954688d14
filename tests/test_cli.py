"""The rest of the CLI: init, check, undo, files, db, demo, help and exit codes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from clerk.samples import png


def test_help_lists_the_commands(clerk) -> None:  # type: ignore[no-untyped-def]
    result = clerk("--help", check=True)
    for command in ("init", "check", "scan", "explain", "undo", "files", "plugins", "db"):
        assert f"  {command} " in result.stdout
    assert clerk("no-such-command").returncode == 2


def test_init_then_check(clerk, clerk_home: Path) -> None:  # type: ignore[no-untyped-def]
    result = clerk("init", check=True)
    assert f"wrote: {clerk_home / 'config.yaml'}" in result.stdout
    assert (clerk_home / "rules.d" / "starter.yaml").exists()
    again = clerk("init", check=True)
    assert "kept (exists" in again.stdout
    checked = clerk("check")
    # the starter roots (~/Downloads ...) do not exist in the test's empty HOME
    assert checked.returncode == 1
    assert "starter.yaml:" in checked.stdout and "Downloads" in checked.stdout
    home = Path(clerk_home).parent / "home"
    for name in ("Downloads", "Documents", "Pictures"):
        (home / name).mkdir()
    ok = clerk("check", check=True)
    assert ok.stdout.startswith("ok: 3 rules, 3 roots")
    report = json.loads(clerk("check", "--json", check=True).stdout)
    assert report["ok"] is True and report["rules"] == 3


def test_check_reports_every_problem_with_places(clerk, write_rules) -> None:  # type: ignore[no-untyped-def]
    path = write_rules(
        "roots:\n  inbox: {path: /tmp}\nrules:\n"
        "  - name: a\n    in: inbox\n    match: [{extention: pdf}]\n    actions: [{move: x}]\n"
        "  - name: b\n    in: inbox\n    match: [{size: big}]\n    actions: [{trash: {}}]\n"
    )
    result = clerk("check")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{path}:6:") and "extension" in line for line in lines)
    assert any(line.startswith(f"{path}:10:") and "size" in line for line in lines)
    assert "Traceback" not in result.stderr


def _scan_world(tmp_path: Path, write_rules, clerk_home: Path) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    (clerk_home / "config.yaml").write_text(f"trash_dir: {tmp_path / 'trash'}\n")
    write_rules(
        f"roots:\n  inbox: {{path: {inbox}}}\n  out: {{path: {out}, watch: false}}\nrules:\n"
        f"  - name: images\n    in: inbox\n    match: [{{extension: png}}]\n"
        f"    actions: [{{move: '{out}/{{name}}'}}, {{tag: photo}}]\n"
    )
    for i in range(3):
        (inbox / f"p{i}.png").write_bytes(png(i))
    return inbox, out


def test_undo_redo_and_history(tmp_path, write_rules, clerk_home, clerk) -> None:  # type: ignore[no-untyped-def]
    inbox, out = _scan_world(tmp_path, write_rules, clerk_home)
    clerk("scan", check=True)
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]
    shown = json.loads(clerk("files", "show", str(out / "p1.png"), "--json", check=True).stdout)
    assert shown["root"] == "out" and shown["tags"] == ["photo"]
    preview = clerk("undo", "--last", "1", "--dry-run", check=True)
    assert "planned" in preview.stdout
    assert len(list(out.iterdir())) == 3
    clerk("undo", "--last", "3", check=True)
    assert sorted(p.name for p in inbox.iterdir()) == ["p0.png", "p1.png", "p2.png"]
    assert not list(out.iterdir())
    # the catalog followed the files back
    shown = json.loads(clerk("files", "show", str(inbox / "p1.png"), "--json", check=True).stdout)
    assert shown["root"] == "inbox" and shown["id"] is not None
    history = json.loads(clerk("files", "history", str(inbox / "p1.png"), "--json",
                               check=True).stdout)  # fmt: skip
    assert [h["kind"] for h in history] == ["move", "move"]
    assert [h["state"] for h in history] == ["undone", "done"]
    # undo of the undo is a redo
    clerk("undo", "--last", "1", check=True)
    assert len(list(out.iterdir())) == 1


def test_undo_refuses_when_the_world_changed(tmp_path, write_rules, clerk_home, clerk) -> None:  # type: ignore[no-untyped-def]
    inbox, out = _scan_world(tmp_path, write_rules, clerk_home)
    clerk("scan", check=True)
    (out / "p0.png").unlink()
    (inbox / "p1.png").write_text("someone put a new file where p1 was")
    result = clerk("undo", "--last", "3")
    assert result.returncode == 1
    assert result.stdout.count("failed:") == 2
    assert (out / "p1.png").read_bytes() == png(1)  # refused: nothing overwritten
    assert (inbox / "p2.png").read_bytes() == png(2)  # the untouched one came back
    assert clerk("undo").returncode == 2  # usage: say what to undo


def test_files_list_filters(tmp_path, write_rules, clerk_home, clerk) -> None:  # type: ignore[no-untyped-def]
    _scan_world(tmp_path, write_rules, clerk_home)
    (tmp_path / "inbox" / "notes.txt").write_text("n")
    clerk("scan", check=True)
    rows = json.loads(clerk("files", "list", "--root", "out", "--json", check=True).stdout)
    assert len(rows) == 3
    rows = json.loads(clerk("files", "list", "--tag", "photo", "--json", check=True).stdout)
    assert len(rows) == 3
    rows = json.loads(clerk("files", "list", "--path", "*.txt", "--json", check=True).stdout)
    assert [r["relpath"] for r in rows] == ["notes.txt"]
    lines = clerk("files", "list", "--nl", check=True).stdout.splitlines()
    assert len(lines) == 4 and all(json.loads(line)["id"] for line in lines)
    table = clerk("files", "list", check=True).stdout
    assert "notes.txt" in table
    missing = clerk("files", "show", str(tmp_path / "nope.txt"))
    assert missing.returncode == 1 and "not in the catalog" in missing.stderr


def test_db_commands(tmp_path, write_rules, clerk_home, clerk) -> None:  # type: ignore[no-untyped-def]
    _scan_world(tmp_path, write_rules, clerk_home)
    clerk("scan", check=True)
    assert clerk("db", "path", check=True).stdout.strip() == str(clerk_home / "clerk.db")
    stats = json.loads(clerk("db", "stats", "--json", check=True).stdout)
    assert stats["rows.files"] == 3 and stats["ops.state.done"] == 3
    assert "m001_catalog_and_journal" in stats["migrations"]
    assert clerk("db", "check", check=True).stdout.strip() == "ok"
    backup = tmp_path / "backup.db"
    clerk("db", "backup", str(backup), check=True)
    copied = sqlite3.connect(backup).execute("SELECT count(*) FROM ops").fetchone()[0]
    assert copied == 3
    refused = clerk("db", "backup", str(backup))
    assert refused.returncode == 1 and "does not overwrite" in refused.stderr


def test_bad_config_is_a_message_not_a_traceback(clerk, clerk_home: Path) -> None:  # type: ignore[no-untyped-def]
    (clerk_home / "config.yaml").write_text("concurrency: [\n")
    result = clerk("scan")
    assert result.returncode == 1
    assert "config.yaml:" in result.stderr and "YAML syntax error" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo(clerk, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = clerk("demo", "--dir", str(tmp_path / "demo"), check=True)
    organized = tmp_path / "demo" / "organized"
    assert any(organized.rglob("*.png")) and any(organized.rglob("*.pdf"))
    assert "undo --batch" in result.stdout
    # a second run starts over; an unrelated directory is refused
    clerk("demo", "--dir", str(tmp_path / "demo"), check=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("x")
    refused = clerk("demo", "--dir", str(tmp_path / "mine"))
    assert refused.returncode == 1 and (tmp_path / "mine" / "precious.txt").exists()


def test_lazy_commands_list_their_own_help() -> None:
    """`clerk --help` shows registered help for commands it does not import: keep in sync."""
    import click

    from clerk.cli import ClerkGroup, cli

    ctx = click.Context(cli)
    for name, (_, short_help) in ClerkGroup.lazy_commands.items():
        command = cli.get_command(ctx, name)
        assert command is not None, name
        assert (command.help or "").strip().splitlines()[0] == short_help, name
