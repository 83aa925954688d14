"""What an executor implements, and what it is given and gives back.

An executor class is registered by name through the `register_executors` hook. It is
built once per task of a run with the task's executor keys (`command`, `env`, `call`,
`url`, ...; raise `SpecError` when they are wrong, naming the key with `key=`) and its
`execute` is called in a worker thread, once per attempt. `clerk check` asks the class
registered under the task's executor name (`Executor.check`) what is wrong with a
task: by default, what building it says. It must return when the attempt is over, stop early
when `context.cancel` is set, and enforce `context.timeout` itself (the shell executor
kills the whole process group).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from clerk.engine.model import TaskConfig, TaskSpec
from clerk.errors import Problem, SpecError

# Error codes the engine itself uses; executors may add their own.
TIMEOUT = "timeout"
CANCELLED = "cancelled"
EXIT = "exit"  # non-zero exit status
SIGNAL = "signal"  # killed by a signal nobody in clerk sent
SPAWN = "spawn"  # the program could not be started
CONFIG = "config"  # the task's definition is unusable (bad executor keys, template)
EXECUTOR = "executor"  # the executor itself raised
UPSTREAM = "upstream_failed"  # a dependency failed, so this task never ran
OUTPUTS = "outputs"  # the task's outputs are not a JSON object
BUSINESS = "business"  # an exit status the task declares a business failure (not retried)
INTERRUPTED = "interrupted"  # the runner died while the attempt ran (crash recovery)
MEMORY = "memory"  # the task's processes used more memory than resources.memory
PROCESSES = "processes"  # the task's process group had more processes than resources.processes
EXCEPTION = "exception"  # a python task's callable raised
HTTP = "http"  # an http task got an error status or no answer


@dataclass
class TaskContext:
    """One attempt of one task: what to run it with and where its logs go."""

    run_id: int
    task: TaskSpec
    attempt: int
    #: `render(template, escape=None)`: a template -> text, with the run's fields (and
    #: `tasks.<task>.outputs.<key>`); `escape` transforms each field's value
    render: Callable[..., str]
    fields: Mapping[str, Any]
    stdout_log: Path
    stderr_log: Path
    log_limit: int
    timeout: float | None
    kill_grace: float
    cancel: threading.Event
    on_process: Callable[[int, int], None] = lambda pid, pgid: None  # record pid, pgid
    #: where a process may write its JSON outputs (`$CLERK_OUTPUTS` for shell tasks)
    outputs_file: Path | None = None
    #: `resources.memory` in bytes: the process group is killed when its RSS exceeds it
    memory_limit: int | None = None
    #: `resources.processes`: the process group is killed when it has more processes
    process_limit: int | None = None
    #: outputs of the tasks of this run that have completed, by task name
    upstream: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: the secret values `render` resolved for this attempt (filled as it renders):
    #: hide them (`clerk.config.redact`) in whatever reaches a log or the store
    secrets: list[str] = field(default_factory=list)

    def render_value(self, value: Any) -> Any:
        """`render` every string in a YAML value, walking lists and mappings (a task's
        `kwargs:`, a request body); other values are returned as they are."""
        if isinstance(value, str):
            return self.render(value)
        if isinstance(value, list):
            return [self.render_value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.render_value(v) for k, v in value.items()}
        return value


@dataclass
class TaskResult:
    """How an attempt ended. `recoverable=False` means retrying cannot help."""

    ok: bool
    exit_code: int | None = None
    error_code: str | None = None
    message: str = ""
    recoverable: bool = True
    outputs: dict[str, Any] = field(default_factory=dict)
    wall: float = 0.0
    cpu_user: float | None = None
    cpu_sys: float | None = None
    max_rss: int | None = None  # bytes


class Executor(ABC):
    """Base of every executor; see the module docstring."""

    #: the task keys this executor reads beside the engine's own (`clerk check` accepts
    #: them without a warning; `check` validates their values)
    keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Mapping[str, Any]):
        self.config = dict(config)

    @classmethod
    def check(cls, config: TaskConfig) -> list[Problem]:
        """What is wrong with a task's executor keys, each problem where it was written
        (`config.where(key)`), for `clerk check`. By default the task is built as a run
        would build it: its `SpecError` is the problem (at the key it names). Override
        to add more (the shell executor warns about a program it cannot find)."""
        return problems_building(cls, config)

    @abstractmethod
    def execute(self, context: TaskContext) -> TaskResult:
        """Run one attempt and report how it ended (never raise for a task's failure)."""


def problems_building(cls: type, config: TaskConfig) -> list[Problem]:
    """Build executor `cls` (any registered class) for the task: what it refuses."""
    try:
        cls(config)
    except SpecError as exc:
        return [config.problem(exc)]
    except Exception as exc:  # a plugin's bug must not crash `clerk check`
        return [Problem(config.where(), f"executor {config.executor!r} failed on this task:"
                                        f" {type(exc).__name__}: {exc}")]  # fmt: skip
    return []


@dataclass
class Command:
    """The one process an attempt of a `ProcessExecutor` runs."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None


class ProcessExecutor(Executor):
    """An executor whose attempt is exactly one child process.

    The runner starts and watches those processes from its own loop (no thread waits
    per process: see `clerk.engine.process.Attempt`): it calls `command` to get the
    process, runs it with the engine's limits and logs, and passes how it ended to
    `finish`. `execute` does the same on the calling thread, for any other caller.
    """

    @abstractmethod
    def command(self, context: TaskContext) -> Command | TaskResult:
        """The process to run, or the attempt's failure (a template that cannot render)."""

    def finish(self, result: TaskResult, context: TaskContext) -> TaskResult:
        """The attempt's result from the process's (read outputs, say)."""
        return result

    def execute(self, context: TaskContext) -> TaskResult:
        from clerk.engine.process import run_process

        command = self.command(context)
        if isinstance(command, TaskResult):
            return command
        result = run_process(command.argv, env=command.env, cwd=command.cwd, context=context)
        return self.finish(result, context)
