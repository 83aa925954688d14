"""The built-in executors, registered through `register_executors` like any plugin's."""

from __future__ import annotations

from collections.abc import Callable

from clerk.engine.api import Executor
from clerk.engine.executors.http import HttpExecutor
from clerk.engine.executors.python import PythonExecutor
from clerk.engine.executors.shell import ShellExecutor
from clerk.plugins.hookspecs import hookimpl

BUILTIN_EXECUTORS: dict[str, type[Executor]] = {
    "shell": ShellExecutor,
    "python": PythonExecutor,
    "http": HttpExecutor,
}


@hookimpl(trylast=True)
def register_executors(register: Callable[[str, type[Executor]], None]) -> None:
    for name, cls in BUILTIN_EXECUTORS.items():
        register(name, cls)
