"""The SQLite store: open with the right pragmas, migrate, and encode paths.

One writer (the daemon, or a one-shot command) and readers anywhere: WAL mode with a
busy timeout, so `clerk files list` never waits on the daemon. Commits are batched (see
fileops and the rules engine), a few per few hundred files.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from clerk.errors import ClerkError

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
    """Open (creating if needed) the store at `path` and apply pending migrations."""
    path = Path(path)
    if readonly:
        if not path.exists():
            raise StoreError(f"no store at {path} (run `clerk scan` or `clerk init` first)")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        db = Database(conn, execute_plugins=False)
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return db
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(str(path), check_same_thread=False)
        db = Database(conn, execute_plugins=False)
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: in WAL mode a commit survives a crash of clerk (kill -9) without an
        # fsync per commit; after a power cut the last commits may be missing, which
        # can cost the ability to undo those ops but never a file (docs/safety.md).
        db.execute("PRAGMA synchronous=NORMAL")
        # checkpoint every ~40 MB of WAL instead of 4 MB: a scan rewrites the same index
        # pages over and over, and each checkpoint writes (and fsyncs) them to the db
        db.execute(f"PRAGMA wal_autocheckpoint={_autocheckpoint_pages}")
        db.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from None
    if migrate:
        from clerk.store.migrations import migrations

        migrations.apply(db)
    return db


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
