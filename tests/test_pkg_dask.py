"""The drop-in package plugins/clerk-dask, pip-installed and run against a real Dask
cluster (a `dask scheduler` and a `dask worker` this module starts and stops)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import PLUGIN_PACKAGES, plugin_env, run_clerk

PACKAGE = PLUGIN_PACKAGES / "clerk-dask"

# What the cluster's worker imports for `call:` tasks (its PYTHONPATH holds only this).
TASKS_MODULE = """
import os

def measure(path, name, label=""):
    return {"size": os.path.getsize(path), "name": name, "label": label, "pid": os.getpid()}
"""
# A command on the worker: echoes its arguments and hands them on as outputs.
ECHO = (
    "import json, os, sys; print('encoding', *sys.argv[1:]);"
    " json.dump(dict(size=sys.argv[1], name=sys.argv[2]), open(os.environ['CLERK_OUTPUTS'], 'w'))"
)
WORKFLOW = """
roots:
  inbox: {{path: "{inbox}"}}
rules:
  - name: thumbs-for-new
    in: inbox
    match: [{{extension: jpg}}]
    actions: [{{run: thumbs}}]
workflows:
  thumbs:
    tasks:
      - name: measure
        executor: dask
        call: "clerk_dask_e2e_tasks:measure"
        kwargs: {{label: "{{stem}}"}}
      - name: encode
        executor: dask
        depends_on: [measure]
        command: ["{python}", -c, "{echo}", "{{tasks.measure.outputs.size}}", "{{name}}"]
        timeout: 60s
      - name: report
        executor: shell
        depends_on: [encode]
        command: [echo, "{{tasks.encode.outputs.name}} has {{tasks.encode.outputs.size}} bytes"]
"""


@pytest.fixture(scope="session")
def dask_site(install_plugin: Callable[[str], Path]) -> Path:
    return install_plugin("clerk-dask")


def _installed_testing_module(site: Path) -> ModuleType:
    """clerk_dask.testing from the installed copy (without putting the site on sys.path)."""
    spec = importlib.util.spec_from_file_location(
        "clerk_dask_installed_testing", site / "clerk_dask" / "testing.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def dask_address(dask_site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real scheduler + one worker for the session; killed (process groups) at the end."""
    tasks_dir = tmp_path_factory.mktemp("dask-tasks")
    (tasks_dir / "clerk_dask_e2e_tasks.py").write_text(TASKS_MODULE)
    testing = _installed_testing_module(dask_site)
    with testing.dask_cluster(tmp_path_factory.mktemp("dask"), worker_path=[tasks_dir]) as cluster:
        yield cluster.address
        processes = [cluster.scheduler.pid, cluster.worker.pid]
    for pid in processes:  # no orphans: both process groups are gone
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


def _write_workflow(write_rules: Callable[[str], Path], inbox: Path) -> Path:
    inbox.mkdir(exist_ok=True)
    text = WORKFLOW.format(inbox=inbox, python=sys.executable, echo=ECHO.replace('"', '\\"'))
    return write_rules(text)


