"""The SQLite store: open with the right pragmas, migrate, and encode paths.

One writer (the daemon, or a one-shot command) and readers anywhere: WAL mode with a
busy timeout, so `clerk files list` never waits on the daemon. Commits are batched (see
fileops and the rules engine), a few per few hundred files.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlite_utils import Database

from clerk.errors import ClerkError

BUSY_TIMEOUT_MS = 10_000


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
        db.execute("PRAGMA wal_autocheckpoint=10000")
        db.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from None
    if migrate:
        from clerk.store.migrations import migrations

        migrations.apply(db)
    return db


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
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.execute("COMMIT")


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
