"""The process a python task runs in: import the callable, call it, write the result.

`python -m clerk.engine.executors.pyworker JOB.json`; see executors/python.py. The
result file holds `{"outputs": {...}}` or `{"error": "Type: message"}` (the traceback
goes to stderr, which is the task's log).
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import traceback
from typing import Any

from clerk.engine.fields import load_fields


def main(job_file: str) -> int:
    with open(job_file, encoding="utf-8") as handle:
        job = json.load(handle)
    try:
        function = resolve(job["call"])
        kwargs = arguments(function, load_fields(json.dumps(job["fields"])), job["tasks"])
        kwargs.update(load_fields(json.dumps(job["kwargs"])))
        value = function(**kwargs)
        answer: dict[str, Any] = {"outputs": value if isinstance(value, dict) else
                                  ({} if value is None else {"result": value})}  # fmt: skip
        text = json.dumps(answer, default=str)
    except Exception as exc:
        traceback.print_exc()
        text = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
        code = 1
    else:
        code = 0
    with open(job["result"], "w", encoding="utf-8") as handle:
        handle.write(text)
    return code


def resolve(call: str) -> Any:
    module_name, _, attribute = call.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{call} is not callable")
    return target


def arguments(function: Any, fields: dict[str, Any], tasks: dict[str, Any]) -> dict[str, Any]:
    """The run fields (and `tasks`) the function's signature asks for."""
    parameters = inspect.signature(function).parameters
    available = {k: v for k, v in fields.items() if k.isidentifier()}
    available["tasks"] = tasks
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return available
    return {name: available[name] for name in parameters if name in available}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
