"""The fault battery, destinations that refuse (issue 13): full (ENOSPC), read-only
(EROFS), not permitted (EACCES, EPERM) and over quota (EDQUOT), for moves, copies and
archives, on one file system and across two. Through the real `clerk scan`.

Each case proves the same things: the sources are intact, no temp file is left, every
refused file gets its own message with the system's reason, the journal agrees with
the disk (nothing pending, a done op's file is where it says), and once the cause is
gone a second scan finishes the work.

Mounts need root; the tests mount their own tmpfs and skip with the reason elsewhere.
Permission cases need a process that the file modes bind: as root, clerk runs with
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER and CAP_SYS_RESOURCE dropped from its
bounding set (setpriv), which holds uid 0 to the modes like any user. (Switching to
another uid would not do here: the interpreter of the test venv lives under root's
0700 home, out of another user's reach.)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_fileops_support import _unmount, temp_files

ROOT = os.geteuid() == 0
DROP = "-dac_override,-dac_read_search,-fowner,-sys_resource"
SIZE = 100_000  # bytes of random data per file: nothing compresses it


def unprivileged() -> list[str]:
    """The argv prefix that makes this process bound by file modes and quotas."""
    if not ROOT:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's capabilities")
    return ["setpriv", f"--bounding-set={DROP}", "--"]


def clerk_scan(*, bound: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [*(unprivileged() if bound else []), sys.executable, "-m", "clerk", "scan"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({options}): {mounted.stderr.strip() or 'not root'}")
    try:
        yield path
    finally:
        _unmount(str(path))


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hashes(*dirs: Path) -> Counter[str]:
    """The content hashes of the files under `dirs`, the members of tar archives for them."""
    found: Counter[str] = Counter()
    for path in (p for d in dirs for p in d.rglob("*") if p.is_file()):
        if path.suffix != ".tar":
            found[digest(path)] += 1
            continue
        with tarfile.open(path) as tar:
            for member in tar:
                data = tar.extractfile(member)
                assert data is not None
                found[hashlib.sha256(data.read()).hexdigest()] += 1
    return found


def ops(clerk_home: Path) -> list[dict[str, str]]:
    with contextlib.closing(sqlite3.connect(clerk_home / "clerk.db")) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT kind, src, dst, state, error FROM ops")]


ACTIONS = {
    "move": '{{move: "{dest}/{{name}}"}}',
    "copy": '{{copy: "{dest}/{{name}}"}}',
    "archive": '{{archive: "{dest}/{{stem}}.tar"}}',
}


class World:
    """An inbox of five random files and a rule sending them to `dest` by `action`."""

    def __init__(self, clerk_home: Path, inbox: Path, dest: Path, action: str) -> None:
        self.home, self.inbox, self.dest, self.action = clerk_home, inbox, dest, action
        inbox.mkdir(parents=True, exist_ok=True)
        dest.mkdir(parents=True, exist_ok=True)
        for i in range(5):
            (inbox / f"f{i}.bin").write_bytes(os.urandom(SIZE))
        self.start = hashes(inbox)
        (clerk_home / "rules.d").mkdir(exist_ok=True)
        (clerk_home / "rules.d" / "rules.yaml").write_text(f"""
roots:
  inbox: {inbox}
  dest: {{path: {dest}, watch: false}}
rules:
  - name: send
    in: inbox
    actions: [{ACTIONS[action].format(dest=dest)}]
