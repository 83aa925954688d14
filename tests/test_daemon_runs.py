"""Workflows executed by the daemon itself: a file in the inbox starts a run at once;
kill -9 mid-workflow and restart resumes it without re-running completed tasks; SIGTERM
lets the running task finish and hands the rest to the next start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import sqlite_utils
from test_daemon_support import running_daemon, wait_until, write_config

Clerk = Callable[..., subprocess.CompletedProcess[str]]

STEP = """\
import os, sys, time
step, markers = sys.argv[1], sys.argv[2]
def mark(name):
    with open(os.path.join(markers, name), "a") as handle:
        handle.write(str(os.getpid()) + "\\n")
if step == "two":
    mark("two-started")
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(markers, "release")):
        if time.monotonic() > deadline:
            sys.exit(3)
        time.sleep(0.02)
mark(step)
"""


@pytest.fixture
def flow(tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path]) -> tuple[Path, Path]:
    """An inbox whose .pdf files start workflow `process`: one -> two (waits) -> three."""
    inbox, markers = tmp_path / "inbox", tmp_path / "markers"
    inbox.mkdir()
    markers.mkdir()
    script = tmp_path / "step.py"
    script.write_text(STEP)

    def task(name: str, after: str | None = None) -> str:
        command = json.dumps([sys.executable, str(script), name, str(markers)])
        deps = f", depends_on: [{after}]" if after else ""
        return (f"      - {{name: {name}, executor: shell, command: {command}{deps},"
                f" retry: {{max: 2, backoff: 0.1s}}}}\n")  # fmt: skip

    write_rules(
        f"roots:\n  inbox: {{path: {inbox}, settle: 0.2s}}\n"
        "rules:\n  - name: scans\n    in: inbox\n    match: [{extension: pdf}]\n"
        "    actions: [{run: process}]\n"
        "workflows:\n  process:\n    tasks:\n"
        + task("one")
        + task("two", "one")
        + task("three", "two")
    )
    write_config(clerk_home, "reconcile_interval: 1h\n")
    return inbox, markers


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _runs(clerk_home: Path) -> list[dict[str, object]]:
    db = sqlite_utils.Database(clerk_home / "clerk.db")
    try:
        return list(db.query("SELECT id, status, trigger, runner_pid FROM runs ORDER BY id"))
    finally:
        db.close()


def _tasks(clerk_home: Path, run_id: object) -> dict[str, tuple[str, int]]:
    db = sqlite_utils.Database(clerk_home / "clerk.db")
    try:
        sql = "SELECT task, status, attempt FROM task_runs WHERE run_id = ?"
        return {task: (status, attempt) for task, status, attempt in db.execute(sql, [run_id])}
    finally:
        db.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_dropped_file_runs_its_workflow_in_the_daemon(
    flow: tuple[Path, Path], tmp_path: Path, clerk_home: Path
) -> None:
    inbox, markers = flow
    (markers / "release").write_text("")
    with running_daemon(tmp_path) as (daemon, _):
        (inbox / "scan.pdf").write_text("%PDF")
        wait_until(lambda: _lines(markers / "three"), what="the workflow's last task")
        wait_until(lambda: _runs(clerk_home)[0]["status"] == "COMPLETED", what="run completed")
        (run,) = _runs(clerk_home)
        assert run["trigger"] == "rule:scans"
        assert run["runner_pid"] == daemon.pid  # executed in the daemon, not by a worker
        assert not (clerk_home / "state" / "runs" / "worker.log").exists()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0


def test_kill_9_mid_workflow_then_restart_completes_without_rerunning(
    flow: tuple[Path, Path], tmp_path: Path, clerk_home: Path
) -> None:
    inbox, markers = flow
    with running_daemon(tmp_path) as (daemon, _):
        (inbox / "scan.pdf").write_text("%PDF")
        wait_until(lambda: _lines(markers / "two-started"), what="task two running")
        daemon.kill()  # SIGKILL: task two's process is left behind, its run claimed
    (orphan,) = (int(pid) for pid in _lines(markers / "two-started"))
    assert _lines(markers / "one") and _alive(orphan)
    with running_daemon(tmp_path) as (daemon, _):
        # recovery kills what the old task left and re-queues it (its retry policy allows)
        wait_until(lambda: len(_lines(markers / "two-started")) == 2, what="task two again")
        wait_until(lambda: not _alive(orphan), what="the old task's process killed")
        (markers / "release").write_text("")
        wait_until(lambda: _runs(clerk_home)[0]["status"] == "COMPLETED", what="run completed")
        assert len(_lines(markers / "one")) == 1  # completed before the crash: not run again
        assert len(_lines(markers / "two")) == 1 and len(_lines(markers / "three")) == 1
        assert len(_runs(clerk_home)) == 1  # the file did not start a second run
        tasks = _tasks(clerk_home, _runs(clerk_home)[0]["id"])
        assert tasks == {"one": ("COMPLETED", 1), "two": ("COMPLETED", 2),
                         "three": ("COMPLETED", 1)}  # fmt: skip
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0


def test_stop_lets_the_running_task_finish_and_the_next_start_goes_on(
    flow: tuple[Path, Path], tmp_path: Path, clerk_home: Path
) -> None:
    inbox, markers = flow
    with running_daemon(tmp_path) as (daemon, _):
        (inbox / "scan.pdf").write_text("%PDF")
        wait_until(lambda: _lines(markers / "two-started"), what="task two running")
        daemon.signal(signal.SIGTERM)
        # the runner stops starting tasks (the run is paused for the stop) ...
        wait_until(lambda: _runs(clerk_home)[0]["status"] == "PAUSED", what="run held")
        (markers / "release").write_text("")  # ... and task two finishes while it stops
        assert daemon.wait() == 0
    (run,) = _runs(clerk_home)
    assert run["status"] == "RUNNING" and run["runner_pid"] is None  # back in the queue
    assert _tasks(clerk_home, run["id"])["two"] == ("COMPLETED", 1)
    assert _lines(markers / "three") == []  # no new task started while stopping
    with running_daemon(tmp_path) as (daemon, _):
        wait_until(lambda: _runs(clerk_home)[0]["status"] == "COMPLETED", what="run completed")
        assert [len(_lines(markers / n)) for n in ("one", "two-started", "two", "three")] == [
            1, 1, 1, 1,
        ]  # fmt: skip
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    assert os.path.exists(inbox / "scan.pdf")


def test_runs_queued_by_the_cli_are_executed_by_the_daemon(
    flow: tuple[Path, Path], tmp_path: Path, clerk_home: Path, clerk: Clerk
) -> None:
    _, markers = flow
    (markers / "release").write_text("")
    with running_daemon(tmp_path) as (daemon, _):
        queued = clerk("run", "process")
        assert queued.returncode == 0, queued.stderr
        wait_until(lambda: _runs(clerk_home)[0]["status"] == "COMPLETED", what="run completed")
        (run,) = _runs(clerk_home)
        assert run["runner_pid"] == daemon.pid  # the daemon holds the worker lock
        assert not (clerk_home / "state" / "runs" / "worker.log").exists()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0


# --- a task cut off by the daemon's own death ----------------------------------------------

WAIT = """\
import os, sys, time
name, markers = sys.argv[1], sys.argv[2]
with open(os.path.join(markers, name + "-started"), "a") as handle:
    handle.write(str(os.getpid()) + "\\n")
