"""The SQLite store: open with the right pragmas, migrate, and encode paths.

One writer (the daemon, or a one-shot command) and readers anywhere: WAL mode with a
busy timeout, so `clerk files list` never waits on the daemon. Commits are batched (see
fileops and the rules engine), a few per few hundred files.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations

from clerk.errors import ClerkError
from clerk.private import open_private, private_dir, tighten

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
# SQLite's limit on the parameters of one statement (999 before 3.32)
MAX_VARIABLES = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999
# One write transaction at a time per process, across connections and threads: a thread
# that waits here wakes as soon as the other commits, where SQLite's busy handler would
# sleep in steps of milliseconds. Reentrant, so a nested write on another connection in
# the same thread behaves as it did without the lock (SQLite's busy timeout decides).
_WRITE_LOCK = threading.RLock()


class StoreError(ClerkError):
    pass


def open_store(path: Path | str, *, migrate: bool = True, readonly: bool = False) -> Database:
    """Open (creating if needed) the store at `path` and apply pending migrations.

    Safe when several processes open the same store at once, a fresh one included: the
    first to get the setup lock creates and migrates it, the others then find nothing
    left to do. Every SQLite error on the way is a `StoreError`.
    """
    path = Path(path)
    if readonly:
        return _open_readonly(path)
    try:
        _make_private(path)
    except OSError as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from None
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(str(path), check_same_thread=False)
        db = Database(conn, execute_plugins=False)
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        with _setup_lock(path):
            _set_pragmas(db)
            if migrate:
                from clerk.store.migrations import migrations

                apply_migrations(db, migrations)
    except BaseException as exc:
        if conn is not None:
            conn.close()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(_open_error(path, exc)) from None
        raise
    return db


def _make_private(path: Path) -> None:
    """The store file made (or kept) 0600 before SQLite opens it: SQLite gives its -wal
    and -shm the mode of the database file, so they are owner-only too (clerk/private.py).
    Files an older clerk left readable are tightened.

    An existing store is never opened here: closing any descriptor of the file drops
    every POSIX lock this process holds on it, SQLite's own included (the daemon's
    runner thread opens the store the daemon has open). Another process closing its
    connection would then take the store for unused and delete the WAL under clerk."""
    private_dir(path.parent)
    # nobody holds a lock on a file just made; one that exists is only chmod-ed
    with suppress(FileExistsError):
        os.close(open_private(path, os.O_RDWR | os.O_EXCL))
    for suffix in ("", "-wal", "-shm"):
        tighten(f"{path}{suffix}")


def _open_readonly(path: Path) -> Database:
    if not path.exists():
        raise StoreError(f"no store at {path} (run `clerk scan` or `clerk init` first)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        db = Database(conn, execute_plugins=False)
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except sqlite3.Error as exc:
        raise StoreError(_open_error(path, exc)) from None
    return db


def _set_pragmas(db: Database) -> None:
    # Switching a brand-new file to WAL takes an exclusive lock, and SQLite reports
    # "database is locked" at once (no busy wait) when two connections race for it:
    # the caller holds the setup lock, so no other clerk process is doing it too.
    db.execute("PRAGMA journal_mode=WAL")
    # NORMAL: in WAL mode a commit survives a crash of clerk (kill -9) without an
    # fsync per commit; after a power cut the last commits may be missing, which
    # can cost the ability to undo those ops but never a file (docs/safety.md).
    db.execute("PRAGMA synchronous=NORMAL")
    # checkpoint every ~40 MB of WAL instead of 4 MB: a scan rewrites the same index
    # pages over and over, and each checkpoint writes (and fsyncs) them to the db
    db.execute(f"PRAGMA wal_autocheckpoint={_autocheckpoint_pages}")
    db.execute("PRAGMA foreign_keys=ON")


def _open_error(path: Path, exc: sqlite3.Error) -> str:
    message = f"cannot open store {path}: {exc}"
    if "locked" in str(exc) or "busy" in str(exc):
        # busy past the timeout, or at once when a read snapshot went stale
        message += (
            " (another process is writing to it: try again; if this persists, look for"
            " a stuck `clerk` command or daemon)"
        )
    return message


# How long an opener waits for another process to finish creating or migrating the
# store. Generous: a migration that rewrites a big table takes a while, and giving up
# early would fail a daemon start that waiting would have let through.
SETUP_LOCK_TIMEOUT = 60.0


@contextmanager
def _setup_lock(path: Path) -> Iterator[None]:
    """Hold `<store>-migrate.lock` (flock): one clerk process at a time sets the store up.

    A file lock rather than only SQLite's own locks because two steps cannot wait on
    those: the switch of a new file to WAL, and a migration that must run outside a
    transaction (VACUUM). The kernel drops the lock when its holder dies, so a crash
    mid-migration never leaves the store locked. Holding it costs a few syscalls.
    """
    lock_path = path.with_name(path.name + "-migrate.lock")
    try:
        fd = open_private(lock_path, os.O_RDWR)
    except OSError as exc:
        raise StoreError(f"cannot open store {path}: {lock_path}: {exc.strerror}") from None
    try:
        _flock_within(fd, lock_path, SETUP_LOCK_TIMEOUT)
        try:
            # who holds it, for the message of an opener that gives up waiting
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _flock_within(fd: int, lock_path: Path, timeout: float) -> None:
    # flock has no timeout of its own: poll it, waking often at first since the usual
    # holder is another opener that is done within milliseconds
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise StoreError(
                    f"another process (pid {holder}) has been setting up the store for more "
                    f"than {timeout:g} s; it holds {lock_path}"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def apply_migrations(db: Database, migration_set: Migrations) -> None:
    """Apply the pending migrations of `migration_set`, all in one write transaction.

    The caller holds the setup lock, which orders clerk openers; the transaction is
    taken up front (BEGIN IMMEDIATE, waiting up to the busy timeout) because a process
    that opened the store earlier may be writing: a deferred transaction that read the
    schema first would then fail with "database is locked" without waiting. The list of
    pending migrations is read again inside it, so what another process applied
    meanwhile is skipped, never applied twice.
    """
    pending = migration_set.pending(db)
    if not pending:
        return  # the usual open: nothing to write, no write lock taken
    if not all(migration.transactional for migration in pending):
        # cannot run inside a transaction: each runs on its own, ordered by the file lock
        migration_set.apply(db)
        return
    with write_txn(db):
        # sqlite-utils turns each migration's own transaction into a savepoint here
        migration_set.apply(db)


# Pages of WAL after which a committing connection checkpoints (0: never; a
# `Checkpointer` thread does it instead). See `checkpoint_in_background`.
_autocheckpoint_pages = 10_000


class Checkpointer:
    """Checkpoints a store's WAL from a thread and connection of its own.

    A checkpoint copies the WAL back into the database and fsyncs both: 50-150 ms on an
    ordinary disk. Done by whichever connection commits past `wal_autocheckpoint`, that
    stall lands on one file in a few hundred in the daemon (its p99 latency). PASSIVE
    checkpoints here never block writers, and SQLite releases the GIL while it works.
    """

    def __init__(self, path: Path, interval: float = 1.0):
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clerk-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.interval):
                try:
                    if conn is None:  # connect late: the store is made by its first opener
                        conn = sqlite3.connect(str(self.path), check_same_thread=False)
                        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy or gone: the next round tries again
                    log.debug("checkpoint of %s: %s", self.path, exc)
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def checkpoint_in_background(path: Path, interval: float = 1.0) -> Checkpointer:
    """From now on, stores opened by this process leave checkpoints to a thread.

    Call it before opening the store (the daemon does, first thing). Connections opened
    earlier keep checkpointing themselves, which is harmless.
    """
    global _autocheckpoint_pages
    _autocheckpoint_pages = 0
    return Checkpointer(path, interval)


class JournalBusy(RuntimeError):
    """A write that must commit on its own was called inside an open transaction."""


@contextmanager
def write_txn(db: Database) -> Iterator[sqlite3.Connection]:
    """A write transaction taken up front (BEGIN IMMEDIATE), committed on exit.

    IMMEDIATE because ids are allocated inside the transaction from max(id): a deferred
    transaction could read a snapshot another writer has moved past.
    """
    conn = db.conn
    if conn.in_transaction:
        raise JournalBusy("fileops commits its own journal writes: call it outside a transaction")
    with _WRITE_LOCK:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.execute("COMMIT")


def store_path(db: Database) -> str | None:
    """The file behind `db` (None for an in-memory or temporary database)."""
    for row in db.execute("PRAGMA database_list").fetchall():
        if row[1] == "main":
            return row[2] or None
    return None


def execute_rows(
    conn: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]], *, tail: str = ""
) -> int:
    """Run `head VALUES (...), (...) tail` over `rows`, many rows per statement.

    One call into SQLite per few thousand rows instead of one per row: the parameters
    are bound in C, and the lock on the interpreter is let go once per statement, which
    is what lets another thread do Python work meanwhile. Returns the rows changed.
    """
    if not rows:
        return 0
    width = len(rows[0])
    per_statement = max(1, MAX_VARIABLES // width)
    changed = 0
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        flat = [value for row in chunk for value in row]
        cursor = conn.execute(_values_sql(head, tail, width, len(chunk)), flat)
        changed += max(cursor.rowcount, 0)
    return changed


@lru_cache(maxsize=64)
def _values_sql(head: str, tail: str, width: int, count: int) -> str:
    one = "(" + ",".join("?" * width) + ")"
    return f"{head} VALUES {','.join([one] * count)} {tail}"


def to_db(path: str) -> str | bytes:
    """Encode a path for the store: text when it is valid UTF-8, else its raw bytes.

    POSIX file names are bytes; Python hands undecodable ones to us as surrogate
    escapes, which SQLite cannot store as TEXT. Storing those as BLOB keeps them exact.
    """
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def from_db(value: str | bytes | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return os.fsdecode(value)
    return value
