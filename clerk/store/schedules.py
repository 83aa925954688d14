"""When each timed job last ran: the `schedules` table (migration m003).

A row per job key (a lifecycle rule's name, `workflow:NAME` for a scheduled workflow):
when the daemon first saw the job, when it last ran, how that went. The daemon's
timer (clerk/daemon/schedule.py) reads it on start and reload to catch up on runs
missed while it was down; `clerk jobs list` reads it while the daemon is down.
"""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from clerk.store import write_txn


def schedule_rows(db: Database) -> dict[str, dict[str, Any]]:
    """Every job's row, by key (none in a store that predates the table)."""
    if "schedules" not in db.table_names():
        return {}
    return {row["name"]: row for row in db.query("SELECT * FROM schedules")}


def record_first_seen(db: Database, key: str, spec: str, now: float) -> dict[str, Any]:
    """A job seen for the first time (its catch-up counts from now); the row written."""
    row = {"name": key, "spec": spec, "first_seen": now}
    with write_txn(db):  # IMMEDIATE: the runner thread writes too
        db.conn.execute(
            "INSERT OR REPLACE INTO schedules (name, spec, first_seen) VALUES (?, ?, ?)",
            (key, spec, now),
        )
    return row


def record_job_run(db: Database, key: str, spec: str | None, when: float, status: str,
                   summary: dict[str, Any]) -> None:  # fmt: skip
    """A job ran at `when`: its status and summary (what `clerk jobs list` shows)."""
    with write_txn(db):  # IMMEDIATE: the runner thread writes too
        db.conn.execute(
            "INSERT INTO schedules (name, spec, last_run, last_status, last_summary)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET spec = excluded.spec,"
            " last_run = excluded.last_run, last_status = excluded.last_status,"
            " last_summary = excluded.last_summary",
            (key, spec, when, status, json.dumps(summary)),
        )
