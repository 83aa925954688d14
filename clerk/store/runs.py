"""Durable runs: the `runs`, `task_runs` and `run_events` tables (migration m002).

Every statement on those tables is here (`RunRecords`); the engine's `RunStore`
(clerk/engine/runs.py) adds what needs its types: a `Workflow` in, a `Workflow` out,
and which runners are alive.

Every state change is committed before anything acts on it, so what `clerk runs show`
reads, and what a runner finds after a crash, is what happened. Outside a `batch()`
each write is its own transaction; the runner groups the writes of one scheduling step
into one `batch()` and commits it before it starts the processes that step decided on.
Writers are the process executing a run (one at a time, see `claim`); readers are
anywhere.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlite_utils import Database

PENDING = "PENDING"
RUNNING = "RUNNING"
PAUSED = "PAUSED"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
SKIPPED = "SKIPPED"  # a task whose failure its on_failure strategy let pass, or an unused fallback
STATUSES = (PENDING, RUNNING, PAUSED, COMPLETED, FAILED, CANCELLED)
FINISHED = frozenset({COMPLETED, FAILED, CANCELLED})  # a run that has ended
TASK_DONE = FINISHED | {SKIPPED}  # a task that will not run again


@dataclass
class RunInfo:
    """A run as the `run_started` / `run_finished` hooks and `clerk runs` see it."""

    id: int
    workflow: str
    status: str
    trigger: str
    inputs: dict[str, Any]
    created: float
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    runner_pid: int | None = None
    runner_host: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TaskRunInfo:
    """One task of a run: its latest attempt, resource usage and outputs."""

    run_id: int
    task: str
    status: str
    attempt: int = 0
    started: float | None = None
    finished: float | None = None
    exit_code: int | None = None
    error_code: str | None = None
    error: str | None = None
    recoverable: bool | None = None
    pid: int | None = None
    pgid: int | None = None
    proc_start: int | None = None
    wall: float | None = None
    cpu_user: float | None = None
    cpu_sys: float | None = None
    max_rss: int | None = None
    next_attempt_at: float | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    interruptions: int = 0  # attempts cut off by the runner's death (they ran again)
    stdout_log: str | None = None
    stderr_log: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_UPDATES: dict[tuple[str, ...], str] = {}  # (table, where, *columns) -> its UPDATE
_RUN_COLUMNS = (
    "id, workflow, status, trigger, inputs, created, started, finished, error, runner_pid,"
    " runner_host"
)
_TASK_COLUMNS = [f for f in TaskRunInfo.__dataclass_fields__]


def has_run_tables(db: Database) -> bool:
    """Whether the store has the run tables yet (a read-only store may predate them)."""
    return bool(db["runs"].exists())


class RunRecords:
    """Reads and writes runs in a store opened with `clerk.store.open_store`."""

    def __init__(self, db: Database):
        self.db = db
        self.conn = db.conn
        self._batching = False

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Every write inside the block goes into one transaction, committed on the way
        out (also when the block raises: what was recorded had happened)."""
        if self._batching:
            yield
            return
        self._batching = True
        try:
            yield
        finally:
            self._batching = False
            if self.conn.in_transaction:
                self.conn.commit()

    @contextmanager
    def _txn(self) -> Iterator[None]:
        """A transaction of its own, or a part of the current batch."""
        if self._batching:
            yield
        else:
            with self.conn:
                yield

    # --- writing --------------------------------------------------------------------------
    def insert_run(
        self,
        workflow: str,
        tasks: Iterable[str],
        definition: str,
        inputs_json: str,
        trigger: str = "manual",
        *,
        runner_pid: int | None = None,
    ) -> int:
        """A PENDING run with a PENDING row per task, in one transaction.

        `definition`: the workflow as JSON (the run executes it even if the rule files
        change); `runner_pid`: the process that will execute it (claimed from the
        start, so a worker looking for queued runs leaves it alone).
        """
        now = time.time()
        with self.conn:
            cursor = self.conn.execute(
                "INSERT INTO runs (workflow, status, trigger, inputs, definition, created,"
                " runner_pid) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (workflow, PENDING, trigger, inputs_json, definition, now, runner_pid),
            )
            run_id = int(cursor.lastrowid or 0)
            self.conn.executemany(
                "INSERT INTO task_runs (run_id, task, status, attempt) VALUES (?, ?, ?, 0)",
                [(run_id, name, PENDING) for name in tasks],
            )
            self._event(run_id, None, "run_created", {"trigger": trigger}, now)
        return run_id

    def claim(self, run_id: int, pid: int | None = None) -> bool:
        """Mark the run as executed by this process; False if another one has it."""
        pid = pid or os.getpid()
        with self.conn:
            cursor = self.conn.execute(
                "UPDATE runs SET runner_pid = ?, runner_host = ? WHERE id = ?"
                " AND (runner_pid IS NULL OR runner_pid = ?) AND status NOT IN (?, ?, ?)",
                (pid, socket.gethostname(), run_id, pid, *sorted(FINISHED)),
            )
        return cursor.rowcount == 1

    def claimed_unfinished(self) -> list[tuple[int, int, str | None]]:
        """(run, runner pid, runner host) of every unfinished run some runner claimed."""
        marks = ", ".join("?" * len(FINISHED))
        rows = self.conn.execute(
            f"SELECT id, runner_pid, runner_host FROM runs WHERE runner_pid IS NOT NULL"
            f" AND status NOT IN ({marks})",
            sorted(FINISHED),
        ).fetchall()
        return [(run_id, pid, host) for run_id, pid, host in rows]

    def queued(self) -> list[int]:
        """Runs waiting for a worker: PENDING or RUNNING, claimed by nobody, oldest first."""
        rows = self.conn.execute(
            "SELECT id FROM runs WHERE status IN (?, ?) AND runner_pid IS NULL ORDER BY id",
            (PENDING, RUNNING),
        )
        return [row[0] for row in rows]

    def take_requests(self, run_ids: list[int]) -> list[tuple[int, str]]:
        """Requests (cancel, pause, resume) left on these runs, cleared as they are read."""
        if not run_ids:
            return []
        marks = ", ".join("?" * len(run_ids))
        with self.conn:
            rows = self.conn.execute(
                f"SELECT id, requested FROM runs WHERE requested IS NOT NULL AND id IN ({marks})",
                run_ids,
            ).fetchall()
            if rows:
                self.conn.execute(
                    f"UPDATE runs SET requested = NULL WHERE id IN ({marks})", run_ids
                )
        return [(row[0], row[1]) for row in rows]

    def pause_unclaimed(self, run_id: int) -> bool:
        """PAUSE a PENDING or RUNNING run nobody executes; False if it was not such a run."""
        with self._txn():
            cursor = self.conn.execute(
                "UPDATE runs SET status = ? WHERE id = ? AND runner_pid IS NULL"
                " AND status IN (?, ?)",
                (PAUSED, run_id, PENDING, RUNNING),
            )
            paused = cursor.rowcount == 1
            if paused:
                self._event(run_id, None, "run_paused", None, time.time())
        return paused

    def requeue_failed(self, run_id: int, runner_pid: int | None = None) -> None:
        """A FAILED or CANCELLED run PENDING again: the tasks that did not complete start
        afresh (attempts from 1, no error), completed ones keep their results."""
        with self._txn():
            self.conn.execute(
                "UPDATE task_runs SET status = ?, attempt = 0, interruptions = 0,"
                " next_attempt_at = NULL, error_code = NULL, error = NULL, recoverable = NULL,"
                " exit_code = NULL"
                " WHERE run_id = ? AND status != ?",
                (PENDING, run_id, COMPLETED),
            )
            self._update("runs", "id = ?", (run_id,),
                         {"status": PENDING, "finished": None, "error": None,
                          "runner_pid": runner_pid},
                         run_id, None, "run_retried", None)  # fmt: skip

    def update_run(self, run_id: int, event: str | None = None,
                   data: dict[str, Any] | None = None, **values: Any) -> None:  # fmt: skip
        if not self._batching:
            with self.conn:
                self._update("runs", "id = ?", (run_id,), values, run_id, None, event, data)
            return
        self._update("runs", "id = ?", (run_id,), values, run_id, None, event, data)

    def update_task(self, run_id: int, task: str, event: str | None = None,
                    data: dict[str, Any] | str | None = None, **values: Any) -> None:  # fmt: skip
        """`data`: the event's data, or that already encoded as JSON (the runner's
        per-task events, which it formats without a `json.dumps` call)."""
        if "outputs" in values:
            outputs = values["outputs"]
            values["outputs"] = json.dumps(outputs) if outputs else "{}"
        where = "run_id = ? AND task = ?"
        if not self._batching:
            with self.conn:
                self._update("task_runs", where, (run_id, task), values, run_id, task, event, data)
            return
        self._update("task_runs", where, (run_id, task), values, run_id, task, event, data)

    def event(
        self, run_id: int, task: str | None, kind: str, data: dict[str, Any] | None = None
    ) -> None:
        with self._txn():
            self._event(run_id, task, kind, data, time.time())

    def _update(self, table: str, where: str, key: tuple[Any, ...], values: dict[str, Any],
                run_id: int, task: str | None, event: str | None,
                data: dict[str, Any] | str | None) -> None:  # fmt: skip
        # the runner makes thousands of these a second: the SQL text is built once per
        # shape (sqlite3 then reuses its prepared statement), not once per call
        if values:
            shape = (table, where, *values)
            sql = _UPDATES.get(shape)
            if sql is None:
                assignments = ", ".join(f"{column} = ?" for column in values)
                sql = _UPDATES[shape] = f"UPDATE {table} SET {assignments} WHERE {where}"
            self.conn.execute(sql, (*values.values(), *key))
        if event:
            self._event(run_id, task, event, data, time.time())

    def _event(self, run_id: int, task: str | None, kind: str,
               data: dict[str, Any] | str | None, ts: float) -> None:  # fmt: skip
        if data and not isinstance(data, str):
            data = json.dumps(data)
        self.conn.execute(
            "INSERT INTO run_events (run_id, task, ts, kind, data) VALUES (?, ?, ?, ?, ?)",
            (run_id, task, ts, kind, data or None),
        )

    # --- reading --------------------------------------------------------------------------
    def run(self, run_id: int) -> RunInfo | None:
        row = self.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        found = row.fetchone()
        return _run_info(found) if found else None

    def definition_json(self, run_id: int) -> str:
        """The workflow the run was created with, as `insert_run` stored it."""
        row = self.conn.execute("SELECT definition FROM runs WHERE id = ?", (run_id,)).fetchone()
        return str(row[0])

    def inputs_json(self, run_id: int) -> str:
        row = self.conn.execute("SELECT inputs FROM runs WHERE id = ?", (run_id,)).fetchone()
        return str(row[0] or "{}")

    def runs(self, *, status: str | None = None, workflow: str | None = None,
             limit: int | None = 100) -> list[RunInfo]:  # fmt: skip
        clauses, params = [], []
        if status:
            clauses.append("status = ?")
            params.append(status.upper())
        if workflow:
            clauses.append("workflow = ?")
            params.append(workflow)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_run_info(row) for row in self.conn.execute(sql, params)]

    def run_times(self, since: float | None = None) -> list[tuple[Any, ...]]:
        """(workflow, status, created, started, finished) of every run created since."""
        sql = "SELECT workflow, status, created, started, finished FROM runs"
        params: list[Any] = []
        if since is not None:
            sql += " WHERE created >= ?"
            params.append(since)
        return [tuple(row) for row in self.conn.execute(sql, params)]

    def completed_durations(self, workflow: str, limit: int = 50) -> list[float]:
        """Seconds each of the workflow's latest COMPLETED runs took, newest first."""
        rows = self.conn.execute(
            "SELECT started, finished FROM runs WHERE workflow = ? AND status = ?"
            " AND started IS NOT NULL AND finished IS NOT NULL ORDER BY id DESC LIMIT ?",
            (workflow, COMPLETED, limit),
        )
        return [finished - started for started, finished in rows]

    def waiting_count(self, workflow: str | None = None) -> int:
        """Runs waiting to go on (PENDING or PAUSED), of one workflow or of all."""
        scope, params = ("AND workflow = ?", [workflow]) if workflow else ("", [])
        row = self.conn.execute(
            f"SELECT count(*) FROM runs WHERE status IN (?, ?) {scope}",
            [PENDING, PAUSED, *params],
        ).fetchone()
        return int(row[0])

    def ended_since(self, since: float, workflow: str | None = None) -> tuple[int, int]:
        """(ended, of those FAILED) for the runs that finished since, of one workflow or all."""
        scope, params = ("AND workflow = ?", [workflow]) if workflow else ("", [])
        marks = ", ".join("?" * len(FINISHED))
        ended, failed = self.conn.execute(
            f"SELECT count(*), sum(status = ?) FROM runs WHERE finished >= ?"
            f" AND status IN ({marks}) {scope}",
            [FAILED, since, *sorted(FINISHED), *params],
        ).fetchone()
        return int(ended or 0), int(failed or 0)

    def tasks(self, run_id: int) -> list[TaskRunInfo]:
        rows = self.conn.execute(
            f"SELECT {', '.join(_TASK_COLUMNS)} FROM task_runs WHERE run_id = ? ORDER BY id",
            (run_id,),
        )
        return [_task_info(row) for row in rows]

    def task(self, run_id: int, task: str) -> TaskRunInfo | None:
        row = self.conn.execute(
            f"SELECT {', '.join(_TASK_COLUMNS)} FROM task_runs WHERE run_id = ? AND task = ?",
            (run_id, task),
        ).fetchone()
        return _task_info(row) if row else None

    def events(self, run_id: int) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT ts, kind, task, data FROM run_events WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [
            {"ts": ts, "kind": kind, "task": task, "data": json.loads(data) if data else {}}
            for ts, kind, task, data in rows
        ]


def _run_info(row: tuple[Any, ...]) -> RunInfo:
    run_id, workflow, status, trigger, inputs, created, started, finished, error, pid, host = row
    return RunInfo(run_id, workflow, status, trigger or "", json.loads(inputs or "{}"),
                   created, started, finished, error, pid, host)  # fmt: skip


def _task_info(row: tuple[Any, ...]) -> TaskRunInfo:
    values = dict(zip(_TASK_COLUMNS, row, strict=True))
    outputs = values["outputs"]  # most tasks have none: no json.loads for those
    values["outputs"] = json.loads(outputs) if outputs and outputs != "{}" else {}
    if values["recoverable"] is not None:
        values["recoverable"] = bool(values["recoverable"])
    values["attempt"] = values["attempt"] or 0
    return TaskRunInfo(**values)
