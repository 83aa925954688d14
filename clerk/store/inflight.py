"""The daemon's files in flight: the `daemon_inflight` table (migration m003).

A catalog row whose identity matches the file normally means "handled": the daemon
skips such files. The engine writes a batch's rows only after its ops are done, so a
crash before that leaves the files unknown or changed to the catalog: handled again.
Files the daemon must look at again although the catalog knows them as they are (an
`after:` wait, a file a rule moved into another root) are listed here, so a restart's
reconcile looks at them again; each leaves the list when a batch has handled it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlite_utils import Database

from clerk.store import from_db, to_db

if TYPE_CHECKING:
    from clerk.rules.walk import Candidate


def mark_inflight(db: Database, batch: list[Candidate], trigger: str, now: float) -> None:
    rows = [(c.root.name, to_db(c.relpath), trigger, now) for c in batch]
    with db.atomic():
        db.conn.executemany(
            "INSERT OR REPLACE INTO daemon_inflight (root, relpath, trigger, since)"
            " VALUES (?, ?, ?, ?)",
            rows,
        )


def clear_inflight(db: Database, batch: list[Candidate]) -> None:
    rows = [(c.root.name, to_db(c.relpath)) for c in batch]
    with db.atomic():
        db.conn.executemany("DELETE FROM daemon_inflight WHERE root = ? AND relpath = ?", rows)


def inflight(db: Database, root: str) -> dict[str, str]:
    sql = "SELECT relpath, trigger FROM daemon_inflight WHERE root = ?"
    return {from_db(relpath): trigger for relpath, trigger in db.execute(sql, [root])}


def drop_inflight(db: Database, root: str, before: float) -> None:
    """After a clean walk that began at `before`: what was listed before it and is still
    listed is no longer there (files listed since, e.g. `after:` waits, stay)."""
    with db.atomic():
        db.execute("DELETE FROM daemon_inflight WHERE root = ? AND since < ?", [root, before])