deadline = time.monotonic() + 60
while not os.path.exists(os.path.join(markers, "release")):
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.02)
with open(os.path.join(markers, name), "a") as handle:
    handle.write(str(os.getpid()) + "\\n")
"""


WIDE = {"COLUMNS": "400"}  # `runs show` tables: no cell wrapped


def _wide(tmp_path: Path, write_rules: Callable[[str], Path], clerk_home: Path,
          extra: str = "") -> tuple[Path, Path]:  # fmt: skip
    """A 20-task workflow `wide`, two tasks at a time, no retry:; each task waits for the
    file `release`. A .pdf dropped into the inbox starts it."""
    inbox, markers = tmp_path / "inbox", tmp_path / "markers"
    inbox.mkdir()
    markers.mkdir()
    script = tmp_path / "wait.py"
    script.write_text(WAIT)

    def task(name: str) -> str:
        command = json.dumps([sys.executable, str(script), name, str(markers)])
        return f"      - {{name: {name}, executor: shell, command: {command}{extra}}}\n"

    tasks = "".join(task(f"t{n:02}") for n in range(20))
    write_rules(
        f"roots:\n  inbox: {{path: {inbox}, settle: 0.2s}}\n"
        "rules:\n  - name: scans\n    in: inbox\n    match: [{extension: pdf}]\n"
        "    actions: [{run: wide}]\n"
        "workflows:\n  wide:\n    parallelism: 2\n    tasks:\n" + tasks
    )
    write_config(clerk_home, "reconcile_interval: 1h\n")
    return inbox, markers


def _started(markers: Path) -> dict[str, list[int]]:
    return {p.name[: -len("-started")]: [int(x) for x in _lines(p)]
            for p in markers.glob("*-started")}  # fmt: skip


def _task_rows(clerk_home: Path, run_id: object) -> dict[str, dict[str, object]]:
    db = sqlite_utils.Database(clerk_home / "clerk.db")
    try:
        sql = "SELECT task, status, attempt, error_code, error FROM task_runs WHERE run_id = ?"
        return {row["task"]: row for row in db.query(sql, [run_id])}
    finally:
        db.close()


def _kill_with_two_running(tmp_path: Path, inbox: Path, markers: Path) -> dict[str, list[int]]:
    with running_daemon(tmp_path) as (daemon, _):
        (inbox / "scan.pdf").write_text("%PDF")
        wait_until(lambda: len(_started(markers)) == 2, what="two tasks running")
        daemon.kill()  # SIGKILL: both tasks' processes are left behind, the run claimed
    return _started(markers)


def _wait_started_again(markers: Path, names: Iterable[str]) -> None:
    wait_until(lambda: all(len(_started(markers).get(n, [])) == 2 for n in names),
               what="the interrupted tasks running again")  # fmt: skip


def _ended(clerk_home: Path) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    """The run, once it has ended, and its tasks' rows."""
    wait_until(lambda: _runs(clerk_home)[0]["status"] in ("COMPLETED", "FAILED"),
               what="the run ended")  # fmt: skip
    (run,) = _runs(clerk_home)
    return run, _task_rows(clerk_home, run["id"])


