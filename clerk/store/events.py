"""The `events` table: clerk's general timeline (file errors, alerts, daemon happenings).

Its statements live here and nowhere else: `record_event` is the one way a row is
written (the rules engine's file errors, the daemon's rule-loop errors, the runner's
alerts), so every row has the same shape. A row about a file carries the file's catalog
id in `data.file_id`: that is how `clerk files show` finds the file's errors. The caller
owns the transaction (a row is usually part of a batch's).
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from sqlite_utils import Database

FILE_ERROR = "file_error"


def record_event(
    db: Database | sqlite3.Connection,
    kind: str,
    subject: str,
    data: dict[str, Any],
    *,
    file_id: int | None,
    ts: float | None = None,
) -> None:
    """Add one event. `file_id` is required, None only when the event is about no file
    (or a file the catalog has no id for yet)."""
    if file_id is not None:
        data = {**data, "file_id": file_id}
    db.execute(
        "INSERT INTO events (ts, kind, subject, data) VALUES (?, ?, ?, ?)",
        [time.time() if ts is None else ts, kind, _text(subject), json.dumps(data)],
    )


def record_file_error(
    db: Database | sqlite3.Connection, path: str, message: str, *, file_id: int | None
) -> None:
    """An error against the file at `path` (a filter, classifier, action or hook that
    failed on it, a rule loop): `file_errors` and `clerk files show` list it."""
    record_event(db, FILE_ERROR, path, {"error": message}, file_id=file_id)


def file_errors(db: Database, file_id: int, limit: int = 10) -> list[dict[str, Any]]:
    """The latest errors recorded against a catalogued file, newest first."""
    rows = db.execute(
        "SELECT ts, data FROM events WHERE kind = ?"
        " AND json_extract(data, '$.file_id') = ? ORDER BY id DESC LIMIT ?",
        [FILE_ERROR, file_id, limit],
    ).fetchall()
    return [{"ts": ts, "error": json.loads(data).get("error", "")} for ts, data in rows]


def latest_events(db: Database | sqlite3.Connection, kind: str, limit: int) -> list[str]:
    """The `data` of the latest `limit` events of `kind`, newest first."""
    rows = db.execute(
        "SELECT data FROM events WHERE kind = ? ORDER BY id DESC LIMIT ?", (kind, limit)
    )
    return [row[0] for row in rows]


def fired_since(db: Database | sqlite3.Connection, kind: str, subject: str, since: float) -> bool:
    """Whether an event of `kind` about `subject` was recorded at or after `since`."""
    row = db.execute(
        "SELECT 1 FROM events WHERE kind = ? AND subject = ? AND ts >= ? LIMIT 1",
        (kind, _text(subject), since),
    ).fetchone()
    return row is not None


def _text(subject: str) -> str:
    # a path's undecodable bytes (surrogate escapes) cannot be stored as TEXT: shown as U+FFFD
    return subject.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
