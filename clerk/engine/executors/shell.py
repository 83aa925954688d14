"""The `shell` executor: run a program with an argument list. Never a shell string.

    - name: ocr
      executor: shell
      command: [ocrmypdf, --skip-text, "{path}", "{dir}/{stem}.ocr.pdf"]
      env: {OMP_THREAD_LIMIT: "1", TOKEN: "${env:OCR_TOKEN}"}
      cwd: "{dir}"

A task emits outputs by writing a JSON object to the file named by `$CLERK_OUTPUTS`;
later tasks use them as `{tasks.<task>.outputs.<key>}`.

Each argument is rendered on its own, so a field's value is exactly one argv element
whatever it contains (spaces, `;`, `$(...)`, newlines, a leading `-`). The name is
historical (organize and maid call it that): no shell is involved unless the command
itself names one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clerk.engine.api import CONFIG, OUTPUTS, Command, ProcessExecutor, TaskContext, TaskResult
from clerk.engine.model import TaskConfig
from clerk.engine.process import environ
from clerk.errors import ClerkError, Problem, SpecError


class ShellExecutor(ProcessExecutor):
    keys = ("command", "env", "cwd")

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        command = config.get("command")
        if isinstance(command, str):
            raise SpecError(
                "command: wants a list of arguments, like [ocrmypdf, '{path}', '{dir}/out.pdf']"
                ": clerk never runs a shell string",
                key="command",
            )
        if not isinstance(command, list) or not command:
            raise SpecError("a shell task needs command: (a non-empty list of arguments)",
                            key="command")  # fmt: skip
        # a tuple, not `str | int | float`: a union is slower to check, per argument and task
        if not all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in command):
            index = next(i for i, a in enumerate(command) if not _text(a))
            raise SpecError(f"command arguments are text, got {command[index]!r}",
                            key="command", index=index)  # fmt: skip
        env = config.get("env") or {}
        if not isinstance(env, dict):
            raise SpecError("env: wants a mapping of names to values", key="env")
        cwd = config.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise SpecError("cwd: wants a directory", key="cwd")
        self.command_args = [str(a) for a in command]
        self.env = {str(k): str(v) for k, v in env.items()}
        self.cwd = cwd

    @classmethod
    def check(cls, config: TaskConfig) -> list[Problem]:
        """What building the task says; then a warning if its program is not there."""
        problems = super().check(config)
        if not problems:
            program = str(config["command"][0])
            if "{" not in program and not _executable(program):  # a template: per file
                where = config.where("command", 0)
                problems.append(Problem(where, f"executable {program!r} not found", "warning"))
        return problems

    def command(self, context: TaskContext) -> Command | TaskResult:
        try:
            argv = [context.render(arg) for arg in self.command_args]
            env = environ() | {k: context.render(v) for k, v in self.env.items()}
            cwd = os.path.expanduser(context.render(self.cwd)) if self.cwd else None
        except ClerkError as exc:
            return TaskResult(False, error_code=CONFIG, message=str(exc), recoverable=False)
        if context.outputs_file is not None:
            env["CLERK_OUTPUTS"] = str(context.outputs_file)
        return Command(argv, env, cwd)

    def finish(self, result: TaskResult, context: TaskContext) -> TaskResult:
        return read_outputs(result, context.outputs_file)


def _text(arg: Any) -> bool:
    return isinstance(arg, (str, int, float)) and not isinstance(arg, bool)


def _executable(program: str) -> bool:
    if "/" in program:
        path = os.path.expanduser(program)
        return os.path.isfile(path) and os.access(path, os.X_OK)
    return shutil.which(program) is not None


def read_outputs(result: TaskResult, path: Path | None) -> TaskResult:
    """Take a successful task's outputs from the JSON object it wrote to `path`."""
    if not result.ok or path is None or not path.exists():
        return result
    try:
        outputs = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError) as exc:
        outputs = exc
    if not isinstance(outputs, dict):
        result.ok, result.error_code, result.recoverable = False, OUTPUTS, False
        result.message = f"$CLERK_OUTPUTS must hold a JSON object, got: {outputs}"
        return result
    result.outputs = outputs
    return result
