"""A scan of many files does what scanning them one at a time does, in the walk's order,
and its dry run says so: regressions the differential test (test_differential.py) found.

fileops executes a batch's requests in rounds (every file's first op, then every
file's second...), one journal commit per round. Two files that meet at a name (the
same destination, a name a conflict makes, the trash) used to meet in that order, not
in the files' order: a file moved on by its own second op still held its first
destination for the other file, and an `overwrite` of a name another file had just
taken failed. A dry run, which changes nothing, could not see a name an earlier file
had freed, nor read a file a chained op had not put in place yet.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Clerk = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def dirs(tmp_path: Path, clerk_home: Path) -> dict[str, Path]:
    (clerk_home / "config.yaml").write_text(f"trash_dir: {tmp_path / 'trash'}\n")
    return {name: tmp_path / name for name in ("inbox", "out", "trash")}


def make(dirs: dict[str, Path], files: dict[str, bytes]) -> None:
    """A fresh world: every dir emptied, then `files` (paths under the dirs' parent)."""
    for path in dirs.values():
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
    base = dirs["inbox"].parent
    for relpath, content in files.items():
        (base / relpath).parent.mkdir(parents=True, exist_ok=True)
        (base / relpath).write_bytes(content)


def disk(dirs: dict[str, Path]) -> list[tuple[str, bytes]]:
    base = dirs["inbox"].parent
    return sorted(
        (str(p.relative_to(base)), p.read_bytes())
        for name in ("inbox", "out", "trash")
        for p in dirs[name].rglob("*")
        if p.is_file() and "info" not in p.relative_to(dirs[name]).parts[:1]
    )


def ops(report: dict[str, Any], base: Path) -> list[tuple[str, str, str | None, str]]:
    def rel(path: str | None) -> str | None:
        return None if path is None else os.path.relpath(path, base)

    return [
        (
            op["kind"],
            rel(op["src"]),
            rel(op.get("dst")),
            "ok" if op["status"] in ("planned", "done") else op["status"],
        )
        for f in report["files"]
        for op in f["ops"]
    ]


def agree(
    clerk: Clerk, dirs: dict[str, Path], files: dict[str, bytes], order: list[str]
) -> tuple[list[Any], list[tuple[str, bytes]]]:
    """Scan the world one file at a time (in `order`, the walk's), then as a whole, dry
    and for real: the same ops and the same disk. Returns them."""
    base = dirs["inbox"].parent
    make(dirs, files)
    one_by_one: list[Any] = []
    for relpath in order:
        report = json.loads(clerk("scan", "--json", str(base / relpath)).stdout)
        one_by_one += ops(report, base)
    expected_disk = disk(dirs)
    make(dirs, files)
    planned = ops(json.loads(clerk("scan", "--dry-run", "--json").stdout), base)
    done = ops(json.loads(clerk("scan", "--json").stdout), base)
    assert done == one_by_one
    assert planned == one_by_one
    assert disk(dirs) == expected_disk
    return one_by_one, expected_disk


def test_an_overwritten_name_freed_by_the_first_file_is_free_for_the_second(
    dirs: dict[str, Path], write_rules: Callable[[str], Path], clerk: Clerk
) -> None:
    write_rules(
        f"roots:\n  inbox: {dirs['inbox']}\n  out: {{path: {dirs['out']}, watch: false}}\n"
        "rules:\n  - name: r0\n    in: inbox\n    actions:\n"
        f"      - {{move: '{dirs['out']}/flat/{{name}}', on_conflict: overwrite}}\n"
        "      - {trash: {}}\n"
    )
    files = {"inbox/a.txt": b"one", "inbox/sub/a.txt": b"two", "out/flat/a.txt": b"old"}
    done, left = agree(clerk, dirs, files, ["inbox/a.txt", "inbox/sub/a.txt"])
    assert done == [
        ("move", "inbox/a.txt", "out/flat/a.txt", "ok"),
        ("trash", "out/flat/a.txt", "trash/files/a (1).txt", "ok"),
        ("move", "inbox/sub/a.txt", "out/flat/a.txt", "ok"),  # nothing there any more
        ("trash", "out/flat/a.txt", "trash/files/a (2).txt", "ok"),
    ]
    assert left == [
        ("trash/files/a (1).txt", b"one"),
        ("trash/files/a (2).txt", b"two"),
        ("trash/files/a.txt", b"old"),
    ]


def test_a_name_the_first_file_moved_on_from_is_free_for_the_second(
    dirs: dict[str, Path], write_rules: Callable[[str], Path], clerk: Clerk
) -> None:
    write_rules(
        f"roots:\n  inbox: {dirs['inbox']}\n  out: {{path: {dirs['out']}, watch: false}}\n"
        "rules:\n  - name: r0\n    in: inbox\n    continue: true\n"
        f"    actions: [{{move: '{dirs['out']}/flat/{{name}}'}}]\n"
        "  - name: r1\n    in: inbox\n    actions: [{move: 'sorted/{name}'}]\n"
    )
    files = {"inbox/a.txt": b"one", "inbox/sub/a.txt": b"two"}
    done, left = agree(clerk, dirs, files, ["inbox/a.txt", "inbox/sub/a.txt"])
    assert done == [
        ("move", "inbox/a.txt", "out/flat/a.txt", "ok"),
        ("move", "out/flat/a.txt", "out/flat/sorted/a.txt", "ok"),
        ("move", "inbox/sub/a.txt", "out/flat/a.txt", "ok"),  # not "a (1).txt"
        ("move", "out/flat/a.txt", "out/flat/sorted/a (1).txt", "ok"),
    ]
    assert left == [("out/flat/sorted/a (1).txt", b"two"), ("out/flat/sorted/a.txt", b"one")]


def test_a_dry_run_dedupes_against_a_file_a_chained_move_brings(
    dirs: dict[str, Path], write_rules: Callable[[str], Path], clerk: Clerk
) -> None:
    write_rules(
        f"roots:\n  inbox: {dirs['inbox']}\n  out: {{path: {dirs['out']}, watch: false}}\n"
        "rules:\n  - name: r0\n    in: inbox\n    actions:\n"
        f"      - {{move: '{dirs['out']}/flat/{{name}}'}}\n"
        "      - {rename: 'r-{name}', on_conflict: dedupe}\n"
    )
    files = {"inbox/a.txt": b"same", "out/flat/r-a.txt": b"same"}
    done, left = agree(clerk, dirs, files, ["inbox/a.txt"])
    assert done == [
        ("move", "inbox/a.txt", "out/flat/a.txt", "ok"),
        ("trash", "out/flat/a.txt", "trash/files/a.txt", "ok"),  # a duplicate of r-a.txt
    ]
    assert left == [("out/flat/r-a.txt", b"same"), ("trash/files/a.txt", b"same")]


def catalog(clerk_home: Path) -> list[tuple[str, str, str]]:
    import sqlite_utils

    db = sqlite_utils.Database(clerk_home / "clerk.db")
    try:
        return sorted(db.execute("SELECT root, COALESCE(relpath, ''), state FROM files").fetchall())
    finally:
        db.close()


def test_a_file_a_later_one_overwrites_is_trashed_in_the_catalog(
    dirs: dict[str, Path], write_rules: Callable[[str], Path], clerk: Clerk, clerk_home: Path
) -> None:
    """The second a.txt's overwrite trashes the first (moved there by the same scan): its
    catalog row said present (a row written after the batch; only rows already there
    were marked), and the scan of one file at a time said trashed."""
    write_rules(
        f"roots:\n  inbox: {dirs['inbox']}\n  out: {{path: {dirs['out']}, watch: false}}\n"
        "rules:\n  - name: r0\n    in: inbox\n"
        f"    actions: [{{move: '{dirs['out']}/{{name}}', on_conflict: overwrite}}]\n"
    )
    files = {"inbox/a.txt": b"one", "inbox/sub/a.txt": b"two"}
    make(dirs, files)
    for relpath in ("inbox/a.txt", "inbox/sub/a.txt"):
        clerk("scan", str(dirs["inbox"].parent / relpath), check=True)
    one_by_one = catalog(clerk_home)
    (clerk_home / "clerk.db").unlink()
    make(dirs, files)
    clerk("scan", check=True)
    assert catalog(clerk_home) == one_by_one == [("out", "a.txt", "present"),
                                                 ("out", "a.txt", "trashed")]  # fmt: skip


def test_files_that_meet_nothing_go_in_one_wave() -> None:
    from clerk.fileops.execute import waves
    from clerk.fileops.types import OpRequest

    requests = [OpRequest("move", f"/in/{i}.txt", f"/out/{i}.txt") for i in range(100)]
    assert waves(requests) == [list(range(100))]
    # a file meets another at its destination, at a name a conflict makes of it, and in
    # the trash; its chain goes after the whole chain of the file before it
    requests = [
        OpRequest("move", "/in/a.txt", "/out/a.txt"),
        OpRequest("trash", "/out/a.txt", chain=0),
        OpRequest("move", "/in/b.txt", "/out/b.txt"),
        OpRequest("move", "/in/sub/a (1).txt", "/out/a (1).txt"),
        OpRequest("trash", "/in/x/b.txt"),
    ]
    assert waves(requests) == [[0, 1, 2], [3, 4]]
