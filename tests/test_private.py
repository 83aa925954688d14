"""What clerk keeps about the user's files is owner-only, whatever the umask: the store
(and its WAL), backups, run logs, outputs and the state directories (issue 13 item 2).
Through the real command in subprocesses started with a wide-open umask, and as another
user where the tests run as root."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clerk.private import private_dir, tighten
from clerk.store import open_store

PY = sys.executable


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def open_umask() -> None:
    os.umask(0)


def clerk_umask0(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([PY, "-m", "clerk", *args], capture_output=True, text=True,
                            preexec_fn=open_umask, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def umask0() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_store_its_wal_and_the_dirs_made_for_it_are_owner_only(
    tmp_path: Path, umask0: None
) -> None:
    path = tmp_path / "a" / "b" / "clerk.db"
    db = open_store(path)
    db["t"].insert({"x": 1})  # a write: -wal and -shm exist now
    assert (tmp_path / "a" / "b" / "clerk.db-wal").exists()
    for name in ("clerk.db", "clerk.db-wal", "clerk.db-shm", "clerk.db-migrate.lock"):
        assert mode(path.parent / name) == 0o600, name
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700
    db.conn.close()


def test_a_store_an_older_clerk_left_readable_is_tightened_on_open(tmp_path: Path) -> None:
    path = tmp_path / "clerk.db"
    open_store(path).conn.close()
    os.chmod(path, 0o644)
    os.chmod(tmp_path, 0o755)  # a directory the user chose keeps its mode
    db = open_store(path)
    db["t"].insert({"x": 1})
    assert mode(path) == mode(tmp_path / "clerk.db-wal") == 0o600
    assert mode(tmp_path) == 0o755
    db.conn.close()


def test_private_dir_sets_modes_the_umask_would_take(tmp_path: Path) -> None:
    old = os.umask(0o277)  # 0700 & ~0277 would be 0500: not even writable by its owner
    try:
        made = private_dir(tmp_path / "x" / "y")
    finally:
        os.umask(old)
    assert mode(made) == mode(made.parent) == 0o700
    (made / "f").write_text("ok")  # writable by its owner
    other = tmp_path / "link"
    other.symlink_to(tmp_path / "x")
    tighten(other)  # a link is never followed to change a mode
    tighten(tmp_path / "missing")


# prints a line and writes its outputs (`{}`: a template would read braces) itself
TASK = (
    "import os, sys; print('note', sys.argv[1]); "
    "open(os.environ['CLERK_OUTPUTS'], 'w').write(chr(123) + chr(125))"
)
RULES = """
roots:
  inbox: {inbox}
rules:
  - name: texts
    in: inbox
    match: {{extension: txt}}
    actions:
      - run: {{workflow: echo}}
workflows:
  echo:
    tasks:
      - name: say
        executor: shell
        command: [{py}, -c, "{code}", "{{name}}"]
"""


@pytest.fixture
def world(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
          write_rules: Callable[[str, str], Path]) -> Iterator[Path]:  # fmt: skip
    """A CLERK_HOME every user may walk to (pytest's own temp dirs are 0700), with an
    inbox holding one file and a workflow that logs and writes outputs."""
    base = Path(tempfile.mkdtemp(prefix="clerk-private-"))
    try:
        os.chmod(base, 0o755)
        home, inbox = base / "home", base / "inbox"
        home.mkdir(mode=0o755)
        inbox.mkdir(mode=0o755)
        os.chmod(home, 0o755)
        (home / "rules.d").mkdir()
        (home / "rules.d" / "rules.yaml").write_text(RULES.format(inbox=inbox, py=PY, code=TASK))
        (inbox / "note.txt").write_text("hello")
        monkeypatch.setenv("CLERK_HOME", str(home))
        yield home
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def made_by_clerk(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if not p.is_relative_to(home / "rules.d")]


def test_everything_clerk_writes_under_its_home_is_owner_only(world: Path) -> None:
    clerk_umask0("run", "echo", "--file", str(world.parent / "inbox" / "note.txt"), "--wait")
    clerk_umask0("scan")
    clerk_umask0("db", "backup", str(world / "backup.db"))
    written = made_by_clerk(world)
    names = {p.name for p in written}
    assert {"clerk.db", "backup.db", "runs"} <= names, sorted(names)
    assert [p for p in written if p.parent.parent.name == "runs"], "no run logs"
    loose = {str(p.relative_to(world)): oct(mode(p)) for p in written
             if mode(p) & 0o077 and not p.is_symlink()}  # fmt: skip
    assert loose == {}, sorted(loose.items())


NOBODY_READS = r"""
import sys
for path in sys.argv[1:]:
    try:
        open(path, "rb").read(1)
        print("READ", path)
    except OSError as exc:
        print("REFUSED", path, type(exc).__name__)
"""


def test_another_user_cannot_read_the_store_backups_or_logs(
    world: Path, as_nobody: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    clerk_umask0("run", "echo", "--file", str(world.parent / "inbox" / "note.txt"), "--wait")
    clerk_umask0("db", "backup", str(world / "backup.db"))
    logs = [p for p in world.rglob("*") if p.is_file() and p.parent.parent.name == "runs"]
    targets = [world / "clerk.db", world / "backup.db", *logs]
    result = as_nobody(NOBODY_READS, *map(str, targets))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(targets) >= 4, lines
    assert all(line.startswith("REFUSED") for line in lines), lines
