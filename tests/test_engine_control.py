"""Failure strategies (business exit codes, skip, fallback, abort), and cancel, pause,
resume, retry and crash recovery across processes: the CLI asks, the detached worker
(a real process) acts, and kill -9 of the worker is survived."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from clerk.app import App
from clerk.engine import control
from clerk.engine.model import build_workflow
from clerk.engine.runner import Runner
from clerk.engine.runs import CANCELLED, COMPLETED, FAILED, SKIPPED, RunStore
from clerk.plugins.manager import make_plugin_manager
from clerk.store import open_store

PY = sys.executable


def sh(code: str) -> list[str]:
    return ["sh", "-c", code]


@pytest.fixture
def run_in_process(tmp_path: Path) -> Callable[..., tuple[RunStore, int]]:
    db = open_store(tmp_path / "clerk.db")
    store = RunStore(db)
    executors = make_plugin_manager().registry().executors

    def run(tasks: list[dict[str, Any]], **workflow: Any) -> tuple[RunStore, int]:
        run_id = store.create_run(build_workflow("w", {"tasks": tasks, **workflow}), "{}")
        Runner(db, executors, logs_dir=tmp_path / "logs", kill_grace=0.2).execute([run_id])
        return store, run_id

    return run


def tasks_of(store: RunStore, run_id: int) -> dict[str, Any]:
    return {t.task: t for t in store.tasks(run_id)}


def test_business_exit_codes_are_not_retried(run_in_process: Callable[..., Any]) -> None:
    store, run_id = run_in_process([
        {"name": "t", "executor": "shell", "command": sh("exit 2"),
         "retry": {"max": 3, "backoff": "0.01s"}, "on_failure": {"business_exit_codes": [2]}},
        {"name": "u", "executor": "shell", "command": sh("exit 3"),
         "retry": {"max": 1, "backoff": "0.01s"}, "on_failure": {"business_exit_codes": [2]}},
    ])  # fmt: skip
    t, u = tasks_of(store, run_id)["t"], tasks_of(store, run_id)["u"]
    assert (t.status, t.attempt, t.error_code, t.recoverable) == (FAILED, 1, "business", False)
    assert (u.attempt, u.error_code) == (2, "exit")  # other statuses still retry


def test_skip_lets_dependents_run(run_in_process: Callable[..., Any]) -> None:
    store, run_id = run_in_process([
        {"name": "optional", "executor": "shell", "command": sh("exit 1"),
         "on_failure": "skip"},
        {"name": "after", "executor": "shell", "command": ["true"], "depends_on": ["optional"]},
    ])  # fmt: skip
    tasks = tasks_of(store, run_id)
    assert tasks["optional"].status == SKIPPED and tasks["optional"].error_code == "exit"
    assert tasks["after"].status == COMPLETED
    assert store.run(run_id).status == COMPLETED


def test_fallback_stands_in_for_a_failed_task(run_in_process: Callable[..., Any]) -> None:
    store, run_id = run_in_process([
        {"name": "fast", "executor": "shell", "command": sh("exit 1"), "fallback": "slow"},
        {"name": "slow", "executor": "shell", "command": ["true"]},
        {"name": "after", "executor": "shell", "command": ["true"], "depends_on": ["fast"]},
    ])  # fmt: skip
    tasks = tasks_of(store, run_id)
    assert [tasks[n].status for n in ("fast", "slow", "after")] == [FAILED, COMPLETED, COMPLETED]
    assert store.run(run_id).status == COMPLETED
    kinds = [(e["kind"], e["task"]) for e in store.events(run_id)]
    assert ("recovery_started", "fast") in kinds

    store, run_id = run_in_process([  # not needed: the fallback never runs
        {"name": "fast", "executor": "shell", "command": ["true"], "fallback": "slow"},
        {"name": "slow", "executor": "shell", "command": ["true"]},
    ])  # fmt: skip
    slow = tasks_of(store, run_id)["slow"]
    assert (slow.status, slow.attempt, slow.error_code) == (SKIPPED, 0, "not_needed")
    assert store.run(run_id).status == COMPLETED


def test_abort_stops_the_whole_run(run_in_process: Callable[..., Any]) -> None:
    started = time.monotonic()
    store, run_id = run_in_process([
        {"name": "long", "executor": "shell", "command": ["sleep", "30"]},
        {"name": "bad", "executor": "shell", "command": sh("sleep 0.3; exit 1"),
         "on_failure": {"exit": "abort"}},
        {"name": "later", "executor": "shell", "command": ["true"], "depends_on": ["long"]},
    ])  # fmt: skip
    assert time.monotonic() - started < 10
    tasks = tasks_of(store, run_id)
    assert tasks["bad"].status == FAILED
    assert (tasks["long"].status, tasks["long"].error_code) == (CANCELLED, "cancelled")
    assert (tasks["later"].status, tasks["later"].error_code) == (CANCELLED, "aborted")
    run = store.run(run_id)
    assert run.status == FAILED and run.error == "task 'bad' failed: exited with status 1"


# --- across processes ------------------------------------------------------------------


@pytest.fixture
def flow(tmp_path: Path, write_rules: Callable[[str, str], Path]) -> Path:
    """Workflow `flow`: a -> b -> c. Each appends its name to `ran`; b writes its pid,
    fails while a file `b.fail` exists, and sleeps $B_SLEEP (30) the first time only."""
    script = tmp_path / "step.py"
    script.write_text(
        "import os, sys, time\n"
        "base, name = sys.argv[1], sys.argv[2]\n"
        "open(os.path.join(base, 'ran'), 'a').write(name + '\\n')\n"
        "if name == 'b':\n"
        "    open(os.path.join(base, 'b.pid'), 'a').write(f'{os.getpid()}\\n')\n"
        "    if os.path.exists(os.path.join(base, 'b.fail')):\n"
        "        sys.exit(1)\n"
        "    first = not os.path.exists(os.path.join(base, 'b.again'))\n"
        "    open(os.path.join(base, 'b.again'), 'w').close()\n"
        "    if first:\n"
        "        time.sleep(float(os.environ.get('B_SLEEP', '30')))\n"
    )
    write_rules(f"""
