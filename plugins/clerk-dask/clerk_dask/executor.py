"""The `dask` executor: a task's callable or command runs on a Dask cluster's worker.

    - name: resize
      executor: dask
      call: "mypkg.images:resize"        # or command: [ffmpeg, -i, "{path}", out.mp4]
      kwargs: {width: 800}               # templates, like the python executor's
      scheduler: "tcp://10.0.0.5:8786"   # else $CLERK_DASK_SCHEDULER

clerk keeps the run: the task's attempt, retries, timeout, cancel, logs and outputs
are recorded in the store as for a local task; Dask only decides where it runs.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from clerk.engine.api import (
    CANCELLED,
    CONFIG,
    EXCEPTION,
    EXIT,
    MEMORY,
    SIGNAL,
    SPAWN,
    TIMEOUT,
    Executor,
    TaskContext,
    TaskResult,
)
from clerk.engine.executors.shell import read_outputs
from clerk.engine.process import CappedLog
from clerk.errors import ClerkError, SpecError
from clerk.rules.suggest import hint
from clerk.units import parse_duration
from clerk_dask import clients, remote

#: the scheduler could not be reached (recoverable: it may come back)
UNREACHABLE = "unreachable"
#: Dask lost or failed the task itself (worker died, scheduler restarted): recoverable
LOST = "dask"

SCHEDULER_ENV = "CLERK_DASK_SCHEDULER"
DEFAULT_CONNECT_TIMEOUT = 10.0
_CALL = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_POLL = 0.2  # how often a waiting attempt looks at its cancel flag and deadline
# A command enforces its own timeout on the worker; clerk gives it this long (after the
# timeout and the kill grace) to say so before giving up on the worker.
_REPORT_SLACK = 10.0


class DaskExecutor(Executor):
    """Runs `call:` (a function) or `command:` (an argv list) on a Dask worker."""

    keys: ClassVar[tuple[str, ...]] = (
        "call", "kwargs", "command", "env", "cwd", "scheduler", "connect_timeout",
        "dask_resources",
    )  # fmt: skip

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        for key in config:
            if key not in self.keys:
                raise SpecError(f"a dask task has no key {key!r}{hint(key, self.keys)}")
        call, command = config.get("call"), config.get("command")
        if (call is None) == (command is None):
            raise SpecError("a dask task needs either call: 'module:function' or command: [...]")
        self.call = _check_call(call) if call is not None else None
        self.command = _check_command(command) if command is not None else None
        self.kwargs = _mapping(config, "kwargs")
        self.env = {str(k): str(v) for k, v in _mapping(config, "env").items()}
        self.cwd = config.get("cwd")
        if self.call is not None and (self.env or self.cwd is not None):
            raise SpecError("env: and cwd: are for command: tasks; a call runs in the worker")
        if self.command is not None and self.kwargs:
            raise SpecError("kwargs: is for call: tasks; a command takes its arguments in the list")
        if self.cwd is not None and not isinstance(self.cwd, str):
            raise SpecError("cwd: wants a directory")
        self.scheduler = _optional_text(config, "scheduler")
        self.connect_timeout = parse_duration(config.get("connect_timeout",
                                                         DEFAULT_CONNECT_TIMEOUT))  # fmt: skip
        self.dask_resources = _mapping(config, "dask_resources")

    def execute(self, context: TaskContext) -> TaskResult:
        try:
            address = self._address(context)
            submission = self._submission(context)
        except ClerkError as exc:
            return TaskResult(False, error_code=CONFIG, message=str(exc), recoverable=False)
        started = time.monotonic()
        try:
            client = clients.client_for(address, self.connect_timeout)
        except Exception as exc:  # OSError, TimeoutError, a bad address (ValueError)
            return TaskResult(False, error_code=UNREACHABLE, recoverable=True,
                              message=f"dask scheduler {address} unreachable: {exc}")  # fmt: skip
        waiter = _Attempt(client, context, self.command is not None)
        answer = waiter.run(submission, self.dask_resources)
        if isinstance(answer, TaskResult):
            answer.wall = time.monotonic() - started
            return answer
        result = self._verdict(answer, context)
        result.wall = time.monotonic() - started
        return result

    def _address(self, context: TaskContext) -> str:
        if self.scheduler:
            address = context.render(self.scheduler)
        else:
            address = os.environ.get(SCHEDULER_ENV, "")
        if not address.strip():
            raise ClerkError(f"no dask scheduler: give the task scheduler: or set ${SCHEDULER_ENV}")
        return address.strip()

    def _submission(self, context: TaskContext) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        """The worker-side function and its arguments, every template rendered."""
        if self.call is not None:
            kwargs = {k: context.render_value(v) for k, v in self.kwargs.items()}
            upstream = {name: dict(outputs) for name, outputs in context.upstream.items()}
            return (
                clients.ByValue(remote.call_function),
                (self.call, dict(context.fields), upstream, kwargs),
                {},
            )
        assert self.command is not None
        options = {
            "env": {k: context.render(v) for k, v in self.env.items()},
            "cwd": os.path.expanduser(context.render(self.cwd)) if self.cwd else None,
            "timeout": context.timeout,
            "kill_grace": context.kill_grace,
            "log_limit": context.log_limit,
            "memory_limit": context.memory_limit,
        }
        return (
            clients.ByValue(remote.run_command),
            ([context.render(arg) for arg in self.command],),
            options,
        )

    def _verdict(self, answer: dict[str, Any], context: TaskContext) -> TaskResult:
        if self.call is not None:
            return _call_verdict(answer, context)
        return _command_verdict(answer, context)


class _Attempt:
    """Submits one attempt and waits for it, honouring cancel and the timeout."""

    def __init__(self, client: Any, context: TaskContext, is_command: bool):
        self.client = client
        self.context = context
        self.is_command = is_command
        task = f"{context.run_id}-{context.task.name}-{context.attempt}"
        self.key = f"clerk-{task}-{uuid.uuid4().hex}"  # unique: a retry is a new task
        self.cancel_event = f"{self.key}-cancel" if is_command else None

    def run(self, submission: tuple[Any, tuple[Any, ...], dict[str, Any]],
            resources: Mapping[str, Any]) -> dict[str, Any] | TaskResult:  # fmt: skip
        function, args, kwargs = submission
        if self.cancel_event:
            kwargs["cancel_event"] = self.cancel_event
        try:
            future = self.client.submit(function, *args, key=self.key, pure=False,
                                        resources=dict(resources) or None, **kwargs)  # fmt: skip
        except Exception as exc:  # the connection broke between connect and submit
            return TaskResult(False, error_code=UNREACHABLE, recoverable=True,
                              message=f"dask scheduler {self.client.scheduler.address}"
                                      f" unreachable: {exc}")  # fmt: skip
        try:
            return self._wait(future)
        finally:
            future.release()

    def _wait(self, future: Any) -> dict[str, Any] | TaskResult:
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        timeout = self.context.timeout
        deadline = time.monotonic() + timeout if timeout else None
        if deadline is not None and self.is_command:
            deadline += self.context.kill_grace + _REPORT_SLACK  # the worker kills it itself
        while not done.wait(_POLL):
            if self.context.cancel.is_set():
                return self._stop(future, done, CANCELLED, "cancelled", recoverable=False)
            if deadline is not None and time.monotonic() >= deadline:
                message = f"timed out after {timeout:g}s" + (
                    "; the command did not answer from its worker" if self.is_command else
                    "; the dask task was cancelled (a running call finishes on its worker)"
                )  # fmt: skip
                return self._stop(future, done, TIMEOUT, message, recoverable=True)
        return self._answer(future)

    def _stop(self, future: Any, done: threading.Event, code: str, message: str, *,
              recoverable: bool) -> TaskResult:  # fmt: skip
        """Cancel the attempt; a command's worker kills its process group first."""
        if self.cancel_event:
            from distributed import Event

            event = Event(self.cancel_event, client=self.client)
            try:
                event.set()
                # Wait for the worker to kill the group (grace, then SIGKILL), so a
                # cancelled run leaves no process behind; a lost worker cannot hold us long.
                done.wait(self.context.kill_grace + _REPORT_SLACK)
            finally:
                event.clear()
        future.cancel()
        return TaskResult(False, error_code=code, message=message, recoverable=recoverable)

    def _answer(self, future: Any) -> dict[str, Any] | TaskResult:
        if future.status == "finished":
            try:
                answer: dict[str, Any] = future.result()
                return answer
            except Exception as exc:  # the answer did not come back whole
                return _lost(f"{type(exc).__name__}: {exc}")
        if future.status == "error":
            error = future.exception()
            return _lost(f"{type(error).__name__}: {error}")
        connection = f"client of {self.client.scheduler.address}: {self.client.status}"
        return _lost(f"the task was {future.status} by dask, its worker or scheduler lost"
                     f" ({connection})")  # fmt: skip


