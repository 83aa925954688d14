"""The events timeline: one recorder in store/, every row the same shape (issue 12)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from clerk.store import open_store, write_txn
from clerk.store.events import file_errors, record_event, record_file_error

PACKAGE = Path(__file__).resolve().parent.parent / "clerk"


def test_a_file_error_carries_its_file_id_and_is_listed_for_the_file(tmp_path: Path) -> None:
    db = open_store(tmp_path / "clerk.db")
    with write_txn(db):
        record_file_error(db, "/in/a\udcff.txt", "hook failed", file_id=7)
        record_file_error(db, "/in/b.txt", "not this one", file_id=8)
        record_event(db, "alert", "alert:slow", {"message": "slow"}, file_id=None, ts=1.0)
    assert [e["error"] for e in file_errors(db, 7)] == ["hook failed"]
    rows = list(db.query("SELECT ts, kind, subject, data FROM events ORDER BY id"))
    assert rows[0]["subject"] == "/in/a\ufffd.txt"  # an undecodable byte, shown
    assert json.loads(rows[0]["data"]) == {"error": "hook failed", "file_id": 7}
    assert rows[2] == {"ts": 1.0, "kind": "alert", "subject": "alert:slow",
                       "data": json.dumps({"message": "slow"})}  # fmt: skip
    with pytest.raises(TypeError):
        record_file_error(db, "/in/c.txt", "which file?")  # type: ignore[call-arg]
    db.close()


# every table's one owner in store/ (migrations.py creates them all); the old rule, any
# module of store/, stays for the tables whose statements store/ modules share
OWNERS = {
    "events": None,
    "files": None,
    "ops": None,
    "daemon_inflight": None,
    "runs": "store/runs.py",
    "task_runs": "store/runs.py",
    "run_events": "store/runs.py",
    "schedules": "store/schedules.py",
}


@pytest.mark.parametrize("table", sorted(OWNERS))
def test_no_statement_on_the_stores_tables_outside_the_store(table: str) -> None:
    """store/ owns the events, catalog, journal, in-flight, run and schedule tables:
    everyone else calls clerk.store.events, .catalog, .journal, .inflight, .runs and
    .schedules (docs/design.md); a table with one owner is touched by that module only."""
    statement = re.compile(
        rf"\b(INSERT\s+(OR\s+\w+\s+)?INTO|FROM|UPDATE|DELETE\s+FROM|JOIN)\s+{table}\b"
        # sqlite-utils' table objects too: db["runs"], db.table("schedules")
        rf"|\[\s*[\"']{table}[\"']\s*\]\.|\.table\(\s*[\"']{table}[\"']"
    )  # clerk writes SQL keywords in capitals: prose ("away from ops") does not match
    owner = OWNERS[table]
    outside = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if statement.search(path.read_text(encoding="utf-8"))
        and not _allowed(path.relative_to(PACKAGE).as_posix(), owner)
    ]
    assert outside == []


def _allowed(path: str, owner: str | None) -> bool:
    if path in ("store/migrations.py", "store/maintenance.py"):  # create; count every table
        return True
    return path == owner if owner is not None else path.startswith("store/")
