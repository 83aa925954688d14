"""Helpers shared by the fileops tests (no tests here).

`make_env` points HOME, the XDG dirs and CLERK_HOME at the test's tmp dir (in case the
lead's conftest does not), and builds a store and a root; `other_filesystem` gives a
directory on another file system: a tmpfs this test mounts, else /dev/shm.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlite_utils import Database

from clerk.fileops import FileOps
from clerk.roots import Root, RootSet
from clerk.store import open_store


@dataclass
class Env:
    tmp: Path
    root: str
    db: Database
    roots: RootSet
    db_path: str

    def ops(self, **kwargs: object) -> FileOps:
        return FileOps(self.db, self.roots, **kwargs)  # type: ignore[arg-type]

    def path(self, rel: str | bytes) -> str:
        if isinstance(rel, bytes):
            return os.fsdecode(os.path.join(os.fsencode(self.root), rel))
        return os.path.join(self.root, rel)

    def file(self, rel: str | bytes, content: bytes | None = None) -> str:
        path = self.path(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(
                content
                if content is not None
                else os.urandom(64) + path.encode("utf-8", "surrogateescape")
            )
        return path

    def rows(self) -> list[dict[str, object]]:
        from clerk.store.journal import decode_row

        return [decode_row(r) for r in self.db.query("SELECT * FROM ops ORDER BY id")]

    @property
    def trash(self) -> str:
        return os.path.join(os.environ["XDG_DATA_HOME"], "Trash")


def set_test_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    for name, sub in (
        ("XDG_DATA_HOME", ".local/share"), ("XDG_CONFIG_HOME", ".config"),
        ("XDG_STATE_HOME", ".local/state"), ("XDG_CACHE_HOME", ".cache"),
    ):  # fmt: skip
        monkeypatch.setenv(name, str(home / sub))
    monkeypatch.setenv("CLERK_HOME", str(tmp_path / "clerk-home"))
    monkeypatch.setenv("CLERK_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("CLERK_FILEOPS_CRASH_AT", raising=False)


def make_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, extra_roots: tuple[str, ...] = ()
) -> Env:
    set_test_env(tmp_path, monkeypatch)
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    roots = RootSet(
        [Root("main", str(root))] + [Root(f"extra{i}", p) for i, p in enumerate(extra_roots)]
    )
    db_path = str(tmp_path / "clerk.db")
    return Env(tmp_path, str(root), open_store(db_path), roots, db_path)


def digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.blake2b(fh.read()).hexdigest()


def read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def temp_files(*dirs: str) -> list[str]:
    found = []
    for top in dirs:
        for dirpath, _dirs, files in os.walk(top):
            found += [os.path.join(dirpath, f) for f in files if f.startswith(".clerk-tmp-")]
    return found


@contextlib.contextmanager
def other_filesystem(tmp_path: Path) -> Iterator[str]:
    """A directory on a file system other than tmp_path's; skip if there is none."""
    mount_dir = tmp_path / "otherfs"
    mount_dir.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_dir)],
        capture_output=True,
    ).returncode == 0  # fmt: skip
    if mounted:
        try:
            yield str(mount_dir)
        finally:
            _unmount(str(mount_dir))
        return
    shm = Path("/dev/shm")
    if shm.is_dir() and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        path = tempfile.mkdtemp(prefix="clerk-test-", dir=shm)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
        return
    pytest.skip("no second file system: mounting a tmpfs failed and /dev/shm is unusable")


def _unmount(path: str) -> None:
    deadline = time.monotonic() + 10
    while subprocess.run(["umount", path], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            subprocess.run(["umount", "-l", path], capture_output=True)
            return
        time.sleep(0.05)


PYTHON = sys.executable