def _lost(reason: str) -> TaskResult:
    return TaskResult(False, error_code=LOST, recoverable=True, message=f"dask: {reason}")


def _call_verdict(answer: dict[str, Any], context: TaskContext) -> TaskResult:
    host = answer.get("host", "?")
    if "error" in answer:
        _write_log(context.stderr_log, context.log_limit,
                   f"[on dask worker {host}]\n{answer.get('traceback', '')}".encode())  # fmt: skip
        return TaskResult(False, error_code=EXCEPTION, message=answer["error"], recoverable=True)
    _write_log(context.stderr_log, context.log_limit, b"")
    outputs = json.loads(answer["outputs"])
    if not isinstance(outputs, dict):  # a JSON-able return value is wrapped on the worker
        outputs = {"result": outputs}
    _write_log(context.stdout_log, context.log_limit,
               f"[on dask worker {host}] outputs: {answer['outputs']}\n".encode())  # fmt: skip
    return TaskResult(True, outputs=outputs)


def _command_verdict(answer: dict[str, Any], context: TaskContext) -> TaskResult:
    if "spawn_error" in answer:
        message = f"{answer['spawn_error']} (on dask worker {answer['host']})"
        return TaskResult(False, error_code=SPAWN, message=message, recoverable=False)
    _write_log(context.stdout_log, context.log_limit, answer["stdout"], answer["stdout_dropped"])
    _write_log(context.stderr_log, context.log_limit, answer["stderr"], answer["stderr_dropped"])
    result = _exit_verdict(answer, context)
    result.cpu_user, result.cpu_sys = answer["cpu_user"], answer["cpu_sys"]
    result.max_rss = answer["max_rss"]
    if result.ok and answer["outputs"] is not None and context.outputs_file is not None:
        # the worker's $CLERK_OUTPUTS, copied next to the logs and read like a shell task's
        context.outputs_file.parent.mkdir(parents=True, exist_ok=True)
        context.outputs_file.write_text(answer["outputs"], encoding="utf-8")
        return read_outputs(result, context.outputs_file)
    return result


