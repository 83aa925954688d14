"""Several processes opening (creating, migrating) the same store at once: none may fail.

The openers are real processes held at a start line (each waits on its stdin after its
imports) and released together, so they race on the first open in most rounds. Whether
a round races or not, the assertions are the same: every process exits 0 and every
migration is recorded exactly once.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlite_utils
from sqlite_utils import Migrations

from clerk.store import StoreError, apply_migrations, open_store
from clerk.store.migrations import migrations

OPENERS = 4
ROUNDS = 5
DEADLINE = 60.0  # generous, for a busy 2-core machine; a passing run takes a second or two

# Opens the store named on each line of stdin ("PATH" or "PATH<TAB>MIGRATION"), answering
# "ok" or the error. A migration name is first registered, as an upgrade would add it.
OPENER = r"""
import sys
from clerk.store import open_store
from clerk.store.migrations import migrations

def register(name):
    @migrations(name=name)
    def added_by_upgrade(db):
        # reads before it writes, as migrations do (transform, "is it there yet?")
        db.execute("SELECT count(*) FROM files").fetchall()
        db[f"notes_{name}"].create({"id": int, "note": str}, pk="id")
        db[f"notes_{name}"].insert({"note": "added once"})

print("ready", flush=True)
for line in sys.stdin:
    path, _, upgrade = line.strip().partition("\t")
    if upgrade:
        register(upgrade)
    try:
        open_store(path).conn.close()
        print("ok", flush=True)
    except BaseException as exc:
        print(f"{type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
"""

# Keeps writing to the store in short transactions until its stdin closes: a process
# that opened the store before the others (the daemon, during an upgrade). It pauses a
# moment between commits as a busy daemon does between batches: one that never lets go
# of the write lock starves every other writer, migrations or not (SQLite's busy
# handler polls).
WRITER = r"""
import sqlite3, sys, threading
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA busy_timeout=10000")
conn.execute("CREATE TABLE IF NOT EXISTS writer_ticks (n INTEGER)")
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
print("ready", flush=True)
n = 0
while not stop.is_set():
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO writer_ticks VALUES (?)", (n,))
    conn.execute("COMMIT")
    n += 1
    stop.wait(0.002)
print(n, flush=True)
"""


def start(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(proc: subprocess.Popen[str]) -> str:
    """The next line from `proc`, or a failure naming its stderr if it died."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=DEADLINE)
        assert proc.stderr is not None
        pytest.fail(f"process exited {proc.returncode}:\n{proc.stderr.read()}")
    return line.strip()


@pytest.fixture
def openers() -> Iterator[Callable[..., list[subprocess.Popen[str]]]]:
    started: list[subprocess.Popen[str]] = []

    def make() -> list[subprocess.Popen[str]]:
        procs = [start(OPENER) for _ in range(OPENERS)]
        started.extend(procs)
        for proc in procs:  # all imported: the start line
            assert read_line(proc) == "ready"
        return procs

    yield make
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=DEADLINE)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def open_all_at_once(
    procs: list[subprocess.Popen[str]], path: Path, upgrade: str = ""
) -> list[str]:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{path}\t{upgrade}\n" if upgrade else f"{path}\n")
    for proc in procs:  # written first, flushed together: as close to one instant as we get
        assert proc.stdin is not None
        proc.stdin.flush()
    return [read_line(proc) for proc in procs]


def applied(path: Path) -> list[str]:
    db = sqlite_utils.Database(path)
    try:
        return [row["name"] for row in db["_sqlite_migrations"].rows_where(order_by="id")]
    finally:
        db.close()