""")

    def check(self, result: subprocess.CompletedProcess[str], reason: str) -> int:
        """The invariants after a scan that may have been refused; the refused count."""
        refused = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert all(reason in line for line in refused), result.stderr
        assert result.returncode == (1 if refused else 0), result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert not temp_files(str(self.inbox), str(self.dest)), "temp files left"
        journal = ops(self.home)
        assert not [op for op in journal if op["state"] == "pending"], journal
        failed = [op for op in journal if op["state"] == "failed"]
        assert len(failed) >= len(refused)
        for op in failed:
            assert Path(op["src"]).is_file(), f"source of a failed op gone: {op}"
        # every file the scan started with is still there, where it was or where it went
        if self.action == "copy":
            assert hashes(self.inbox) == self.start and hashes(self.dest) <= self.start
        else:  # a move, or an archive that removes its source once the archive is sound
            assert hashes(self.inbox, self.dest) == self.start
        return len(refused)

    def finished(self, result: subprocess.CompletedProcess[str]) -> None:
        """The second scan, after the cause is gone: the work is done, once."""
        assert result.returncode == 0, result.stdout + result.stderr
        assert not temp_files(str(self.inbox), str(self.dest))
        if self.action == "copy":
            assert hashes(self.dest) == self.start == hashes(self.inbox)
        else:
            assert hashes(self.dest) == self.start and not list(self.inbox.iterdir())


needs_root = pytest.mark.skipif(not ROOT, reason="mounts a tmpfs: needs root")


@needs_root
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("layout", ["same", "cross"])
def test_a_full_destination(tmp_path: Path, clerk_home: Path, action: str, layout: str) -> None:
    # 5 x 100 KB into 256 KB (the inbox too, on one file system): some must be refused
    size = "768k" if layout == "same" else "256k"
    with tmpfs(tmp_path / "fs", f"size={size}") as fs:
        inbox = fs / "inbox" if layout == "same" else tmp_path / "inbox"
        world = World(clerk_home, inbox, fs / "dest", action)
        refused = world.check(clerk_scan(), "No space left on device")
        if layout == "cross" or action == "copy":  # else each file's space is freed as it goes
            assert refused > 0
        remount(fs, "size=16m")
        world.finished(clerk_scan())


@needs_root
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("layout", ["same", "cross"])
def test_a_read_only_destination(
    tmp_path: Path, clerk_home: Path, action: str, layout: str
) -> None:
    with tmpfs(tmp_path / "fs", "size=16m") as fs:
        inbox = fs / "inbox" if layout == "same" else tmp_path / "inbox"
        world = World(clerk_home, inbox, fs / "dest", action)
        remount(fs, "ro")
        assert world.check(clerk_scan(), "Read-only file system") == 5
        remount(fs, "rw")
        world.finished(clerk_scan())


@pytest.mark.parametrize("action", ACTIONS)
def test_a_destination_without_write_permission(
    tmp_path: Path, clerk_home: Path, action: str
) -> None:
    world = World(clerk_home, tmp_path / "inbox", tmp_path / "dest", action)
    world.dest.chmod(0o555)
    try:
        assert world.check(clerk_scan(bound=True), "Permission denied") == 5
    finally:
        world.dest.chmod(0o755)
    world.finished(clerk_scan(bound=True))


@needs_root
def test_a_source_in_a_sticky_directory_of_another_user(tmp_path: Path, clerk_home: Path) -> None:
    """EPERM: another user's file in their sticky directory may be read, not moved."""
    world = World(clerk_home, tmp_path / "inbox", tmp_path / "dest", "move")
    nobody = 65534
    world.inbox.chmod(0o1777)
    os.chown(world.inbox, nobody, nobody)
    for path in world.inbox.iterdir():
        os.chown(path, nobody, nobody)
    assert world.check(clerk_scan(bound=True), "Operation not permitted") == 5
    assert not list(world.dest.iterdir()), "a copy was left beside the source it kept"
    os.chown(world.inbox, 0, 0)  # the directory is ours again: its files may go
    world.inbox.chmod(0o755)
    world.finished(clerk_scan(bound=True))


def quota_tmpfs(path: Path) -> contextlib.AbstractContextManager[Path]:
    return tmpfs(path, "size=16m,usrquota,usrquota_block_hardlimit=256k")


@needs_root
def test_over_quota(tmp_path: Path, clerk_home: Path) -> None:
    """Where the kernel has tmpfs quotas (6.6+, CONFIG_TMPFS_QUOTA): skips elsewhere."""
    with quota_tmpfs(tmp_path / "fs") as fs:
        world = World(clerk_home, tmp_path / "inbox", fs / "dest", "copy")
        assert world.check(clerk_scan(bound=True), "Disk quota exceeded") > 0
        remount(fs, "usrquota_block_hardlimit=8m")
        world.finished(clerk_scan(bound=True))
