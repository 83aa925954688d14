"""The `python` executor: call an importable function in a worker subprocess.

    - name: index
      executor: python
      call: "mypkg.index:add"          # module:function (dotted attributes allowed)
      kwargs: {collection: "{stem}"}   # templates, rendered for the run
      env: {PYTHONPATH: /opt/mypkg}
      cwd: "{dir}"

The function runs in its own process (`python -m clerk.engine.executors.pyworker`),
so a crash, a leak or a hang costs only that process: timeouts, cancel, capped logs and
resource usage work as for shell tasks. It receives, by name, every run field its
signature asks for (all of them if it takes `**kwargs`), `tasks` (the outputs of the
completed tasks of the run, by task name) if it has a parameter of that name, and the
rendered `kwargs:` on top. Its return value becomes the task's outputs: a dict as is,
anything else JSON-able as `{"result": value}`. An exception fails the attempt with
error code `exception` (retried like any failure).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from clerk.engine.api import CONFIG, EXCEPTION, Executor, TaskContext, TaskResult
from clerk.engine.fields import dump_fields
from clerk.engine.process import run_process
from clerk.errors import ClerkError, SpecError

WORKER = "clerk.engine.executors.pyworker"
_CALL = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class PythonExecutor(Executor):
    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        call = config.get("call")
        if not isinstance(call, str) or not _CALL.match(call):
            raise SpecError(f"a python task needs call: 'package.module:function', got {call!r}")
        kwargs = config.get("kwargs") or {}
        env = config.get("env") or {}
        if not isinstance(kwargs, dict) or not isinstance(env, dict):
            raise SpecError("kwargs: and env: want mappings")
        self.call = call
        self.kwargs = kwargs
        self.env = {str(k): str(v) for k, v in env.items()}
        self.cwd = config.get("cwd")

    def execute(self, context: TaskContext) -> TaskResult:
        try:
            kwargs = {k: _render_value(v, context) for k, v in self.kwargs.items()}
            env = {**os.environ, **{k: context.render(v) for k, v in self.env.items()}}
            cwd = os.path.expanduser(context.render(self.cwd)) if self.cwd else None
        except ClerkError as exc:
            return TaskResult(False, error_code=CONFIG, message=str(exc), recoverable=False)
        job = context.stdout_log.with_suffix(".call.json")
        result_file = context.stdout_log.with_suffix(".result.json")
        job.parent.mkdir(parents=True, exist_ok=True)
        job.write_text(json.dumps({
            "call": self.call,
            "fields": json.loads(dump_fields(context.fields)),
            "tasks": {name: dict(outputs) for name, outputs in context.upstream.items()},
            "kwargs": json.loads(dump_fields(kwargs)),
            "result": str(result_file),
        }), encoding="utf-8")  # fmt: skip
        result = run_process([sys.executable, "-m", WORKER, str(job)], env=env, cwd=cwd,
                             context=context)  # fmt: skip
        return _read_result(result, result_file)


def _render_value(value: Any, context: TaskContext) -> Any:
    if isinstance(value, str):
        return context.render(value)
    if isinstance(value, list):
        return [_render_value(v, context) for v in value]
    if isinstance(value, dict):
        return {k: _render_value(v, context) for k, v in value.items()}
    return value


def _read_result(result: TaskResult, path: Any) -> TaskResult:
    try:
        answer = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return result  # killed, timed out or crashed before answering: the exit says why
    if "error" in answer:
        result.ok, result.error_code = False, EXCEPTION
        result.message = answer["error"]
        result.recoverable = True
    elif result.ok:
        result.outputs = answer.get("outputs", {})
    return result