def _exit_verdict(answer: dict[str, Any], context: TaskContext) -> TaskResult:
    """The same codes and messages as a local shell task's (clerk.engine.process)."""
    code, reason = answer["exit_code"], answer["reason"]
    where = f" (on dask worker {answer['host']})"
    if reason == "timeout":
        message = f"timed out after {context.timeout or 0:g}s; its process group was killed"
        return TaskResult(False, code, TIMEOUT, message + where, recoverable=True)
    if reason == "cancelled":
        return TaskResult(False, code, CANCELLED, "cancelled", recoverable=False)
    if reason == "memory":
        limit, peak = _mib(context.memory_limit or 0), _mib(answer["peak_rss"])
        message = f"memory limit {limit} exceeded (RSS {peak}); its process group was killed"
        return TaskResult(False, code, MEMORY, message + where, recoverable=False)
    if code == 0:
        return TaskResult(True, 0)
    if code < 0:
        return TaskResult(False, code, SIGNAL, f"killed by signal {-code}{where}", recoverable=True)
    return TaskResult(False, code, EXIT, f"exited with status {code}{where}", recoverable=True)


def _write_log(path: Any, limit: int, data: bytes, dropped: int = 0) -> None:
    log = CappedLog(path, limit)
    try:
        log.write(data)
        log.dropped += dropped  # what the worker already left out
    finally:
        log.close()


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.1f}MiB"


def _check_call(call: Any) -> str:
    if not isinstance(call, str) or not _CALL.match(call):
        raise SpecError(f"call: wants 'package.module:function', got {call!r}")
    return call


def _check_command(command: Any) -> list[str]:
    if isinstance(command, str):
        raise SpecError("command: wants a list of arguments; clerk never runs a shell string")
    if not isinstance(command, list) or not command:
        raise SpecError("command: wants a non-empty list of arguments")
    if not all(isinstance(a, str | int | float) and not isinstance(a, bool) for a in command):
        raise SpecError(f"command arguments are text, got {command!r}")
    return [str(a) for a in command]


def _mapping(config: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key) or {}
    if not isinstance(value, dict):
        raise SpecError(f"{key}: wants a mapping, got {value!r}")
    return dict(value)


def _optional_text(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is not None and not isinstance(value, str):
        raise SpecError(f"{key}: wants text like 'tcp://10.0.0.5:8786', got {value!r}")
    return value