def test_processes_creating_one_store_at_once_all_succeed(openers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    procs = openers()
    expected = [m.name for m in migrations.pending(sqlite_utils.Database(memory=True))]
    for round_ in range(ROUNDS):
        path = tmp_path / f"round{round_}" / "clerk.db"
        answers = open_all_at_once(procs, path)
        assert answers == ["ok"] * OPENERS, f"round {round_}: {answers}"
        assert applied(path) == expected
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn.close()


def test_an_upgrade_migration_is_applied_once_while_another_process_writes(  # type: ignore[no-untyped-def]
    openers, tmp_path: Path
) -> None:
    procs = openers()
    old = [m.name for m in migrations.pending(sqlite_utils.Database(memory=True))]
    added: list[str] = []
    for round_ in range(3):
        path = tmp_path / f"round{round_}" / "clerk.db"
        open_store(path).conn.close()  # the store as the previous version left it
        writer = start(WRITER, str(path))
        try:
            assert read_line(writer) == "ready"
            added.append(f"m900_upgrade_{round_}")  # the openers now know one more
            answers = open_all_at_once(procs, path, upgrade=added[-1])
            assert answers == ["ok"] * OPENERS, f"round {round_}: {answers}"
        finally:
            writer.communicate(timeout=DEADLINE)  # closing its stdin stops it
        assert writer.returncode == 0, writer.stderr
        assert applied(path) == [*old, *added]
        db = sqlite_utils.Database(path)
        for name in added:
            assert [r["note"] for r in db[f"notes_{name}"].rows] == ["added once"]
        assert db["writer_ticks"].count > 0
        db.close()


def test_a_non_transactional_migration_runs_once_outside_a_transaction(tmp_path: Path) -> None:
    path = tmp_path / "clerk.db"
    db = open_store(path)
    extra = Migrations("test-extra")

    @extra(transactional=False)
    def m001_vacuum(db: sqlite_utils.Database) -> None:
        db.execute("VACUUM")  # fails inside a transaction

    apply_migrations(db, extra)
    apply_migrations(db, extra)  # already applied: nothing happens
    rows = db.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = 'test-extra'")
    assert rows.fetchall() == [("m001_vacuum",)]


def test_no_other_writer_commits_while_migrations_run(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A migration that reads, then writes, inside a deferred transaction fails at once
    # ("database is locked", no busy wait) if another process committed in between.
    # Here the other writer tries to commit exactly there, deterministically.
    path = tmp_path / "clerk.db"
    open_store(path).conn.close()
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other_writes: list[str] = []
    extra = Migrations("test-snapshot")

    @extra()
    def m001_read_then_write(db: sqlite_utils.Database) -> None:
        db.execute("SELECT count(*) FROM files").fetchall()
        try:
            other.execute("INSERT INTO events (ts, kind) VALUES (1, 'other')")
            other_writes.append("committed")
        except sqlite3.OperationalError as exc:
            other_writes.append(str(exc))
        db["notes"].create({"id": int}, pk="id")

    monkeypatch.setattr("clerk.store.migrations.migrations", extra)
    open_store(path).conn.close()
    other.close()
    assert other_writes == ["database is locked"]  # it waited for the migration
    assert "m001_read_then_write" in applied(path)


def test_a_store_held_busy_is_a_store_error_not_a_traceback(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "clerk.db"
    open_store(path).conn.close()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock the migration needs
    monkeypatch.setattr("clerk.store.BUSY_TIMEOUT_MS", 50)
    extra = Migrations("test-busy")

    @extra()
    def m001_table(db: sqlite_utils.Database) -> None:
        db["t"].create({"id": int}, pk="id")

    monkeypatch.setattr("clerk.store.migrations.migrations", extra)
    with pytest.raises(StoreError, match=r"cannot open store .*locked.*writing to it: try again"):
        open_store(path)
    blocker.execute("ROLLBACK")
    blocker.close()
    open_store(path).conn.close()  # once free, the same open goes through
    assert "m001_table" in applied(path)


def test_an_opener_gives_up_on_a_stuck_setup_lock_with_a_clear_error(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "clerk.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, f"{path}-migrate.lock"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr("clerk.store.SETUP_LOCK_TIMEOUT", 0.3)
        begun = time.monotonic()
        with pytest.raises(StoreError, match=rf"pid {holder.pid}\)? .*more than 0.3 s"):
            open_store(path)
        assert 0.3 <= time.monotonic() - begun < DEADLINE
    finally:
        holder.communicate(timeout=DEADLINE)
    open_store(path).conn.close()  # its holder gone, the lock is free
    assert applied(path)


HOLD_LOCK = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()}\n".encode())
print("locked", flush=True)
sys.stdin.read()
"""


def test_two_scans_on_a_fresh_home_both_succeed_and_move_each_file_once(  # type: ignore[no-untyped-def]
    tmp_path: Path, clerk_home: Path, write_rules
) -> None:
    # Each scan walks a root of its own: two scans over the same files race for each
    # file, which is the rules engine's business; here they race for the new store.
    out = tmp_path / "out"
    out.mkdir()
    (clerk_home / "config.yaml").write_text(f"trash_dir: {tmp_path / 'trash'}\n")
    roots, names = "", []
    for root in ("left", "right"):
        (tmp_path / root).mkdir()
        roots += f"  {root}: {{path: {tmp_path / root}}}\n"
        for i in range(6):
            names.append(f"{root}{i}.txt")
            (tmp_path / root / names[-1]).write_text(names[-1])
    write_rules(
        f"roots:\n{roots}  out: {{path: {out}, watch: false}}\n"
        f"rules:\n  - name: all\n    in: [left, right]\n"
        f"    actions: [{{move: '{out}/{{name}}'}}]\n"
    )
    assert not (clerk_home / "clerk.db").exists()
    scans = [
        subprocess.Popen(
            [sys.executable, "-m", "clerk", "scan", root],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for root in ("left", "right")
    ]
    results = [scan.communicate(timeout=DEADLINE) for scan in scans]
    for scan, (stdout, stderr) in zip(scans, results, strict=True):
        assert scan.returncode == 0, f"{stdout}\n{stderr}"
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    assert [*(tmp_path / "left").iterdir(), *(tmp_path / "right").iterdir()] == []
    db = sqlite_utils.Database(clerk_home / "clerk.db")
    moves = [(Path(r["src"]).name, r["kind"], r["state"]) for r in db["ops"].rows]
    db.close()
    assert sorted(moves) == [(name, "move", "done") for name in sorted(names)]


def test_opening_the_store_again_keeps_the_process_s_locks(tmp_path: Path) -> None:
    """The daemon's runner thread opens the store the daemon already has open. Closing
    any descriptor of the file drops every POSIX lock the process holds on it (SQLite's
    too), so another process closing its connection then took clerk for gone, and
    checkpointed and deleted the WAL under it: later writes were lost to everyone else."""
    path = tmp_path / "clerk.db"
    daemon = open_store(path)
    daemon.execute("CREATE TABLE t (x)")
    daemon.conn.commit()
    runner = open_store(path, migrate=False)
    count = "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM t').fetchone()[0])"  # noqa: E501
    read = [sys.executable, "-c", count, str(path)]
    assert subprocess.run(read, capture_output=True, text=True, check=True).stdout == "0\n"
    with daemon.conn:
        daemon.execute("INSERT INTO t VALUES (1)")
    assert subprocess.run(read, capture_output=True, text=True, check=True).stdout == "1\n"
    assert (tmp_path / "clerk.db-wal").exists()
    runner.close()
    daemon.close()
