"""The fault battery, resource exhaustion (issue 13): shell tasks that flood their logs,
fork a process bomb, or hold 10,000 files open, run by a real daemon (queued with
`clerk run`) and in the foreground (`clerk run --wait`).

It proves: each captured log stays at its cap (10 MiB, the rest dropped and the cap
noted) while the task writes gigabytes; a bomb under `resources: {processes: N}` is
killed with its whole process group as soon as it passes N, and the run fails with a
message that says so; a task may hold 10,000 descriptors; and through all of it the
daemon answers `clerk status` at once.

The bomb is a bounded one (127 processes at most, each asleep), so a clerk that failed
to stop it would not take the machine down: the test kills whatever is left of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from test_daemon_support import running_daemon, wait_until, write_config

LOG_CAP = 10 * 1024 * 1024  # the engine's cap on each captured stream
DEADLINE = 60.0  # for a run to end on a busy machine; they take a few seconds

FLOOD = r"""
import os, sys, time
chunk = b"x" * 65536
until = time.monotonic() + float(sys.argv[1])
written = 0
while time.monotonic() < until:
    os.write(1, chunk)
    os.write(2, chunk)
    written += len(chunk)
print("\nflooded %d bytes" % written, file=sys.stderr)
"""

# Each process forks two children down to depth 6 (127 processes), then sleeps: a bomb
# that grows as fast as fork allows but stops by itself. argv[2] marks its processes.
BOMB = r"""
import os, sys, time
depth = int(sys.argv[1])
while depth > 0:
    depth -= 1
    if os.fork() != 0 and os.fork() != 0:
        break
time.sleep(30)
"""

FILES = r"""
import os, resource, sys, time
want = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < want + 64:  # a program that needs many descriptors raises its own soft limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want + 64), hard))
fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(want)]
print("holding %d descriptors" % len(fds), flush=True)
time.sleep(1.5)
"""


def task(name: str, script: str, *args: str, extra: str = "") -> str:
    """A one-task workflow running `script` (no braces in it: they are template fields)."""
    command = json.dumps([sys.executable, "-c", script, *args])
    spec = f"{{name: {name}, executor: shell, command: {command}{extra}}}"
    return f"  {name}:\n    tasks:\n      - {spec}\n"


@pytest.fixture
def token() -> Iterator[str]:
    """A mark in the argv of the bomb's processes; whatever is left of them is killed."""
    mark = f"clerk-bomb-{uuid.uuid4().hex}"
    yield mark
    for proc in bomb_processes(mark):
        with contextlib.suppress(psutil.Error):
            proc.kill()


def bomb_processes(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if mark in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


@pytest.fixture
def workflows(clerk_home: Path, write_rules: Callable[[str], Path], token: str) -> Path:
    write_rules(
        "workflows:\n"
        + task("flood", FLOOD, "3")
        + task("bomb", BOMB, "6", token, extra=", resources: {processes: 10}")
        + task("files", FILES, "10000")
    )
    write_config(clerk_home, "reconcile_interval: 1h\n")
    return clerk_home


def clerk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clerk", *args], capture_output=True,
                          text=True, timeout=DEADLINE)  # fmt: skip


def run_row(clerk_home: Path, run_id: int) -> dict[str, object]:
    with contextlib.closing(sqlite3.connect(clerk_home / "clerk.db")) as db:
        db.row_factory = sqlite3.Row
        run = dict(db.execute("SELECT * FROM runs WHERE id = ?", [run_id]).fetchone())
        tasks = [dict(r) for r in db.execute("SELECT * FROM task_runs WHERE run_id = ?", [run_id])]
    return {**run, "tasks": tasks}


def queue(workflow: str) -> int:
    queued = clerk("run", workflow, "--json")
    assert queued.returncode == 0, queued.stdout + queued.stderr
    return int(json.loads(queued.stdout)["run"])


