"""Workflows with `schedule:` / `every:`: started by the daemon's scheduler, listed and
started through `clerk jobs`, a run missed while down started once at start; `clerk
check` validates the keys."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import sqlite_utils
from test_daemon_support import running_daemon, wait_until, write_config

from clerk.store import open_store

Clerk = Callable[..., subprocess.CompletedProcess[str]]


def _workflow(tmp_path: Path, timer: str) -> str:
    marker = tmp_path / "ticks"
    code = "import sys; open(sys.argv[1], 'a').write('tick\\n')"
    command = json.dumps([sys.executable, "-c", code, str(marker)])
    return (
        f"roots:\n  box: {{path: {tmp_path}, watch: false}}\n"
        f"workflows:\n  tick:\n    {timer}\n"
        f"    tasks:\n      - {{name: mark, executor: shell, command: {command}}}\n"
    )


def _runs(clerk_home: Path) -> list[dict[str, object]]:
    db = sqlite_utils.Database(clerk_home / "clerk.db")
    try:
        return list(db.query("SELECT id, status, trigger FROM runs ORDER BY id"))
    finally:
        db.close()


def _completed(clerk_home: Path) -> int:
    return sum(1 for run in _runs(clerk_home) if run["status"] == "COMPLETED")


def test_every_starts_runs_and_jobs_lists_and_runs_it(
    tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path], clerk: Clerk
) -> None:
    write_rules(_workflow(tmp_path, "every: 1s"))
    write_config(clerk_home, "reconcile_interval: 1h\n")
    with running_daemon(tmp_path) as (daemon, _):
        wait_until(lambda: _completed(clerk_home) >= 2, what="two scheduled runs")
        assert {run["trigger"] for run in _runs(clerk_home)} == {"schedule:tick"}
        listed = json.loads(clerk("jobs", "list", "--json").stdout)
        (job,) = listed
        assert (job["name"], job["kind"], job["schedule"]) == ("tick", "workflow", "every 1s")
        next_run = datetime.fromisoformat(job["next_run"]).timestamp()  # ISO 8601
        assert job["last_status"] == "started" and next_run > time.time() - 2
        started = clerk("jobs", "run", "tick")
        assert started.returncode == 0, started.stderr
        assert "started" in started.stdout
        wait_until(
            lambda: any(r["trigger"] == "manual:tick" and r["status"] == "COMPLETED"
                        for r in _runs(clerk_home)),
            what="the manual run completed",
        )  # fmt: skip
        unknown = clerk("jobs", "run", "nope")
        assert (
            unknown.returncode == 1 and "no lifecycle job or scheduled workflow" in unknown.stderr
        )
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    # without the daemon, the list comes from the rules and the store
    (job,) = json.loads(clerk("jobs", "list", "--json").stdout)
    assert job["name"] == "tick" and job["last_run"] is not None and job["next_run"] is None


def test_a_run_missed_while_down_runs_once_at_start(
    tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path]
) -> None:
    # New Year's midnight only: the next tick is far away, so any run here is the catch-up
    write_rules(_workflow(tmp_path, "schedule: '0 0 1 1 *'"))
    write_config(clerk_home, "reconcile_interval: 1h\n")
    db = open_store(clerk_home / "clerk.db")
    two_years_ago = time.time() - 2 * 366 * 86400
    db.table("schedules").insert(
        {"name": "workflow:tick", "spec": "cron 0 0 1 1 *", "last_run": two_years_ago},
        pk="name",
        replace=True,
    )
    db.close()
    with running_daemon(tmp_path) as (daemon, _):
        wait_until(lambda: _completed(clerk_home) == 1, what="the missed run")
        (run,) = _runs(clerk_home)
        assert run["trigger"] == "schedule:tick"
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    assert (tmp_path / "ticks").read_text() == "tick\n"
    with running_daemon(tmp_path) as (daemon, _):
        # ran since its last tick: nothing to catch up on this time
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    assert len(_runs(clerk_home)) == 1


def test_check_reports_bad_workflow_timers_with_their_place(
    tmp_path: Path, write_rules: Callable[[str], Path], clerk: Clerk
) -> None:
    path = write_rules(
        f"roots:\n  box: {{path: {tmp_path}, watch: false}}\n"
        "workflows:\n"
        "  bad-cron:\n    schedule: '61 * * * *'\n"
        "    tasks: [{name: a, executor: shell, command: [true]}]\n"
        "  both:\n    schedule: '* * * * *'\n    every: 5m\n"
        "    tasks: [{name: a, executor: shell, command: [true]}]\n"
        "  bad-every:\n    every: soon\n"
        "    tasks: [{name: a, executor: shell, command: [true]}]\n"
    )
    result = clerk("check")
    assert result.returncode == 1
    out = result.stdout
    assert f"{path}:5:15: schedule:" in out
    assert f"{path}:9:5: a workflow has schedule: or every:, not both" in out
    assert f"{path}:12:12: every:" in out
