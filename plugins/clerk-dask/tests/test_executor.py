"""The dask executor against a real cluster (see conftest.py): calls, commands, logs,
outputs, timeouts, cancel, memory, and a scheduler that is not there."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clerk_dask import clients
from clerk_dask.executor import DaskExecutor
from clerk_dask.testing import DaskCluster, dask_cluster, stop

from clerk.engine.api import TaskContext, TaskResult
from clerk.engine.fields import render
from clerk.engine.model import TaskSpec
from clerk.errors import SpecError

HERE = Path(__file__).resolve().parent
ODD_NAME = "a;b $(touch pwned) -rf\nx.txt"


def make_context(
    tmp_path: Path,
    *,
    timeout: float | None = None,
    log_limit: int = 1 << 20,
    memory_limit: int | None = None,
    upstream: dict[str, dict[str, Any]] | None = None,
    cancel: threading.Event | None = None,
) -> TaskContext:
    fields = {"path": f"/data/{ODD_NAME}", "name": ODD_NAME, "dir": "/data", "stem": "a"}
    fields.update({f"tasks.{t}.outputs.{k}": v for t, o in (upstream or {}).items()
                   for k, v in o.items()})  # fmt: skip
    return TaskContext(
        run_id=1,
        task=TaskSpec(name="t", executor="dask", config={}),
        attempt=1,
        render=lambda template, escape=None: render(template, fields, None, escape),
        fields=fields,
        stdout_log=tmp_path / "t.1.out",
        stderr_log=tmp_path / "t.1.err",
        log_limit=log_limit,
        timeout=timeout,
        kill_grace=0.5,
        cancel=cancel or threading.Event(),
        outputs_file=tmp_path / "t.1.outputs.json",
        memory_limit=memory_limit,
        upstream=upstream or {},
    )


def execute(cluster: DaskCluster, config: dict[str, Any], context: TaskContext) -> TaskResult:
    return DaskExecutor({"scheduler": cluster.address, **config}).execute(context)


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        threading.Event().wait(0.05)


def alive(pid: int) -> bool:
    """Running (a zombie is dead: nobody may reap orphans in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


# --- calls -------------------------------------------------------------------------------
def test_call_returns_outputs_from_fields_kwargs_and_upstream(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    context = make_context(tmp_path, upstream={"scan": {"pages": 3}})
    config = {"call": "sample_tasks:measure",
              "kwargs": {"label": "{stem}-{tasks.scan.outputs.pages}"}}  # fmt: skip
    result = execute(cluster, config, context)
    assert result.ok, result.message
    assert result.outputs["name"] == ODD_NAME
    assert result.outputs["label"] == "a-3"
    assert result.outputs["upstream"] == {"scan": {"pages": 3}}
    assert result.outputs["pid"] != os.getpid()  # it ran on the worker, not here


def test_call_value_that_is_not_a_dict_becomes_result(cluster: DaskCluster, tmp_path: Path) -> None:
    result = execute(cluster, {"call": "sample_tasks:answer"}, make_context(tmp_path))
    assert result.ok and result.outputs == {"result": 42}


def test_call_exception_fails_with_message_and_traceback(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    context = make_context(tmp_path)
    result = execute(cluster, {"call": "sample_tasks:fail", "kwargs": {"reason": "{stem}"}},
                     context)  # fmt: skip
    assert not result.ok
    assert (result.error_code, result.recoverable) == ("exception", True)
    assert result.message == "ValueError: cannot handle a"
    assert "Traceback" in context.stderr_log.read_text()


def test_call_that_cannot_be_imported_fails_as_exception(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    result = execute(cluster, {"call": "no_such_module_here:f"}, make_context(tmp_path))
    assert result.error_code == "exception"
    assert "ModuleNotFoundError" in result.message


def test_call_timeout(cluster: DaskCluster, tmp_path: Path) -> None:
    started = time.monotonic()
    result = execute(cluster, {"call": "sample_tasks:linger", "kwargs": {"seconds": 5}},
                     make_context(tmp_path, timeout=0.5))  # fmt: skip
    assert (result.error_code, result.recoverable) == ("timeout", True)
    assert "timed out after 0.5s" in result.message
    assert time.monotonic() - started < 4  # not the 5s the call runs


def test_call_cancel(cluster: DaskCluster, tmp_path: Path) -> None:
    cancel = threading.Event()
    context = make_context(tmp_path, cancel=cancel)
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    result = execute(cluster, {"call": "sample_tasks:linger", "kwargs": {"seconds": 5}}, context)
    assert (result.error_code, result.recoverable) == ("cancelled", False)
    assert time.monotonic() - started < 4  # not the 5s the call runs


# --- commands ----------------------------------------------------------------------------
def test_command_exit_status_and_logs(cluster: DaskCluster, tmp_path: Path) -> None:
    context = make_context(tmp_path)
    script = "echo out; echo err >&2; exit 3"
    result = execute(cluster, {"command": ["sh", "-c", script]}, context)
    assert (result.ok, result.exit_code, result.error_code) == (False, 3, "exit")
    assert result.recoverable and "exited with status 3" in result.message
    assert context.stdout_log.read_text() == "out\n"
    assert context.stderr_log.read_text() == "err\n"
    assert result.cpu_user is not None and result.max_rss


def test_command_outputs_and_verbatim_arguments(cluster: DaskCluster, tmp_path: Path) -> None:
    context = make_context(tmp_path)
    script = (
        "import json, os, sys;"
        " json.dump(dict(argv=sys.argv[1:]), open(os.environ['CLERK_OUTPUTS'], 'w'))"
    )
    result = execute(cluster, {"command": [sys.executable, "-c", script, "{name}", "-{stem}"]},
                     context)  # fmt: skip
    assert result.ok, result.message
    assert result.outputs == {"argv": [ODD_NAME, "-a"]}  # each field one argv element
    assert context.outputs_file is not None and context.outputs_file.exists()
    assert not Path("pwned").exists()


def test_command_env_and_cwd(cluster: DaskCluster, tmp_path: Path) -> None:
    context = make_context(tmp_path)
    config = {"command": ["sh", "-c", 'printf "%s %s" "$GREETING" "$PWD"'],
              "env": {"GREETING": "hi {stem}"}, "cwd": str(tmp_path)}  # fmt: skip
    result = execute(cluster, config, context)
    assert result.ok, result.message
    assert context.stdout_log.read_text() == f"hi a {tmp_path}"


def test_command_logs_are_capped(cluster: DaskCluster, tmp_path: Path) -> None:
    context = make_context(tmp_path, log_limit=100)
    result = execute(cluster, {"command": ["sh", "-c", "head -c 5000 /dev/zero | tr '\\0' x"]},
                     context)  # fmt: skip
    assert result.ok
    text = context.stdout_log.read_text()
    assert text.startswith("x" * 100 + "\n")
    assert "log capped at 100 bytes; 4900 more bytes dropped" in text


def test_command_timeout_kills_the_process_group(cluster: DaskCluster, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = f'sleep 60 & echo $! > "{pid_file}"; wait'
    result = execute(cluster, {"command": ["sh", "-c", script]},
                     make_context(tmp_path, timeout=1))  # fmt: skip
    assert (result.error_code, result.recoverable) == ("timeout", True)
    assert "process group was killed" in result.message
    wait_for(lambda: not alive(int(pid_file.read_text())))


def test_command_cancel_kills_the_process_group(cluster: DaskCluster, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    cancel = threading.Event()
    context = make_context(tmp_path, cancel=cancel)
    results: list[TaskResult] = []
    script = f'sleep 60 & echo $! > "{pid_file}"; wait'
    worker = threading.Thread(
        target=lambda: results.append(execute(cluster, {"command": ["sh", "-c", script]}, context))
    )
    worker.start()
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    child = int(pid_file.read_text())
    cancel.set()
    worker.join(30)
    assert results and (results[0].error_code, results[0].recoverable) == ("cancelled", False)
    assert not alive(child)  # the worker killed the group before the attempt returned


def test_command_memory_limit(cluster: DaskCluster, tmp_path: Path) -> None:
    hog = "import time; data = bytearray(200 * 1024 * 1024); time.sleep(30)"
    result = execute(cluster, {"command": [sys.executable, "-c", hog]},
                     make_context(tmp_path, memory_limit=50 * 1024 * 1024, timeout=30))  # fmt: skip
    assert (result.error_code, result.recoverable) == ("memory", False)
    assert "memory limit 50.0MiB exceeded" in result.message


def test_command_that_cannot_start(cluster: DaskCluster, tmp_path: Path) -> None:
    result = execute(cluster, {"command": ["/no/such/program"]}, make_context(tmp_path))
    assert (result.error_code, result.recoverable) == ("spawn", False)
    assert "/no/such/program" in result.message


def test_dask_resources_are_asked_of_the_scheduler(cluster: DaskCluster, tmp_path: Path) -> None:
    # the test worker declares no GPU: the task can only wait in dask's queue, then time out
    config = {"call": "sample_tasks:answer", "dask_resources": {"GPU": 1}}
    result = execute(cluster, config, make_context(tmp_path, timeout=1))
    assert (result.error_code, result.recoverable) == ("timeout", True)
    assert execute(cluster, {"call": "sample_tasks:answer"}, make_context(tmp_path)).ok


# --- scheduler ---------------------------------------------------------------------------
def test_one_client_per_scheduler_is_reused(cluster: DaskCluster, tmp_path: Path) -> None:
    first = clients.client_for(cluster.address, 5)
    assert execute(cluster, {"call": "sample_tasks:answer"}, make_context(tmp_path)).ok
    assert clients.client_for(cluster.address, 5) is first


def test_unreachable_scheduler_is_a_recoverable_failure(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    executor = DaskExecutor({"call": "sample_tasks:answer", "scheduler": address,
                             "connect_timeout": "1s"})  # fmt: skip
    result = executor.execute(make_context(tmp_path))
    assert (result.error_code, result.recoverable) == ("unreachable", True)
    assert result.message.startswith(f"dask scheduler {address} unreachable: ")


def test_a_scheduler_lost_mid_task_is_a_recoverable_failure(tmp_path: Path) -> None:
    with dask_cluster(tmp_path / "cluster", worker_path=[HERE]) as doomed:
        context = make_context(tmp_path, timeout=60)
        executor = DaskExecutor({"call": "sample_tasks:linger", "kwargs": {"seconds": 30},
                                 "scheduler": doomed.address})  # fmt: skip
        threading.Timer(1.0, stop, args=(doomed.scheduler,)).start()
        started = time.monotonic()
        result = executor.execute(context)
    assert (result.error_code, result.recoverable) == ("dask", True)
    assert f"client of {doomed.address}" in result.message
    assert time.monotonic() - started < 20


def test_scheduler_from_environment(
    cluster: DaskCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLERK_DASK_SCHEDULER", cluster.address)
    assert DaskExecutor({"call": "sample_tasks:answer"}).execute(make_context(tmp_path)).ok
    monkeypatch.delenv("CLERK_DASK_SCHEDULER")
    result = DaskExecutor({"call": "sample_tasks:answer"}).execute(make_context(tmp_path))
    assert (result.error_code, result.recoverable) == ("config", False)
    assert "CLERK_DASK_SCHEDULER" in result.message


# --- definitions -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        ({}, "either call"),
        ({"call": "m:f", "command": ["true"]}, "either call"),
        ({"command": "rm -rf {path}"}, "never runs a shell string"),
        ({"call": "not a call"}, "package.module:function"),
        ({"call": "m:f", "env": {"A": "1"}}, "for command: tasks"),
        ({"command": ["true"], "kwargs": {"a": 1}}, "for call: tasks"),
        ({"call": "m:f", "schedular": "tcp://x:1"}, "did you mean 'scheduler'"),
        ({"call": "m:f", "scheduler": 8786}, "scheduler: wants text"),
        ({"call": "m:f", "connect_timeout": "soon"}, "soon"),
    ],
)
def test_bad_definitions_are_refused(config: dict[str, Any], complaint: str) -> None:
    with pytest.raises(SpecError, match=complaint):
        DaskExecutor(config)


def test_workers_need_no_clerk_dask(cluster: DaskCluster, tmp_path: Path) -> None:
    # find_spec returns None (no outputs) when the worker cannot import the package
    config = {"call": "importlib.util:find_spec", "kwargs": {"name": "clerk_dask"}}
    result = execute(cluster, config, make_context(tmp_path))
    assert result.ok and result.outputs == {}, result
