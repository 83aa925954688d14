"""Which files of a root clerk handles is one decision (`clerk.rules.walk.accepts`): the
walk (`clerk scan`, reconcile, lifecycle sweeps), the daemon's events and explicit paths
(`clerk scan PATH`, `clerk explain PATH`) all ask it, so they agree (issue 12).

The daemon used to check the ignore globs against the file name only: with
`ignore: [node_modules]`, scan skipped `node_modules/pkg/during.txt` and the daemon
moved it when it arrived.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from test_daemon_support import files_under, running_daemon, wait_until, write_config

from clerk.daemon.control import request
from clerk.roots import DEFAULT_IGNORE, Root, RootSet
from clerk.rules.walk import accepts, candidate_for, walk_root

Clerk = Callable[..., subprocess.CompletedProcess[str]]

IGNORE = ["node_modules", "tmp-*"]
#: files under the inbox that clerk leaves alone, and why
IGNORED = [
    "node_modules/pkg/during.txt",  # under an ignored directory
    "a/b/node_modules/deep/nested.txt",  # under an ignored directory further down
    "node_modules/x/node_modules/twice.txt",  # ignored twice over
    "tmp-123/globbed.txt",  # a directory an ignore glob matches
    "a/tmp-file.txt",  # a file an ignore glob matches
    "x.part",  # a default ignore glob
    ".Trash-1000/files/trashed.txt",  # a trash directory
]
#: files that are handled, hidden ones included (clerk has no rule of its own for them)
HANDLED = [
    "top.txt",
    "a/b/deep.txt",
    "node_modules_not/near.txt",  # the glob is the whole name: not this directory
    ".hidden.txt",
    ".config/in-hidden-dir.txt",
]


def _name(relpath: str) -> str:
    return relpath.replace("/", "_")


@pytest.fixture
def dirs(tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path]) -> tuple[Path, Path]:
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    inbox.mkdir()
    archive.mkdir()
    write_rules(
        f"roots:\n  inbox: {{path: {inbox}, settle: 0.2s, ignore: {IGNORE}}}\n"
        f"  archive: {{path: {archive}, watch: false}}\nrules:\n  - name: all\n"
        f"    in: inbox\n    actions: [{{move: '{archive}/{{name}}'}}]\n"
    )
    write_config(clerk_home, "reconcile_interval: 1h\n")
    return inbox, archive


def _make(base: Path, relpaths: list[str]) -> None:
    for relpath in relpaths:
        path = base / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(relpath)


def _moved(archive: Path) -> list[str]:
    return sorted(os.listdir(archive))


def _basenames(relpaths: list[str]) -> list[str]:
    return sorted(os.path.basename(p) for p in relpaths)


def test_accepts_is_what_the_walk_yields(tmp_path: Path) -> None:
    """One decision at two grains: a path is walked exactly when `accepts` says yes."""
    root = Root("inbox", str(tmp_path), ignore=(*DEFAULT_IGNORE, *IGNORE))
    _make(tmp_path, IGNORED + HANDLED)
    walked = sorted(c.relpath for c in walk_root(root, RootSet([root])))
    assert walked == sorted(HANDLED)
    everything = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()]
    assert sorted(p for p in everything if accepts(root, p)) == walked
    for relpath in IGNORED:
        assert candidate_for(str(tmp_path / relpath), RootSet([root])) is None, relpath
    flat = Root("flat", str(tmp_path), recursive=False)
    assert accepts(flat, "top.txt") and not accepts(flat, "a/b/deep.txt")
    assert accepts(root, "node_modules", is_dir=False) is False
    assert accepts(root, ".Trash-1000/files", is_dir=True) is False
    assert accepts(root, ".Trash-1000", is_dir=True) is False  # a trash dir is never entered
    assert accepts(root, ".", is_dir=True)


def test_scan_and_explicit_paths_skip_ignored_files(dirs: tuple[Path, Path], clerk: Clerk) -> None:
    inbox, archive = dirs
    _make(inbox, IGNORED + HANDLED)
    for relpath in IGNORED:
        result = clerk("scan", str(inbox / relpath))
        assert result.returncode == 1, (relpath, result.stdout, result.stderr)
        assert "ignored" in result.stderr, result.stderr
    for relpath in IGNORED[1::2]:
        explained = clerk("explain", str(inbox / relpath))
        assert explained.returncode == 1 and "ignored" in explained.stderr, explained.stderr
    for directory in ("node_modules", "a/b/node_modules/deep", "tmp-123"):
        result = clerk("scan", str(inbox / directory))
        assert result.returncode == 1 and "ignored" in result.stderr, result.stderr
    assert _moved(archive) == []
    assert (
        "ignored by root inbox: directory 'node_modules' matches the ignore glob"
        in clerk("explain", str(inbox / "node_modules/pkg/during.txt")).stderr
    )
    clerk("scan", check=True)
    assert _moved(archive) == _basenames(HANDLED)
    assert files_under(inbox) == sorted(IGNORED)


def test_the_daemon_skips_what_scan_skips(
    dirs: tuple[Path, Path], tmp_path: Path, clerk_home: Path
) -> None:
    inbox, archive = dirs
    outside = tmp_path / "outside"
    # trees moved into ignored places later: the daemon walks a directory that arrives
    arriving = {
        "node_modules/pkg2": "inside.txt",
        "a/b/node_modules/deep/more": "further.txt",
        "sub/.Trash-1000": "files/thrown.txt",
    }
    for target, relpath in arriving.items():
        _make(outside / _name(target), [relpath])
    with running_daemon(tmp_path) as (daemon, _):
        _make(inbox, IGNORED + HANDLED)  # made in place: an event for each file
        wait_until(lambda: _moved(archive) == _basenames(HANDLED), what="the handled files")
        (inbox / "sub").mkdir()
        for target in arriving:
            os.rename(outside / _name(target), inbox / target)
        (inbox / "sentinel.txt").write_text("after the trees")
        wait_until(lambda: "sentinel.txt" in _moved(archive), what="the sentinel")
        # the events of every ignored file are in; a reconcile must not find more either
        assert request(clerk_home / "run" / "clerk.sock", "reconcile")["ok"]
        left = IGNORED + [f"{target}/{relpath}" for target, relpath in arriving.items()]
        assert files_under(inbox) == sorted(left), daemon.log()
        assert _moved(archive) == sorted([*_basenames(HANDLED), "sentinel.txt"])
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