roots: {{}}
rules: []
workflows:
  flow:
    tasks:
      - {{name: a, executor: shell, command: [{PY}, {script}, {tmp_path}, a]}}
      - {{name: b, executor: shell, command: [{PY}, {script}, {tmp_path}, b], depends_on: [a],
          retry: {{max: 1, backoff: 0.1s}}}}
      - {{name: c, executor: shell, command: [{PY}, {script}, {tmp_path}, c], depends_on: [b]}}
  noop:
    tasks:
      - {{name: t, executor: shell, command: ["true"]}}
""")
    return tmp_path


def ran(base: Path) -> list[str]:
    path = base / "ran"
    return path.read_text().split() if path.exists() else []


def store_of(clerk_home: Path) -> RunStore:
    return RunStore(open_store(clerk_home / "clerk.db"))


def wait_until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, "condition not met in time"
            return value
        time.sleep(0.05)


def b_running(store: RunStore, base: Path) -> Any:
    tasks = tasks_of(store, 1)
    return tasks["b"].status == "RUNNING" and tasks["b"].pgid and (base / "b.pid").exists()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_cancel_mid_run_kills_the_task_and_leaves_nothing(
    clerk: Any, flow: Path, clerk_home: Path
) -> None:
    assert clerk("run", "flow").returncode == 0
    store = store_of(clerk_home)
    wait_until(lambda: b_running(store, flow))
    b_pid = int((flow / "b.pid").read_text().split()[0])
    result = clerk("runs", "cancel", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "run 1 CANCELLED"
    tasks = tasks_of(store, 1)
    assert [tasks[n].status for n in "abc"] == [COMPLETED, CANCELLED, CANCELLED]
    assert wait_until(lambda: not alive(b_pid), 5)
    assert ran(flow) == ["a", "b"]


def test_pause_lets_running_tasks_finish_and_resume_goes_on(
    clerk: Any, flow: Path, clerk_home: Path
) -> None:
    env = {"B_SLEEP": "1"}
    assert clerk("run", "flow", env=env).returncode == 0
    store = store_of(clerk_home)
    wait_until(lambda: b_running(store, flow))
    assert control.pause(App(), 1) == "PAUSED"  # what `clerk runs pause 1` calls
    # b finishes, c does not start, and the worker lets the run go
    wait_until(lambda: tasks_of(store, 1)["b"].status == COMPLETED and
               store.run(1).runner_pid is None)  # fmt: skip
    assert store.run(1).status == "PAUSED" and tasks_of(store, 1)["c"].status == "PENDING"
    assert ran(flow) == ["a", "b"]
    assert control.resume(App(), 1) == "RUNNING"
    wait_until(lambda: store.run(1).status == COMPLETED)
    assert ran(flow) == ["a", "b", "c"]
    kinds = [e["kind"] for e in store.events(1)]
    assert kinds.index("run_paused") < kinds.index("run_resumed") < len(kinds) - 1


def test_retry_reruns_only_what_did_not_complete(clerk: Any, flow: Path, clerk_home: Path) -> None:
    (flow / "b.fail").touch()
    result = clerk("run", "flow", "--wait")
    assert result.returncode == 1 and "run 1 FAILED" in result.stdout
    assert ran(flow) == ["a", "b", "b"]  # b and its one retry; c never started
    (flow / "b.fail").unlink()
    result = clerk("runs", "retry", "1", "--wait", env={"B_SLEEP": "0"})
    assert result.returncode == 0 and result.stdout.strip() == "run 1 COMPLETED"
    assert ran(flow) == ["a", "b", "b", "b", "c"]  # a is not run again
    store = store_of(clerk_home)
    assert tasks_of(store, 1)["b"].attempt == 1  # attempts start afresh
    assert "run_retried" in [e["kind"] for e in store.events(1)]
    result = clerk("runs", "retry", "1")
    assert result.returncode == 1 and "only FAILED or CANCELLED runs retry" in result.stderr


def test_kill_9_of_the_worker_mid_workflow_is_recovered(
    clerk: Any, flow: Path, clerk_home: Path
) -> None:
    assert clerk("run", "flow").returncode == 0
    store = store_of(clerk_home)
    wait_until(lambda: b_running(store, flow))
    worker = store.run(1).runner_pid
    old_b = int((flow / "b.pid").read_text().split()[0])
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: not alive(worker), 5)
    assert alive(old_b)  # its own session: the crash left it running
    # the next start of a runner (any `clerk run`) recovers run 1
    assert clerk("run", "noop").returncode == 0
    wait_until(lambda: store.run(1).status in ("COMPLETED", "FAILED"))
    assert store.run(1).status == COMPLETED
    assert ran(flow) == ["a", "b", "b", "c"]  # a is not run again, b is re-queued once
    assert wait_until(lambda: not alive(old_b), 5)
    b = tasks_of(store, 1)["b"]
    assert b.attempt == 2
    recovery = [e for e in store.events(1) if e["kind"] == "recovery_started"]
    assert recovery[0]["task"] == "b" and recovery[0]["data"]["killed_pgid"] == old_b
    assert "runner_lost" in [e["kind"] for e in store.events(1)]
    listed = clerk("runs", "list", "--json", check=True).stdout
    assert json.loads(listed)[0]["status"] == COMPLETED


def test_an_interrupted_attempt_spends_no_retry(clerk: Any, flow: Path, clerk_home: Path) -> None:
    assert clerk("run", "flow").returncode == 0
    store = store_of(clerk_home)
    wait_until(lambda: b_running(store, flow))
    worker = store.run(1).runner_pid
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: not alive(worker), 5)
    (flow / "b.fail").touch()  # from now on b fails: its one retry must still be there
    assert clerk("run", "noop").returncode == 0
    wait_until(lambda: store.run(1).status in ("COMPLETED", "FAILED"))
    b = tasks_of(store, 1)["b"]
    # attempt 1 cut off (runs again), 2 fails, 3 is the retry `max: 1` allows, and fails
    assert (b.status, b.attempt, b.interruptions, b.error_code) == (FAILED, 3, 1, "exit")
    assert ran(flow) == ["a", "b", "b", "b"]
    kinds = [e["kind"] for e in store.events(1) if e["task"] == "b"]
    assert kinds.count("task_requeued") == 1 and kinds.count("task_retried") == 1


def test_a_workflow_timeout_aborts_the_run(run_in_process: Callable[..., Any]) -> None:
    started = time.monotonic()
    store, run_id = run_in_process([
        {"name": "quick", "executor": "shell", "command": ["true"]},
        {"name": "slow", "executor": "shell", "command": ["sleep", "30"], "depends_on": ["quick"]},
        {"name": "never", "executor": "shell", "command": ["true"], "depends_on": ["slow"]},
    ], timeout="1s")  # fmt: skip
    assert time.monotonic() - started < 10
    tasks = tasks_of(store, run_id)
    assert [tasks[n].status for n in ("quick", "slow", "never")] == [COMPLETED, CANCELLED,
                                                                     CANCELLED]  # fmt: skip
    run = store.run(run_id)
    assert run.status == FAILED and run.error == "the workflow timed out after 1s"
    assert 1 <= run.finished - run.started < 8
