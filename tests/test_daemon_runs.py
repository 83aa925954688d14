"""Workflows executed by the daemon itself: a file in the inbox starts a run at once;
kill -9 mid-workflow and restart resumes it without re-running completed tasks; SIGTERM
lets the running task finish and hands the rest to the next start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
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