def _tasks(details: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {task["task"]: task for task in details["tasks"]}


def test_plugins_list_shows_the_dask_executor(dask_site: Path) -> None:
    result = run_clerk("plugins", "list", "--json", env=plugin_env(dask_site), check=True)
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["dask"]["source"] == "entrypoint"
    assert plugins["dask"]["version"] == "0.1.0"
    assert "register_executors" in plugins["dask"]["hooks"]


@pytest.mark.slow
def test_the_package_own_tests_pass_against_the_installed_copy(
    dask_site: Path, tmp_path: Path
) -> None:
    env = plugin_env(dask_site, PYTHONDONTWRITEBYTECODE="1")
    where = subprocess.run(
        [sys.executable, "-c", "import clerk_dask; print(clerk_dask.__file__)"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(dask_site))  # the installed copy, not the source tree
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PACKAGE / "tests")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_a_workflow_runs_on_dask_with_outputs_passed_on(
    dask_site: Path, dask_address: str, write_rules: Callable[[str], Path], tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    _write_workflow(write_rules, inbox)
    photo = inbox / "beach day.jpg"
    photo.write_bytes(b"x" * 1234)
    env = plugin_env(dask_site, CLERK_DASK_SCHEDULER=dask_address)
    result = run_clerk("run", "thumbs", "--file", str(photo), "--wait", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    details = json.loads(result.stdout)
    assert details["run"]["status"] == "COMPLETED"
    tasks = _tasks(details)
    measure = tasks["measure"]["outputs"]
    assert (measure["size"], measure["name"], measure["label"]) == (
        1234,
        "beach day.jpg",
        "beach day",
    )
    assert tasks["encode"]["outputs"] == {"size": "1234", "name": "beach day.jpg"}
    assert tasks["encode"]["cpu_user"] is not None  # the worker's wait4, sent back
    logs = run_clerk("runs", "logs", str(details["run"]["id"]), "encode", env=env, check=True)
    assert "encoding 1234 beach day.jpg" in logs.stdout
    report = run_clerk("runs", "logs", str(details["run"]["id"]), "report", env=env, check=True)
    assert "beach day.jpg has 1234 bytes" in report.stdout


def test_a_rule_run_action_sends_the_workflow_to_dask(
    dask_site: Path, dask_address: str, write_rules: Callable[[str], Path], tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    _write_workflow(write_rules, inbox)
    (inbox / "a.jpg").write_bytes(b"y" * 10)
    env = plugin_env(dask_site, CLERK_DASK_SCHEDULER=dask_address)
    run_clerk("scan", env=env, check=True)  # queues the run; a detached worker executes it

    def ended() -> bool:
        listed[:] = json.loads(run_clerk("runs", "list", "--json", env=env, check=True).stdout)
        return bool(listed) and all(r["status"] in ("COMPLETED", "FAILED", "CANCELLED")
                                    for r in listed)  # fmt: skip

    listed: list[dict[str, Any]] = []
    _wait_until(ended, timeout=90)
    assert [(r["workflow"], r["status"]) for r in listed] == [("thumbs", "COMPLETED")]
    shown = run_clerk("runs", "show", str(listed[0]["id"]), "--json", env=env, check=True)
    tasks = _tasks(json.loads(shown.stdout))
    assert tasks["encode"]["outputs"] == {"size": "10", "name": "a.jpg"}


SLOW = """
roots:
  inbox: {{path: "{inbox}"}}
rules: []
workflows:
  slow:
    tasks:
      - name: wait
        executor: dask
        command: [sh, -c, 'sleep 60 & echo $! > "$1"; wait', sh, "{{pidfile}}"]
"""


def test_cancel_kills_the_command_on_its_dask_worker(
    dask_site: Path, dask_address: str, write_rules: Callable[[str], Path], tmp_path: Path
) -> None:
    write_rules(SLOW.format(inbox=tmp_path))
    pid_file = tmp_path / "sleep.pid"
    env = plugin_env(dask_site, CLERK_DASK_SCHEDULER=dask_address)
    queued = run_clerk("run", "slow", "--param", f"pidfile={pid_file}", "--json", env=env,
                       check=True)  # fmt: skip
    run_id = str(json.loads(queued.stdout)["run"])
    _wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    child = int(pid_file.read_text())
    run_clerk("runs", "cancel", run_id, env=env, check=True)
    _wait_until(lambda: _run_status(run_id, env) == "CANCELLED")
    _wait_until(lambda: not _alive(child))  # the worker killed the process group


def _run_status(run_id: str, env: dict[str, str]) -> str:
    shown = run_clerk("runs", "show", run_id, "--json", env=env, check=True)
    status: str = json.loads(shown.stdout)["run"]["status"]
    return status


def _wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        threading.Event().wait(0.1)  # a poll interval, bounded by the deadline


def _alive(pid: int) -> bool:
    """Running (a zombie is dead: nobody may reap orphans in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def test_an_unreachable_scheduler_fails_the_run_after_retries(
    dask_site: Path, write_rules: Callable[[str], Path], tmp_path: Path
) -> None:
    write_rules(f"""
roots:
  inbox: {{path: "{tmp_path}"}}
rules: []
workflows:
  offline:
    tasks:
      - name: call
        executor: dask
        call: "clerk_dask_e2e_tasks:measure"
        scheduler: "tcp://127.0.0.1:9"
        connect_timeout: 1s
        retry: {{max: 1, backoff: 0.1s}}
""")
    result = run_clerk("run", "offline", "--wait", "--json", env=plugin_env(dask_site))
    assert result.returncode == 1, result.stdout + result.stderr
    task = _tasks(json.loads(result.stdout))["call"]
    assert (task["status"], task["attempt"], task["error_code"]) == ("FAILED", 2, "unreachable")
    assert "dask scheduler tcp://127.0.0.1:9 unreachable" in task["error"]


def test_check_accepts_dask_tasks_and_points_at_mistakes(
    dask_site: Path, write_rules: Callable[[str], Path], tmp_path: Path
) -> None:
    path = _write_workflow(write_rules, tmp_path / "inbox")
    result = run_clerk("check", env=plugin_env(dask_site))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dask" not in result.stdout + result.stderr  # nothing to say about its tasks

    path.write_text(path.read_text().replace("executor: dask", "executor: dsak", 1))
    misspelt = run_clerk("check", env=plugin_env(dask_site))
    assert misspelt.returncode == 1
    output = misspelt.stdout + misspelt.stderr
    assert f"{path}:{_line_of(path, 'executor: dsak')}:" in output
    assert "did you mean 'dask'?" in output

    # the executor's own keys: `scheduler:` is known; a wrong value is an error at file:line
    path.write_text(
        path.read_text()
        .replace("executor: dsak", "executor: dask", 1)
        .replace('        call: "clerk_dask_e2e_tasks:measure"\n',
                 '        call: "clerk_dask_e2e_tasks:measure"\n        scheduler: tcp://127.0.0.1:1\n'
                 '        env: {A: b}\n', 1)
    )  # fmt: skip
    bad = run_clerk("check", env=plugin_env(dask_site))
    output = bad.stdout + bad.stderr
    assert bad.returncode == 1, output
    assert "unknown task key 'scheduler'" not in output
    first = _line_of(path, "executor: dask")
    assert f"{path}:{first}:" in output and "dask task:" in output, output


def _line_of(path: Path, text: str) -> int:
    lines = path.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)