def serves_status_while(clerk_home: Path, run_id: int) -> int:
    """`clerk status` answers, at once and well, while the run is RUNNING: how often."""
    answered = 0
    while run_row(clerk_home, run_id)["status"] in ("PENDING", "RUNNING"):
        begun = time.monotonic()
        status = clerk("status", "--json")
        took = time.monotonic() - begun
        assert status.returncode == 0, status.stdout + status.stderr
        assert json.loads(status.stdout)["state"], status.stdout
        assert took < 15, f"clerk status took {took:.1f}s"
        answered += 1
    return answered


def ended(clerk_home: Path, run_id: int) -> dict[str, object]:
    wait_until(lambda: run_row(clerk_home, run_id)["status"] not in ("PENDING", "RUNNING"),
               timeout=DEADLINE, what=f"run {run_id} ended")  # fmt: skip
    return run_row(clerk_home, run_id)


def logs(clerk_home: Path, run_id: int) -> dict[str, Path]:
    return {
        p.suffix: p for p in clerk_home.rglob(f"runs/{run_id}/*") if p.suffix in (".out", ".err")
    }


def test_a_task_flooding_its_logs_is_capped_while_the_daemon_serves(
    workflows: Path, tmp_path: Path
) -> None:
    with running_daemon(tmp_path) as (daemon, _):
        run_id = queue("flood")
        wait_until(lambda: run_row(workflows, run_id)["status"] == "RUNNING", what="flood running")
        assert serves_status_while(workflows, run_id) >= 1
        run = ended(workflows, run_id)
        assert run["status"] == "COMPLETED", run
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    found = logs(workflows, run_id)
    assert set(found) == {".out", ".err"}, found
    for path in found.values():
        data = path.read_bytes()
        note = data[LOG_CAP:]
        assert data[:LOG_CAP] == b"x" * LOG_CAP, path
        assert note.startswith(b"\n[clerk: log capped at 10485760 bytes; "), note[:200]
        assert note.endswith(b" more bytes dropped]\n") and len(note) < 200, note
        dropped = int(note.split(b"; ")[1].split()[0])
        assert dropped > LOG_CAP, "the task did not flood: nothing was tested"


def test_a_process_bomb_is_killed_at_its_process_limit_by_the_daemon(
    workflows: Path, tmp_path: Path, token: str
) -> None:
    with running_daemon(tmp_path) as (daemon, _):
        begun = time.monotonic()
        run_id = queue("bomb")
        serves_status_while(workflows, run_id)
        run = ended(workflows, run_id)
        assert time.monotonic() - begun < 20, "the bomb ran its course: it was not stopped"
        check_bomb_stopped(run, token)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0


def test_a_process_bomb_is_killed_at_its_process_limit_by_run_wait(
    workflows: Path, token: str
) -> None:
    begun = time.monotonic()
    result = clerk("run", "bomb", "--wait")
    assert time.monotonic() - begun < 20, "the bomb ran its course: it was not stopped"
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "process limit 10 exceeded" in result.stdout + result.stderr
    with contextlib.closing(sqlite3.connect(workflows / "clerk.db")) as db:
        (run_id,) = db.execute("SELECT max(id) FROM runs").fetchone()
    check_bomb_stopped(run_row(workflows, run_id), token)


def check_bomb_stopped(run: dict[str, object], token: str) -> None:
    assert run["status"] == "FAILED", run
    (attempt,) = run["tasks"]  # type: ignore[misc]
    assert attempt["error_code"] == "processes", attempt
    assert attempt["error"].startswith("process limit 10 exceeded ("), attempt
    assert attempt["error"].endswith("); its process group was killed"), attempt
    wait_until(lambda: not bomb_processes(token), timeout=10, what="no process of the bomb left")


def test_a_task_holding_10000_files_open_while_the_daemon_serves(
    workflows: Path, tmp_path: Path
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 10_064:
        pytest.skip(f"the hard limit on open files is {hard}: a task cannot hold 10,000")
    with running_daemon(tmp_path) as (daemon, _):
        run_id = queue("files")
        serves_status_while(workflows, run_id)
        run = ended(workflows, run_id)
        assert run["status"] == "COMPLETED", run
        assert logs(workflows, run_id)[".out"].read_text() == "holding 10000 descriptors\n"
        assert len(os.listdir(f"/proc/{daemon.pid}/fd")) < 200  # none of them the daemon's
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
