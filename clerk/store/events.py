"""The `events` table: clerk's general timeline (file errors, daemon happenings)."""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database


def file_errors(db: Database, file_id: int, limit: int = 10) -> list[dict[str, Any]]:
    """The latest errors recorded against a catalogued file, newest first.

    The rules engine records one when a filter, classifier, action or hook failed on the
    file (`kind = 'file_error'`, the file's id in `data`).
    """
    rows = db.execute(
        "SELECT ts, data FROM events WHERE kind = 'file_error'"
        " AND json_extract(data, '$.file_id') = ? ORDER BY id DESC LIMIT ?",
        [file_id, limit],
    ).fetchall()
    return [{"ts": ts, "error": json.loads(data).get("error", "")} for ts, data in rows]
