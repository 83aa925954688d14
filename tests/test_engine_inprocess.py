"""In-process python tasks (`isolation: thread`) and what the runner commits before a
task starts, with a real store read from other processes."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from clerk.engine.fields import dump_fields
from clerk.engine.model import build_workflow
from clerk.engine.runner import Runner
from clerk.engine.runs import COMPLETED, FAILED, RunStore
from clerk.plugins.manager import make_plugin_manager
from clerk.store import open_store

PY = sys.executable

FUNCTIONS = """
import os, threading

def first(name):
    return {"pid": os.getpid(), "thread": threading.current_thread().name, "who": name}

def second(tasks, **fields):
    return {"got": tasks["first"]["who"], "fields": sorted(fields)}

def add(a, b):
    return a + b
"""

# A task that reads the store from its own process: its own row and its dependency's
# must already be committed when it runs.
PEEK = """
import sqlite3, sys
db, run = sys.argv[1], int(sys.argv[2])
rows = dict(sqlite3.connect(db).execute(
    "SELECT task, status FROM task_runs WHERE run_id = ?", (run,)).fetchall())
print(rows["up"], rows["down"])
sys.exit(0 if (rows["up"], rows["down"]) == ("COMPLETED", "RUNNING") else 1)
"""


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    (tmp_path / "inproc_functions.py").write_text(FUNCTIONS)
    monkeypatch.syspath_prepend(str(tmp_path))
    db = open_store(tmp_path / "clerk.db")
    executors = make_plugin_manager().registry().executors

    def run(tasks: list[dict[str, Any]], fields: dict[str, Any] | None = None) -> RunStore:
        store = RunStore(db)
        run_id = store.create_run(build_workflow("w", {"tasks": tasks}), dump_fields(fields or {}))
        Runner(db, executors, logs_dir=tmp_path / "logs").execute([run_id])
        return store

    return run


def test_thread_isolation_calls_in_this_process_with_fields_and_upstream(engine: Any) -> None:
    call = {"executor": "python", "isolation": "thread"}
    store = engine([
        {"name": "first", **call, "call": "inproc_functions:first"},
        {"name": "second", **call, "call": "inproc_functions:second", "depends_on": ["first"]},
        {"name": "sum", **call, "call": "inproc_functions:add", "kwargs": {"a": 2, "b": 3}},
    ], {"name": "report.pdf"})  # fmt: skip
    tasks = {t.task: t for t in store.tasks(1)}
    assert all(t.status == COMPLETED for t in tasks.values()), [t.error for t in tasks.values()]
    first = tasks["first"].outputs
    assert first["pid"] == os.getpid() and first["who"] == "report.pdf"
    assert first["thread"].startswith("clerk-task")  # a worker thread, not the loop
    assert tasks["second"].outputs == {"got": "report.pdf", "fields": ["name"]}
    assert tasks["sum"].outputs == {"result": 5}
    assert tasks["first"].cpu_user is not None and tasks["first"].pid is None


def test_thread_isolation_refuses_env_and_cwd(engine: Any) -> None:
    store = engine([{"name": "t", "executor": "python", "isolation": "thread",
                     "call": "inproc_functions:add", "env": {"A": "1"}}])  # fmt: skip
    task = store.tasks(1)[0]
    assert (task.status, task.error_code) == (FAILED, "config")
    assert "env: and cwd: need isolation: process" in task.error


def test_a_task_starts_only_after_its_state_is_committed(engine: Any, tmp_path: Path) -> None:
    peek = [PY, "-c", PEEK, str(tmp_path / "clerk.db"), "1"]
    store = engine([
        {"name": "up", "executor": "shell", "command": ["true"]},
        {"name": "down", "executor": "shell", "command": peek, "depends_on": ["up"]},
    ])  # fmt: skip
    down = store.task(1, "down")
    assert down is not None and down.status == COMPLETED, down
    kinds = [(e["kind"], e["task"]) for e in store.events(1)]
    assert kinds.index(("task_completed", "up")) < kinds.index(("task_started", "down"))
    # a new connection sees every transition: nothing waits in an open transaction
    with sqlite3.connect(tmp_path / "clerk.db") as conn:
        rows = conn.execute("SELECT status, pid FROM task_runs ORDER BY id").fetchall()
    assert [status for status, _ in rows] == [COMPLETED, COMPLETED]
    assert all(pid for _, pid in rows)  # each process's pid was recorded
