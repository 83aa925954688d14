"""The `python` executor: call an importable function in a worker subprocess.

    - name: index
      executor: python
      call: "mypkg.index:add"          # module:function (dotted attributes allowed)
      kwargs: {collection: "{stem}"}   # templates, rendered for the run
      env: {PYTHONPATH: /opt/mypkg}
      cwd: "{dir}"
      isolation: process               # default; `thread`: in clerk's own process

The function runs in its own process (`python -m clerk.engine.executors.pyworker`),
so a crash, a leak or a hang costs only that process: timeouts, cancel, capped logs and
resource usage work as for shell tasks. It receives, by name, every run field its
signature asks for (all of them if it takes `**kwargs`), `tasks` (the outputs of the
completed tasks of the run, by task name) if it has a parameter of that name, and the
rendered `kwargs:` on top. Its return value becomes the task's outputs: a dict as is,
anything else JSON-able as `{"result": value}`. An exception fails the attempt with
error code `exception` (retried like any failure).

`isolation: thread` calls the function in the runner's own process, on the thread the
attempt runs on: no process start (about 50 ms of Python start-up and imports per
attempt), so thousands of small calls a second. The price: nothing isolates it. A
crash or a leak is clerk's; `timeout`, `resources.memory` and cancel cannot stop it
once it runs (they apply to processes); it shares clerk's environment, working
directory and modules (so `env:` and `cwd:` are refused), and only an exception's
traceback reaches its stderr log (what it prints goes to clerk's own output).
Resource usage is the thread's CPU time (RUSAGE_THREAD); no RSS of its own.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import resource
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from clerk.engine.api import CANCELLED, CONFIG, EXCEPTION, Executor, TaskContext, TaskResult
from clerk.engine.executors.pyworker import resolve
from clerk.engine.fields import dump_fields
from clerk.engine.process import CappedLog, environ, run_process
from clerk.errors import ClerkError, SpecError
from clerk.private import private_dir, write_private

WORKER = "clerk.engine.executors.pyworker"
_CALL = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
ISOLATIONS = ("process", "thread")


class PythonExecutor(Executor):
    keys = ("call", "kwargs", "env", "cwd", "isolation")

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        call = config.get("call")
        if not isinstance(call, str) or not _CALL.match(call):
            raise SpecError(f"a python task needs call: 'package.module:function', got {call!r}",
                            key="call")  # fmt: skip
        kwargs = config.get("kwargs") or {}
        env = config.get("env") or {}
        for key, value in (("kwargs", kwargs), ("env", env)):
            if not isinstance(value, dict):
                raise SpecError(f"{key}: wants a mapping", key=key)
        self.call = call
        self.kwargs = kwargs
        self.env = {str(k): str(v) for k, v in env.items()}
        self.cwd = config.get("cwd")
        self.isolation = config.get("isolation", "process")
        if self.isolation not in ISOLATIONS:
            raise SpecError(
                f"isolation: is process (the default) or thread, got {self.isolation!r}",
                key="isolation",
            )
        if self.isolation == "thread" and (self.env or self.cwd):
            raise SpecError(
                "isolation: thread runs in clerk's own process, which has one environment"
                " and directory: env: and cwd: need isolation: process",
                key="isolation",
            )

    def execute(self, context: TaskContext) -> TaskResult:
        if self.isolation == "thread":
            return self._call_here(context)
        try:
            kwargs = {k: context.render_value(v) for k, v in self.kwargs.items()}
            env = environ() | {k: context.render(v) for k, v in self.env.items()}
            cwd = os.path.expanduser(context.render(self.cwd)) if self.cwd else None
        except ClerkError as exc:
            return TaskResult(False, error_code=CONFIG, message=str(exc), recoverable=False)
        job = context.stdout_log.with_suffix(".call.json")
        result_file = context.stdout_log.with_suffix(".result.json")
        private_dir(job.parent)
        write_private(job, json.dumps({
            "call": self.call,
            "fields": json.loads(dump_fields(context.fields)),
            "tasks": {name: dict(outputs) for name, outputs in context.upstream.items()},
            "kwargs": json.loads(dump_fields(kwargs)),
            "result": str(result_file),
        }).encode())  # fmt: skip
        try:
            result = run_process([sys.executable, "-m", WORKER, str(job)], env=env, cwd=cwd,
                                 context=context)  # fmt: skip
        finally:
            job.unlink(missing_ok=True)  # it holds the rendered kwargs, secrets included
        return _read_result(result, result_file)

    def _call_here(self, context: TaskContext) -> TaskResult:
        """`isolation: thread`: call the function on this thread (see the module doc)."""
        if context.cancel.is_set():
            return TaskResult(False, error_code=CANCELLED, message="cancelled", recoverable=False)
        before = resource.getrusage(resource.RUSAGE_THREAD)
        started = time.monotonic()
        try:
            function, wants = self._resolve()
            kwargs = {k: v for k, v in context.fields.items() if wants(k)}
            if wants("tasks"):  # built only when asked for: it grows with the run
                kwargs["tasks"] = {t: dict(o) for t, o in context.upstream.items()}
            kwargs.update({k: context.render_value(v) for k, v in self.kwargs.items()})
            value = function(**kwargs)
            outputs = json.loads(json.dumps(_outputs(value), default=str))
        except ClerkError as exc:
            return TaskResult(False, error_code=CONFIG, message=str(exc), recoverable=False)
        except Exception as exc:  # the function's failure is the attempt's, not clerk's
            _log_traceback(context)
            result = TaskResult(False, 1, EXCEPTION, f"{type(exc).__name__}: {exc}", True)
        else:
            result = TaskResult(True, 0, outputs=outputs)
        after = resource.getrusage(resource.RUSAGE_THREAD)
        result.wall = time.monotonic() - started
        result.cpu_user = after.ru_utime - before.ru_utime
        result.cpu_sys = after.ru_stime - before.ru_stime
        return result

    def _resolve(self) -> tuple[Callable[..., Any], Callable[[str], bool]]:
        found = _RESOLVED.get(self.call)
        if found is None:
            found = _RESOLVED[self.call] = _resolve(self.call)
        return found


# call -> (function, which arguments it takes), for `isolation: thread`: looked up once
# per process, not once per attempt (the module is imported once anyway)
_RESOLVED: dict[str, tuple[Callable[..., Any], Callable[[str], bool]]] = {}


def _resolve(call: str) -> tuple[Callable[..., Any], Callable[[str], bool]]:
    """The function and a test for the arguments it takes (as `pyworker.arguments`)."""
    function = resolve(call)
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return function, str.isidentifier
    return function, frozenset(parameters).__contains__


def _outputs(value: Any) -> dict[str, Any]:
    """A return value as outputs, as the worker process makes them."""
    if isinstance(value, dict):
        return value
    return {} if value is None else {"result": value}


def _log_traceback(context: TaskContext) -> None:
    log = CappedLog(context.stderr_log, context.log_limit, context.secrets)
    try:
        log.write(traceback.format_exc().encode())
    finally:
        log.close()


def _read_result(result: TaskResult, path: Any) -> TaskResult:
    try:
        answer = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return result  # killed, timed out or crashed before answering: the exit says why
    finally:
        path.unlink(missing_ok=True)  # read once; its error text may hold a secret
    if "error" in answer:
        result.ok, result.error_code = False, EXCEPTION
        result.message = answer["error"]
        result.recoverable = True
    elif result.ok:
        result.outputs = answer.get("outputs", {})
    return result
