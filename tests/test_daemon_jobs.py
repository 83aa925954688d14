"""Lifecycle jobs in the daemon: `every:` / `schedule:` sweeps, keep_newest, missed runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from test_daemon_support import files_under, running_daemon, wait_until, write_config

from clerk.daemon.control import request
from clerk.store import open_store

Clerk = Callable[..., subprocess.CompletedProcess[str]]


def _roots(tmp_path: Path) -> tuple[Path, Path, str]:
    archive, expired = tmp_path / "archive", tmp_path / "expired"
    archive.mkdir()
    expired.mkdir()
    text = (
        f"roots:\n  archive: {{path: {archive}, watch: false}}\n"
        f"  expired: {{path: {expired}, watch: false}}\n"
    )
    return archive, expired, text


def test_every_sweeps_and_keeps_the_newest_per_group(
    tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path], clerk: Clerk
) -> None:
    archive, expired, roots = _roots(tmp_path)
    write_rules(
        roots + "rules:\n  - name: rotate\n    in: archive\n    every: 1s\n"
        "    keep_newest: 2\n    group_by: '{reldir}'\n    match: [{extension: log}]\n"
        f"    actions: [{{move: '{expired}/{{reldir}}/{{name}}'}}]\n"
    )
    write_config(clerk_home, "reconcile_interval: 1h\n")
    now = time.time()
    for group, count in (("a", 4), ("b", 3), ("c", 1)):
        (archive / group).mkdir()
        for i in range(count):
            path = archive / group / f"{i}.log"  # 0.log is the oldest
            path.write_text(f"{group}{i}")
            os.utime(path, (now - 1000 + i, now - 1000 + i))
    (archive / "b" / "notes.txt").write_text("not a log: never counted, never moved")
    with running_daemon(tmp_path) as (daemon, _):
        expected = ["a/0.log", "a/1.log", "b/0.log"]
        wait_until(lambda: files_under(expired) == expected, what=f"{expected} expired")
        listed = json.loads(clerk("jobs", "list", "--json", check=True).stdout)
        assert [j["name"] for j in listed] == ["rotate"]
        job = listed[0]
        assert job["schedule"] == "every 1s" and job["last_status"] == "ok"
        assert job["next_run"] > job["last_run"]  # ISO 8601, one offset: they sort
        first_run = request(_sock(clerk_home), "jobs")["jobs"][0]["last_run"]  # seconds
        # later sweeps find only the two newest of each group: nothing more moves
        wait_until(
            lambda: request(_sock(clerk_home), "jobs")["jobs"][0]["last_run"] > first_run,
            what="another sweep",
        )
        assert files_under(expired) == expected
        assert files_under(archive) == [
            "a/2.log",
            "a/3.log",
            "b/1.log",
            "b/2.log",
            "b/notes.txt",
            "c/0.log",
        ]
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    # with the daemon down, the store still tells when the job last ran
    down = json.loads(clerk("jobs", "list", "--json", check=True).stdout)
    last_run = datetime.fromisoformat(down[0]["last_run"])  # ISO 8601, to the second
    assert last_run.timestamp() >= int(first_run) and down[0]["next_run"] is None


def _sock(clerk_home: Path) -> Path:
    return clerk_home / "run" / "clerk.sock"


def test_a_run_missed_while_down_runs_once_at_start_and_jobs_run(
    tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path], clerk: Clerk
) -> None:
    archive, expired, roots = _roots(tmp_path)
    rule = (
        "  - name: {name}\n    in: archive\n    schedule: '0 3 * * *'\n"
        "    match: [{{name: '{name}*'}}]\n"
        f"    actions: [{{{{move: '{expired}/{{{{name}}}}'}}}}]\n"
    )
    write_rules(roots + "rules:\n" + rule.format(name="missed") + rule.format(name="fresh"))
    write_config(clerk_home, "reconcile_interval: 1h\n")
    db = open_store(clerk_home / "clerk.db")
    now = time.time()
    db.table("schedules").insert_all(
        [
            {"name": "missed", "last_run": now - 2 * 86400, "first_seen": now - 9 * 86400},
            {"name": "fresh", "last_run": now - 1, "first_seen": now - 9 * 86400},
        ],
        pk="name",
    )
    db.close()
    (archive / "missed-1.txt").write_text("x")
    (archive / "fresh-1.txt").write_text("y")
    with running_daemon(tmp_path) as (daemon, _):
        wait_until(lambda: files_under(expired) == ["missed-1.txt"], what="the missed run")

        def jobs() -> dict[str, dict[str, object]]:
            return {j["name"]: j for j in request(_sock(clerk_home), "status")["jobs"]}

        wait_until(lambda: jobs()["missed"]["last_status"] == "ok", what="the run recorded")
        status = jobs()
        assert status["missed"]["last_run"] >= now - 5  # type: ignore[operator]
        assert status["fresh"]["last_run"] < now and status["fresh"]["last_status"] is None  # type: ignore[operator]
        assert (archive / "fresh-1.txt").exists()  # not missed: waits for 03:00

        ran = clerk("jobs", "run", "fresh")
        assert ran.returncode == 0, ran.stderr
        assert "1 move" in ran.stdout
        assert files_under(expired) == ["fresh-1.txt", "missed-1.txt"]
        unknown = clerk("jobs", "run", "nosuch")
        assert (
            unknown.returncode == 1
            and "no lifecycle job or scheduled workflow named 'nosuch'" in unknown.stderr
        )
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    assert "job missed missed a run while the daemon was down" in daemon.log()