def test_kill_9_runs_the_interrupted_tasks_again_once_and_the_run_completes(
    tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path], clerk: Clerk
) -> None:
    inbox, markers = _wide(tmp_path, write_rules, clerk_home)
    before = _kill_with_two_running(tmp_path, inbox, markers)
    interrupted = sorted(before)
    with running_daemon(tmp_path) as (daemon, _):
        # the two cut-off tasks start again (no retry: allowed none, and none is spent)
        _wait_started_again(markers, interrupted)
        (markers / "release").write_text("")
        run, rows = _ended(clerk_home)
        assert run["status"] == "COMPLETED", rows
        assert {n: (r["status"], r["attempt"]) for n, r in rows.items() if r["attempt"] != 1} == {
            n: ("COMPLETED", 2) for n in interrupted
        }
        assert all(r["status"] == "COMPLETED" for r in rows.values())
        assert all(not _alive(pid) for n in interrupted for pid in before[n])
        assert all(len(_lines(markers / n)) == 1 for n in rows)  # each completed once
        shown = clerk("runs", "show", str(run["id"]), check=True, env=WIDE).stdout
        assert "FAILED" not in shown and "interrupted: interrupted" not in shown
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0


def test_a_task_with_on_interrupt_fail_is_not_run_twice(
    tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path], clerk: Clerk
) -> None:
    inbox, markers = _wide(tmp_path, write_rules, clerk_home, ", on_interrupt: fail")
    assert clerk("check").returncode == 0, clerk("check").stdout
    before = _kill_with_two_running(tmp_path, inbox, markers)
    (markers / "release").write_text("")
    with running_daemon(tmp_path) as (daemon, _):
        run, rows = _ended(clerk_home)
        assert run["status"] == "FAILED"
        for name in before:
            assert (rows[name]["status"], rows[name]["attempt"]) == ("FAILED", 1)
            assert rows[name]["error_code"] == "interrupted"
            assert str(rows[name]["error"]).startswith("clerk stopped while it ran")
            assert len(before[name]) == 1 and not _alive(before[name][0])
        others = [r for n, r in rows.items() if n not in before]
        assert len(others) == 18 and all(r["status"] == "COMPLETED" for r in others)
        shown = clerk("runs", "show", str(run["id"]), check=True, env=WIDE).stdout
        assert "interrupted: clerk stopped while it ran (on_interrupt: fail)" in shown
        assert "interrupted: interrupted" not in shown
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0


def test_a_task_interrupted_twice_fails_with_one_clear_message(
    tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path], clerk: Clerk
) -> None:
    inbox, markers = _wide(tmp_path, write_rules, clerk_home, ", retry: {max: 3, backoff: 0.1s}")
    first = _kill_with_two_running(tmp_path, inbox, markers)
    with running_daemon(tmp_path) as (daemon, _):
        _wait_started_again(markers, first)
        daemon.kill()  # cut off a second time
    (markers / "release").write_text("")
    with running_daemon(tmp_path) as (daemon, _):
        run, rows = _ended(clerk_home)
        assert run["status"] == "FAILED"
        for name in first:  # not retried, although retry: would allow 3 more
            assert (rows[name]["status"], rows[name]["attempt"]) == ("FAILED", 2)
            assert rows[name]["error"] == "clerk stopped while it ran, a second time"
            assert len(_started(markers)[name]) == 2
        shown = clerk("runs", "show", str(run["id"]), check=True, env=WIDE).stdout
        assert "interrupted: clerk stopped while it ran, a second time" in shown
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
