"""The DAG runner: starts ready tasks within the limits, records every state change.

One thread (the caller's) owns the schedule and every write to the store. Attempts of
process executors (shell) are spawned and watched by this loop itself (their pipes and
a pidfd in its poll set: no thread per process); other executors run on a pool of
worker threads that call `execute` and post the result on a queue (waking the loop
through an eventfd).
Limits: `max_workers` attempts at once over all runs (the global limit); CPU slots
(`cpu_slots`, the machine's CPUs by default): the running tasks' `resources.cpu` add
up to at most that; and a workflow's `parallelism`: at most that many of its tasks at
once, over all its runs.
A task is ready when every task it depends on has COMPLETED and its retry delay (if
any) has passed; ready tasks start oldest run first, in the workflow's DAG order.

Steps: the loop wakes when an attempt ends (or a timer or poll is due), records what
arrived, decides which tasks start, and commits all of that in one transaction
(`RunStore.batch`) before it starts their processes. So a task's RUNNING row and its
dependencies' COMPLETED rows are on disk before it runs, and a crash between two steps
loses nothing that had consequences. Attempts run on a small pool of threads.

Retries: a failed attempt is retried while it is recoverable and the task's
`retry.max` allows, after `backoff * factor**(n-1)` seconds (capped at `max_backoff`)
stretched by up to `jitter` (a fraction). The wait happens in this loop (a queue
timeout); no process sleeps. A task that fails for good cancels every task downstream
of it (error code `upstream_failed`); independent branches still run, and the run
ends FAILED.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import logging
import math
import os
import queue
import random
import select
import threading
import time
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlite_utils import Database

from clerk.config import redact
from clerk.engine import api
from clerk.engine.alerts import AlertChecker, AlertRule
from clerk.engine.api import Executor, ProcessExecutor, TaskContext, TaskResult
from clerk.engine.fields import load_fields, render
from clerk.engine.model import TaskSpec, Workflow, interrupt_key
from clerk.engine.process import (
    Attempt,
    boot_ticks,
    spawn,
    spawn_failed,
    start_time,
    start_time_between,
)
from clerk.engine.recovery import kill_leftovers
from clerk.engine.runs import (
    CANCELLED,
    COMPLETED,
    FAILED,
    FINISHED,
    PAUSED,
    PENDING,
    RUNNING,
    SKIPPED,
    TASK_DONE,
    RunInfo,
    RunStore,
    TaskRunInfo,
)
from clerk.errors import ClerkError
from clerk.private import private_dir, tighten, write_private
from clerk.rules.templates import sanitize_component

log = logging.getLogger("clerk.engine")

DEFAULT_LOG_LIMIT = 10 * 1024 * 1024
# the error of a task whose runner died while it ran (its code is api.INTERRUPTED)
INTERRUPTED = "clerk stopped while it ran"
INTERRUPTED_AGAIN = f"{INTERRUPTED}; it runs again"
INTERRUPTED_TWICE = f"{INTERRUPTED}, a second time"
_IDLE_THREAD = 5.0  # seconds an attempt thread waits for work before it exits
_R = TypeVar("_R")


class _RedactSecrets(logging.Filter):
    """Hides the secret values of running attempts in clerk.engine's own log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: dict[object, list[str]] = {}  # attempt -> its resolved secrets

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = [value for values in list(self.sources.values()) for value in values]
        if not secrets:
            return True
        record.msg, record.args = redact(record.getMessage(), secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        return True


_redactor = _RedactSecrets()
log.addFilter(_redactor)


class _Workers:
    """Daemon threads that run attempts: reused, started only when none is idle, gone
    after a few idle seconds (a thread per attempt would cost a start each time)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._idle = 0  # threads that finished a job and are not yet counted on again

    def submit(self, function: Callable[..., None], *args: Any) -> None:
        self._jobs.put((function, args))
        with self._lock:
            if self._idle:
                self._idle -= 1
                return
        threading.Thread(target=self._serve, name="clerk-task", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                function, args = self._jobs.get(timeout=_IDLE_THREAD)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # nobody counts on this thread: it may go
                        self._idle -= 1
                        return
                continue  # a job was submitted for it meanwhile
            function(*args)
            with self._lock:
                self._idle += 1


def output_fields(task: str, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """A completed task's outputs as fields: `tasks.<task>.outputs.<key>`."""
    return {f"tasks.{task}.outputs.{key}": value for key, value in outputs.items()}


class _Upstream(Mapping[str, Mapping[str, Any]]):
    """The outputs of the tasks that had completed when an attempt started, by task.

    Built from the run's append-only list of completions (safe to read from the worker
    thread while the runner appends) only when an executor looks: copying every
    completed task's outputs for every attempt would cost O(tasks) each time.
    """

    def __init__(self, completed: list[tuple[str, dict[str, Any]]]):
        self._completed = completed
        self._count = len(completed)
        self._built: dict[str, Mapping[str, Any]] | None = None

    def _outputs(self) -> dict[str, Mapping[str, Any]]:
        if self._built is None:
            self._built = dict(self._completed[: self._count])
        return self._built

    def __getitem__(self, task: str) -> Mapping[str, Any]:
        return self._outputs()[task]

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs())

    def __len__(self) -> int:
        return len(self._outputs())

    def items(self) -> Any:  # the dict's own views: no Python call per item
        return self._outputs().items()

    def keys(self) -> Any:
        return self._outputs().keys()


class RunClaimed(ClerkError):
    """The run is being executed by another process."""


@dataclass(eq=False)
class _InFlight:
    """One attempt of one task, from the step that starts it to the step that records
    how it ended: everything the runner knows about it, in one place."""

    run_id: int
    task: str
    workflow: str  # its workflow's name (the `parallelism` limit counts by it)
    cpu: float  # the CPU slots it holds
    #: None: the executor could not be built; the attempt's failure is already posted
    executor: Executor | None = None
    context: TaskContext | None = None
    #: the values its templates resolved, to redact (filled as it renders)
    secrets: list[str] = field(default_factory=list)
    child: Attempt | None = None  # a ProcessExecutor's process, watched by the runner's loop
    #: (pid, pgid, start time) a worker thread reported, when its outcome came in the same
    #: step: written with the outcome (one UPDATE, not two)
    process: tuple[int, int, int | None] | None = None


@dataclass(frozen=True, slots=True)
class _Ended:
    """A message for the loop: an attempt is over."""

    run_id: int
    task: str
    result: TaskResult


@dataclass(frozen=True, slots=True)
class _ProcessStarted:
    """A message for the loop: an attempt's executor started a process (worker thread),
    or the loop spawned one; recorded so crash recovery can kill what it leaves."""

    run_id: int
    task: str
    pid: int
    pgid: int
    proc_start: int | None


_Message = _Ended | _ProcessStarted


def _guarded(run_id: int, task: str, call: Callable[..., _R], *args: Any) -> _R | TaskResult:
    """`call(*args)` on an executor; if it raises (an executor's bug), the attempt fails
    (error code `executor`, retried like any failure), not the runner."""
    try:
        return call(*args)
    except Exception as exc:
        log.exception("executor for %s/%s raised", run_id, task)
        return TaskResult(False, error_code=api.EXECUTOR, recoverable=True,
                          message=f"{type(exc).__name__}: {exc}")  # fmt: skip


@dataclass
class _ActiveRun:
    id: int
    workflow: Workflow
    fields: dict[str, Any]
    executors: dict[str, Executor | str]  # an instance, or why it could not be built
    status: dict[str, str]
    attempts: dict[str, int]
    interruptions: dict[str, int] = field(default_factory=dict)  # attempts cut off, by task
    next_at: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # of completed tasks
    output_fields: dict[str, Any] = field(default_factory=dict)  # the same, as fields
    completed: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # append-only
    dep_cursor: dict[str, int] = field(default_factory=dict)  # leading deps known satisfied
    activated: set[str] = field(default_factory=set)  # fallback tasks standing in
    fallback_for: dict[str, str] = field(default_factory=dict)  # fallback -> failed task
    started: bool = False
    deadline: float | None = None  # the workflow's timeout, as a time.time()
    paused: bool = False
    aborted: str | None = None  # why an `abort` strategy stopped the run
    cancel: threading.Event = field(default_factory=threading.Event)
    names: list[str] = field(default_factory=list)  # the tasks in DAG order
    order: dict[str, int] = field(default_factory=dict)  # task -> its place in `names`
    pending: list[int] = field(default_factory=list)  # places of the PENDING tasks, sorted
    log_base: dict[str, str] = field(default_factory=dict)  # task -> its logs' name stem
    log_dir: Path = field(default_factory=Path)  # the run's logs, set with the first stem

    def set_status(self, name: str, status: str) -> None:
        """Change a task's status, keeping `pending` (what the scheduler looks at) exact."""
        before = self.status[name]
        self.status[name] = status
        if status == PENDING and before != PENDING:
            bisect.insort(self.pending, self.order[name])
        elif before == PENDING and status != PENDING:
            index = bisect.bisect_left(self.pending, self.order[name])
            del self.pending[index]


class Runner:
    """Executes runs already in the store (see `RunStore.create_run`) to their end."""

    def __init__(
        self,
        db: Database,
        executors: Mapping[str, type[Executor]],
        *,
        logs_dir: Path,
        hooks: Any = None,
        max_workers: int = 4,
        kill_grace: float = 5.0,
        log_limit: int = DEFAULT_LOG_LIMIT,
        rng: random.Random | None = None,
        cpu_slots: float | None = None,
        alerts: list[AlertRule] | None = None,
    ):
        self.store = RunStore(db)
        self.executor_classes = dict(executors)
        self.logs_dir = logs_dir
        self.hooks = hooks
        self.max_workers = max(1, max_workers)
        self.cpu_slots = cpu_slots if cpu_slots is not None else float(os.cpu_count() or 1)
        self.alerts = AlertChecker(self.store, alerts, hooks) if alerts else None
        self.kill_grace = kill_grace
        self.log_limit = log_limit
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self._runs: dict[int, _ActiveRun] = {}
        self._running: dict[tuple[int, str], _InFlight] = {}  # by (run, task)
        self._inbox: queue.SimpleQueue[_Message] = queue.SimpleQueue()  # from worker threads
        self.results: dict[int, str] = {}
        self._poll = 0.25  # how often to look for requests and queued runs
        self._workers = _Workers()
        self._arrived: list[_Message] = []  # messages of this thread, or taken while waiting
        # shell (ProcessExecutor) attempts: started and watched by this loop, not a thread
        self._poller = select.poll()
        self._fd_attempt: dict[int, Attempt] = {}
        self._wake_fd: int | None = None  # an eventfd the worker threads wake the loop with
        self._spawned: list[_ProcessStarted] = []  # processes this loop started, to record
        self._launches: list[_InFlight] = []  # attempts to start once the step is committed
        self._notices: list[Callable[[], object]] = []  # hooks, called after commit
        self._step_at = time.monotonic()
        #: seconds from the step that found a task ready to its executor being called,
        #: for the most recent attempts (the benchmark reports p50/p99)
        self.dispatch_latency: collections.deque[float] = collections.deque(maxlen=100_000)

    # --- entry point ----------------------------------------------------------------------
    def execute(
        self,
        run_ids: Iterable[int],
        *,
        adopt: Callable[[], list[int]] | None = None,
        poll: float = 0.25,
    ) -> dict[int, str]:
        """Run these runs to their end; returns each one's final status.

        Every `poll` seconds the runner takes the requests other processes left on its
        runs (`clerk runs cancel|pause|resume`), and asks `adopt`, when given, for more
        run ids (queued runs) to take on; runs another process claimed are skipped.
        Returns when no run is left (a paused run is let go once its tasks finished).
        Ctrl-C (KeyboardInterrupt) cancels the runs: running process groups are killed,
        the runs end CANCELLED, then the interrupt is raised again.
        """
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._poller.register(self._wake_fd, select.POLLIN)
        try:
            return self._execute(run_ids, adopt, poll)
        finally:
            self._poller.unregister(self._wake_fd)
            os.close(self._wake_fd)
            self._wake_fd = None

    def _execute(
        self, run_ids: Iterable[int], adopt: Callable[[], list[int]] | None, poll: float
    ) -> dict[int, str]:
        with self.store.batch():
            for run_id in run_ids:
                self._load(run_id)
        self._notify()
        interrupted = False
        self._poll = poll
        next_poll = 0.0
        while True:
            try:
                polling = time.monotonic() >= next_poll
                if polling:
                    next_poll = time.monotonic() + poll
                self._step(adopt if polling else None, polling)
                if not self._runs:
                    break
                self._wait()
            except KeyboardInterrupt:
                interrupted, adopt = True, None
                with self.store.batch():
                    for run_id in list(self._runs):
                        self.cancel(run_id, "interrupted")
                self._notify()
                self._launch()
        if interrupted:
            raise KeyboardInterrupt
        return dict(self.results)

    def _step(self, adopt: Callable[[], list[int]] | None, polling: bool) -> None:
        """One scheduling step, one transaction: requests, results, starts; then the
        processes of the tasks it started are launched and the hooks called."""
        self._step_at = time.monotonic()
        with self.store.batch():
            if adopt is not None:
                self._adopt(adopt())
            if polling:
                self._take_requests()
            self._take_messages()
            if self._runs:
                self._start_ready()
                if not self._running and self._next_timer() is None:
                    self._unstick()
        self._notify()
        self._launch()

    def _adopt(self, run_ids: list[int]) -> None:
        for run_id in run_ids:
            if run_id not in self._runs and run_id not in self.results:
                try:
                    self._load(run_id)
                except RunClaimed:
                    continue

    def cancel(self, run_id: int, reason: str = "cancelled", *, abort: bool = False) -> None:
        """Stop a run: no new task starts, running attempts are killed (process groups).

        `abort`: an `abort` strategy stopped it; the run ends FAILED, not CANCELLED.
        """
        run = self._runs.get(run_id)
        if run is None or run.cancel.is_set():
            return
        run.cancel.set()
        if abort:
            run.aborted = reason
        self.store.event(run_id, None, "run_aborting" if abort else "run_cancelling",
                         {"reason": reason})  # fmt: skip
        for name, status in run.status.items():
            if status == PENDING:
                code = "aborted" if abort else api.CANCELLED
                self._set_final(run, name, CANCELLED, code, reason)
        self._maybe_finish(run)

    def pause(self, run_id: int) -> None:
        """No new task of the run starts; running ones finish, then the run is let go."""
        run = self._runs.get(run_id)
        if run is None or run.paused or run.cancel.is_set():
            return
        run.paused = True
        self.store.update_run(run_id, "run_paused", status=PAUSED)
        self._maybe_release(run)

    def resume(self, run_id: int) -> None:
        run = self._runs.get(run_id)
        if run is None or not run.paused:
            return
        run.paused = False
        self.store.update_run(run_id, "run_resumed", status=RUNNING if run.started else PENDING)

    def held(self) -> dict[int, bool]:
        """The runs this runner executes now, each with whether it is paused (call on the
        runner's own thread, e.g. from `adopt`, between its steps)."""
        return {run_id: run.paused for run_id, run in self._runs.items()}

    def _take_requests(self) -> None:
        for run_id, request in self.store.take_requests(list(self._runs)):
            if request == "cancel":
                self.cancel(run_id, "cancelled on request")
            elif request == "pause":
                self.pause(run_id)
            elif request == "resume":
                self.resume(run_id)

    def _maybe_release(self, run: _ActiveRun) -> None:
        """A paused run with nothing running goes back to the store, unclaimed."""
        if run.paused and not any(key[0] == run.id for key in self._running):
            self.store.update_run(run.id, runner_pid=None)
            self._runs.pop(run.id, None)
            self.results[run.id] = PAUSED

    # --- loading --------------------------------------------------------------------------
    def load(self, run_id: int) -> None:
        """Claim a run for this runner (RunClaimed if another has it); `execute` runs it."""
        self._load(run_id)

    def _load(self, run_id: int) -> None:
        info = self.store.run(run_id)
        if info is None:
            raise KeyError(f"no run {run_id}")
        if info.status in FINISHED:
            self.results[run_id] = info.status
            return
        if not self.store.claim(run_id):
            raise RunClaimed(f"run {run_id} is being executed by process {info.runner_pid}")
        workflow = self.store.definition(run_id)
        rows = {t.task: t for t in self.store.tasks(run_id)}
        run = _ActiveRun(
            id=run_id,
            workflow=workflow,
            fields=load_fields(self.store.inputs_json(run_id)),
            executors={name: self._build_executor(spec) for name, spec in workflow.tasks.items()},
            status={name: row.status for name, row in rows.items()},
            attempts={name: row.attempt for name, row in rows.items()},
            interruptions={name: row.interruptions for name, row in rows.items()},
            started=info.started is not None,
            paused=info.status == PAUSED,
            names=list(workflow.tasks),
        )
        run.order = {name: index for index, name in enumerate(run.names)}
        run.pending = [run.order[n] for n in run.names if run.status.get(n) == PENDING]
        if info.started and workflow.timeout:
            run.deadline = info.started + workflow.timeout
        for name, row in rows.items():
            if row.status == PENDING and row.next_attempt_at:
                run.next_at[name] = row.next_attempt_at
            if row.status == COMPLETED:
                self._completed(run, name, row.outputs)
            spec = workflow.tasks.get(name)
            if (
                row.status == FAILED
                and spec is not None
                and spec.fallback
                and (spec.on_failure.strategy(row.error_code) == "fallback")
            ):
                run.activated.add(spec.fallback)
                run.fallback_for[spec.fallback] = name
        self._runs[run_id] = run
        self._recover(run, [row for row in rows.values() if row.status == RUNNING])
        self._maybe_finish(run)

    def _recover(self, run: _ActiveRun, interrupted: list[TaskRunInfo]) -> None:
        """Tasks that were RUNNING when their runner died: kill what is left of them.

        Such an attempt did not fail, it was cut off: the task runs again, once, without
        spending a retry (at-least-once), unless it says `on_interrupt: fail`. A task cut
        off a second time fails, and is not retried (something about it may be what
        brings its runner down)."""
        for row in interrupted:
            killed = kill_leftovers(row.pgid, row.proc_start)
            spec = run.workflow.tasks[row.task]
            again = spec.on_interrupt == "rerun" and not row.interruptions
            self.store.event(run.id, row.task, "recovery_started",
                             {"strategy": "rerun" if again else "fail",
                              "killed_pgid": row.pgid if killed else None})  # fmt: skip
            run.interruptions[row.task] = row.interruptions + 1
            if again:
                run.set_status(row.task, PENDING)
                self.store.update_task(
                    run.id, row.task, "task_requeued",
                    {"attempt": row.attempt, "error_code": api.INTERRUPTED},
                    status=PENDING, interruptions=row.interruptions + 1,
                    error_code=api.INTERRUPTED, error=INTERRUPTED_AGAIN, recoverable=True,
                    next_attempt_at=None, finished=time.time(),
                )  # fmt: skip
                continue
            if row.interruptions:
                message = INTERRUPTED_TWICE
            else:
                message = f"{INTERRUPTED} ({interrupt_key(run.workflow.form != 'compact')}: fail)"
            self.store.update_task(run.id, row.task, interruptions=row.interruptions + 1)
            result = TaskResult(False, error_code=api.INTERRUPTED, recoverable=False,
                                message=message)  # fmt: skip
            self._record(run, spec, result)

    def _build_executor(self, spec: TaskSpec) -> Executor | str:
        cls = self.executor_classes.get(spec.executor)
        if cls is None:
            known = ", ".join(sorted(self.executor_classes)) or "none"
            return f"unknown executor {spec.executor!r} (registered: {known})"
        try:
            return cls(spec.config)
        except Exception as exc:  # SpecError, or a plugin's bug: the task fails, not clerk
            return f"executor {spec.executor!r} refused the task: {exc}"

    # --- scheduling -----------------------------------------------------------------------
    def _start_ready(self) -> None:
        now = time.time()
        self._enforce_deadlines(now)
        for run in list(self._runs.values()):
            if run.cancel.is_set() or run.paused:
                continue
            limit = run.workflow.parallelism
            position = 0  # in run.pending, which _start shortens (no copy per step)
            while position < len(run.pending):
                name = run.names[run.pending[position]]
                position += 1
                if run.next_at.get(name, 0) > now:
                    continue
                if len(self._running) >= self.max_workers:
                    return
                if limit is not None and self._running_of(run.workflow.name) >= limit:
                    break
                if name in run.workflow.fallbacks and name not in run.activated:
                    continue  # a fallback runs only in place of a failed task
                spec = run.workflow.tasks[name]
                if not self._deps_satisfied(run, spec):
                    continue
                if self._cpu_free(spec):
                    self._start(run, spec)
                    position -= 1  # it left run.pending

    def _enforce_deadlines(self, now: float) -> None:
        """A workflow `timeout:` bounds the whole run: past it, the run is aborted."""
        for run in list(self._runs.values()):
            if run.deadline is not None and now >= run.deadline and not run.cancel.is_set():
                timeout = run.workflow.timeout or 0
                self.cancel(run.id, f"the workflow timed out after {timeout:g}s", abort=True)

    def _deps_satisfied(self, run: _ActiveRun, spec: TaskSpec) -> bool:
        """All of the task's dependencies are satisfied. Satisfaction never goes back
        within a runner, so the deps already found satisfied are not looked at again
        (a fan-in over 1,000 tasks would otherwise cost a million checks)."""
        deps, index = spec.depends_on, run.dep_cursor.get(spec.name, 0)
        while index < len(deps) and self._satisfied(run, deps[index]):
            index += 1
        run.dep_cursor[spec.name] = index
        return index == len(deps)

    def _satisfied(self, run: _ActiveRun, name: str) -> bool:
        """Dependents of `name` may start: it completed, was skipped, or its fallback did."""
        status = run.status[name]
        if status in (COMPLETED, SKIPPED):
            return True
        fallback = run.workflow.tasks[name].fallback
        return status == FAILED and fallback in run.activated and self._satisfied(run, fallback)

    def _any_waiting(self, run: _ActiveRun) -> bool:
        # from the end: in DAG order the last tasks are the last to be done
        return any(self._may_run(run, name) for name in reversed(run.status))

    def _may_run(self, run: _ActiveRun, name: str) -> bool:
        return run.status[name] not in TASK_DONE and not (
            name in run.workflow.fallbacks and name not in run.activated
        )

    def _waiting(self, run: _ActiveRun) -> list[str]:
        """Tasks that may still run (an unused fallback never will)."""
        return [name for name in run.status if self._may_run(run, name)]

    def _running_of(self, workflow: str) -> int:
        return sum(1 for attempt in self._running.values() if attempt.workflow == workflow)

    def _cpu_free(self, spec: TaskSpec) -> bool:
        """Room for the task's `resources.cpu`; a task wanting more than there is at all
        still runs, alone."""
        if not spec.resources.cpu or not self._running:
            return True
        used = sum(attempt.cpu for attempt in self._running.values())
        return used + spec.resources.cpu <= self.cpu_slots

    def _start(self, run: _ActiveRun, spec: TaskSpec) -> None:
        """Record the attempt as RUNNING; its process is launched once that is committed."""
        name = spec.name
        attempt = run.attempts[name] + 1
        run.attempts[name] = attempt
        run.set_status(name, RUNNING)
        run.next_at.pop(name, None)
        stem = f"{self._log_base(run, name)}.{attempt}"
        base = f"{run.log_dir}/{stem}"
        # made from the run's directory (parsed once), not from whole path strings
        stdout_log, stderr_log = run.log_dir / f"{stem}.out", run.log_dir / f"{stem}.err"
        now = time.time()
        if not run.started:
            run.started = True
            if run.workflow.timeout:
                run.deadline = now + run.workflow.timeout
            self.store.update_run(run.id, "run_started", status=RUNNING, started=now)
            self._call_hook("run_started", lambda: {"run": self._run_info(run.id)})
        # the data as JSON text: a json.dumps per task is a measurable part of a step
        self.store.update_task(
            run.id, name, "task_started", f'{{"attempt": {attempt}}}', status=RUNNING,
            attempt=attempt,
            started=now, finished=None, next_attempt_at=None, pid=None, pgid=None,
            stdout_log=base + ".out", stderr_log=base + ".err",
        )  # fmt: skip
        executor = run.executors[name]
        if isinstance(executor, str):  # it could not be built: the attempt fails at once
            self._running[(run.id, name)] = _InFlight(run.id, name, run.workflow.name,
                                                      spec.resources.cpu)  # fmt: skip
            self._arrived.append(_Ended(run.id, name, TaskResult(False, error_code=api.CONFIG,
                                                                 message=executor,
                                                                 recoverable=False)))  # fmt: skip
            return
        secrets: list[str] = []  # the values render resolves, to redact
        # read by the worker thread while this one adds outputs: a task's templates may
        # see outputs of tasks that completed meanwhile (never of one it depends on)
        fields = ChainMap(run.output_fields, run.fields)
        run_id = run.id
        context = TaskContext(
            run_id=run_id,
            task=spec,
            attempt=attempt,
            render=lambda template, escape=None: render(template, fields, secrets, escape),
            fields=run.fields,
            stdout_log=stdout_log,
            stderr_log=stderr_log,
            log_limit=self.log_limit,
            timeout=spec.timeout,
            kill_grace=self.kill_grace,
            cancel=run.cancel,
            on_process=lambda pid, pgid: self._post(
                _ProcessStarted(run_id, name, pid, pgid, start_time(pid))
            ),
            outputs_file=run.log_dir / f"{stem}.outputs.json",
            memory_limit=spec.resources.memory,
            process_limit=spec.resources.processes,
            upstream=_Upstream(run.completed),
            secrets=secrets,
        )
        attempt_state = _InFlight(run_id, name, run.workflow.name, spec.resources.cpu,
                                  executor, context, secrets)  # fmt: skip
        self._running[(run_id, name)] = attempt_state
        _redactor.sources[attempt_state] = secrets
        self._launches.append(attempt_state)

    def _completed(self, run: _ActiveRun, name: str, outputs: dict[str, Any]) -> None:
        run.outputs[name] = outputs
        run.completed.append((name, outputs))
        if outputs:
            run.output_fields.update(output_fields(name, outputs))

    def _log_base(self, run: _ActiveRun, name: str) -> str:
        """The task's logs' file name stem in `run.log_dir`, `<logs>/<run>/` (attempts
        add `.<n>`); that directory is made once, since a task may write its
        `$CLERK_OUTPUTS` file there before any log exists."""
        stem = run.log_base.get(name)
        if stem is None:
            if not run.log_base:
                run.log_dir = self.logs_dir / str(run.id)
                private_dir(run.log_dir)
            stem = sanitize_component(name)
            run.log_base[name] = stem
        return stem

    def _post(self, message: _Message) -> None:
        """From a worker thread: a message for the loop, which is woken to take it."""
        self._inbox.put(message)
        wake = self._wake_fd
        if wake is not None:
            with contextlib.suppress(OSError):  # closed: the loop has ended meanwhile
                os.eventfd_write(wake, 1)

    def _launch(self) -> None:
        """Hand the attempts of the last (committed) step to the worker threads."""
        launches, self._launches = self._launches, []
        ready_at = self._step_at
        for attempt in launches:
            executor, context = attempt.executor, attempt.context
            assert executor is not None and context is not None
            if context.cancel.is_set():  # cancelled before it began: nothing to kill
                result = TaskResult(False, error_code=api.CANCELLED, message="cancelled",
                                    recoverable=False)  # fmt: skip
                self._arrived.append(_Ended(attempt.run_id, attempt.task, result))
                continue
            if isinstance(executor, ProcessExecutor):
                self._spawn(attempt, executor, context, ready_at)
            else:
                self._workers.submit(self._work, attempt, executor, context, ready_at)
        if self._spawned:  # their pids, at once: crash recovery kills what they leave
            spawned, self._spawned = self._spawned, []
            with self.store.batch():
                for started in spawned:
                    self._record_process(started)

    def _spawn(self, attempt: _InFlight, executor: ProcessExecutor, context: TaskContext,
               ready_at: float) -> None:  # fmt: skip
        """Start a process attempt here; `_wait` watches it with the others.

        Spawned on this thread: posix_spawn blocks it until the child has exec'd, but
        measured, that costs less than handing the spawn to a worker thread and back."""
        started = time.monotonic()
        self.dispatch_latency.append(started - ready_at)
        run_id, name = attempt.run_id, attempt.task
        command = _guarded(run_id, name, executor.command, context)
        if isinstance(command, TaskResult):
            self._arrived.append(_Ended(run_id, name, command))
            return
        before = boot_ticks()
        try:
            pid, stdout, stderr = spawn(command.argv, command.env, command.cwd)
        except OSError as exc:
            self._arrived.append(_Ended(run_id, name, spawn_failed(command.argv, exc)))
            return
        child = Attempt(pid, stdout, stderr, context, started, self._poller)
        attempt.child = child
        for fd in child.fds:
            self._fd_attempt[fd] = child
        start = start_time_between(pid, before, boot_ticks())
        self._spawned.append(_ProcessStarted(run_id, name, pid, pid, start))

    def _reap(self) -> list[_Message]:
        """Enforce the limits of the attempts this loop watches; the ended ones' results."""
        ended: list[_Message] = []
        now = time.monotonic()
        for attempt in list(self._running.values()):
            child = attempt.child
            if child is None:
                continue
            child.tick(now)
            if not child.done:
                continue
            attempt.child = None
            for fd in child.fds:
                self._fd_attempt.pop(fd, None)
            child.close()
            executor, context = attempt.executor, attempt.context
            assert isinstance(executor, ProcessExecutor) and context is not None
            result = _guarded(attempt.run_id, attempt.task, executor.finish, child.result(),
                              context)  # fmt: skip
            scrub(context)
            ended.append(_Ended(attempt.run_id, attempt.task, result))
        return ended

    def _work(self, attempt: _InFlight, executor: Executor, context: TaskContext,
              ready_at: float) -> None:  # fmt: skip
        """On a worker thread: one attempt of a thread-run executor, posted when over."""
        started = time.monotonic()
        self.dispatch_latency.append(started - ready_at)
        result = _guarded(attempt.run_id, attempt.task, executor.execute, context)
        if not result.wall:
            result.wall = time.monotonic() - started
        scrub(context)
        self._post(_Ended(attempt.run_id, attempt.task, result))

    def _wait(self) -> None:
        """Block until a message arrives, a watched process has news, or the next timer
        or poll is due."""
        if self._arrived:
            return
        timeout = self._next_timer()
        timeout = self._poll if timeout is None else min(timeout, self._poll)
        now = time.monotonic()
        for attempt in self._running.values():
            if attempt.child is not None:
                timeout = min(timeout, attempt.child.next_wake(now))
        for fd, _ in self._poller.poll(timeout * 1000):
            owner = self._fd_attempt.get(fd)
            if owner is not None:
                owner.ready(fd)
            elif fd == self._wake_fd:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(fd)

    def _take_messages(self) -> None:
        """Handle what arrived, and whatever else came meanwhile, in this step.

        A process that started and ended within the step gets its pid written with its
        outcome (one UPDATE, not two; the same transaction either way)."""
        arrived, self._arrived = self._arrived, []
        while True:
            try:
                arrived.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        arrived += self._reap()
        ended = {(m.run_id, m.task) for m in arrived if isinstance(m, _Ended)}
        for message in arrived:
            if isinstance(message, _Ended):
                self._ended(message)
                continue
            attempt = self._running.get((message.run_id, message.task))
            if attempt is not None and (message.run_id, message.task) in ended:
                attempt.process = (message.pid, message.pgid, message.proc_start)
            elif message.run_id in self._runs:
                self._record_process(message)

    def _next_timer(self) -> float | None:
        """Seconds until the earliest retry is due (None: no retry is waiting)."""
        due = [at for run in self._runs.values() for at in run.next_at.values()]
        due += [run.deadline for run in self._runs.values()
                if run.deadline is not None and not run.cancel.is_set()]  # fmt: skip
        return max(0.0, min(due) - time.time()) if due else None

    def _unstick(self) -> None:
        """Nothing runs and nothing waits, yet runs are open: their rest can never run."""
        for run in list(self._runs.values()):
            if run.paused:
                self._maybe_release(run)
                continue
            for name in self._waiting(run):
                self._set_final(run, name, CANCELLED, api.UPSTREAM,
                                "its dependencies can no longer complete")  # fmt: skip
            self._maybe_finish(run)

    # --- results --------------------------------------------------------------------------
    def _record_process(self, started: _ProcessStarted) -> None:
        self.store.update_task(started.run_id, started.task, pid=started.pid,
                               pgid=started.pgid, proc_start=started.proc_start)  # fmt: skip

    def _ended(self, message: _Ended) -> None:
        run_id, name, result = message.run_id, message.task, message.result
        attempt = self._running.pop((run_id, name), None)
        secrets: list[str] = []
        if attempt is not None:
            secrets = attempt.secrets
            _redactor.sources.pop(attempt, None)
        run = self._runs.get(run_id)
        if run is None:
            return
        if secrets:  # a secret never reaches the store
            result.message = redact(result.message, secrets)
            result.outputs = redact_value(result.outputs, secrets)
        process = attempt.process if attempt is not None else None
        self._record(run, run.workflow.tasks[name], result, process)
        self._maybe_finish(run)

    def _record(self, run: _ActiveRun, spec: TaskSpec, result: TaskResult,
                process: tuple[int, int, int | None] | None = None) -> None:  # fmt: skip
        """How an attempt ended; `process`: its (pid, pgid, start time), not yet written."""
        name, attempt = spec.name, run.attempts[spec.name]
        usage = {"finished": time.time(), "exit_code": result.exit_code, "wall": result.wall,
                 "cpu_user": result.cpu_user, "cpu_sys": result.cpu_sys,
                 "max_rss": result.max_rss}  # fmt: skip
        if process is not None:
            usage.update(zip(("pid", "pgid", "proc_start"), process, strict=True))
        if (
            not result.ok
            and result.error_code == api.EXIT
            and (result.exit_code in spec.on_failure.business_exit_codes)
        ):
            result.error_code, result.recoverable = api.BUSINESS, False
        if result.ok:
            run.set_status(name, COMPLETED)
            self._completed(run, name, result.outputs)
            data = f'{{"attempt": {attempt}, "wall": {_json_number(round(result.wall, 3))}}}'
            self.store.update_task(
                run.id, name, "task_completed", data,
                status=COMPLETED, outputs=result.outputs, error_code=None, error=None,
                recoverable=None, **usage,
            )  # fmt: skip
        elif self._should_retry(run, spec, result, attempt):
            delay = self._retry_delay(spec, attempt)
            run.set_status(name, PENDING)
            run.next_at[name] = time.time() + delay
            self.store.update_task(
                run.id, name, "task_retried",
                {"attempt": attempt, "delay": round(delay, 3), "error": result.message},
                status=PENDING, next_attempt_at=run.next_at[name], error_code=result.error_code,
                error=result.message, recoverable=result.recoverable, **usage,
            )  # fmt: skip
        else:
            self._fail(run, spec, result, usage)
        self._call_hook("task_finished", lambda: {"task_run": self._task_info(run.id, name)})

    def _fail(self, run: _ActiveRun, spec: TaskSpec, result: TaskResult,
              usage: dict[str, Any]) -> None:  # fmt: skip
        """A failure retries did not (or may not) cure: apply the task's strategy."""
        name = spec.name
        stopped = result.error_code == api.CANCELLED or run.cancel.is_set()
        strategy = "retry" if stopped else spec.on_failure.strategy(result.error_code)
        status = CANCELLED if stopped else SKIPPED if strategy == "skip" else FAILED
        run.set_status(name, status)
        self.store.update_task(
            run.id, name, "task_" + status.lower(),
            {"attempt": run.attempts[name], "error_code": result.error_code,
             "error": result.message, "strategy": strategy},
            status=status, error_code=result.error_code, error=result.message,
            recoverable=result.recoverable, **usage,
        )  # fmt: skip
        if status == SKIPPED:
            return
        if strategy == "fallback" and spec.fallback:
            run.activated.add(spec.fallback)
            run.fallback_for[spec.fallback] = name
            self.store.event(run.id, name, "recovery_started",
                             {"strategy": "fallback", "task": spec.fallback})  # fmt: skip
            return
        if strategy == "abort":
            self.store.event(run.id, name, "recovery_started", {"strategy": "abort"})
            self.cancel(run.id, f"task {name!r} failed: {result.message}", abort=True)
            return
        self._cancel_downstream(run, name)
        primary = run.fallback_for.get(name)
        if primary is not None:  # the stand-in failed too: the original's dependents wait in vain
            self._cancel_downstream(run, primary)

    def _should_retry(
        self, run: _ActiveRun, spec: TaskSpec, result: TaskResult, attempt: int
    ) -> bool:
        return (
            result.recoverable
            and not run.cancel.is_set()
            and result.error_code != api.CANCELLED
            and spec.on_failure.strategy(result.error_code) == "retry"
            # an attempt cut off by the runner's death spent no retry
            and attempt - run.interruptions.get(spec.name, 0) <= spec.retry.max_retries
        )

    def _retry_delay(self, spec: TaskSpec, attempt: int) -> float:
        policy = spec.retry
        return policy.base_delay(attempt) * (1 + self.rng.uniform(0, max(0.0, policy.jitter)))

    def _cancel_downstream(self, run: _ActiveRun, failed: str) -> None:
        todo = run.workflow.dependents(failed)
        while todo:
            name = todo.pop()
            if run.status[name] == PENDING:
                self._set_final(run, name, CANCELLED, api.UPSTREAM,
                                f"upstream task {failed!r} did not complete")  # fmt: skip
                todo.extend(run.workflow.dependents(name))

    def _set_final(self, run: _ActiveRun, name: str, status: str, code: str, message: str) -> None:
        run.set_status(name, status)
        run.next_at.pop(name, None)
        self.store.update_task(
            run.id, name, "task_" + status.lower(), {"error_code": code, "error": message},
            status=status, error_code=code, error=message, recoverable=False,
            finished=time.time(), next_attempt_at=None,
        )  # fmt: skip

    def _maybe_finish(self, run: _ActiveRun) -> None:
        if self._any_waiting(run):
            self._maybe_release(run)
            return
        if any(key[0] == run.id for key in self._running):
            return  # a cancelled attempt is still being killed
        for name in run.workflow.fallbacks - run.activated:
            if run.status[name] == PENDING:
                self._set_final(run, name, SKIPPED, "not_needed", "its task did not fail")
        plain = [n for n in run.workflow.tasks if n not in run.workflow.fallbacks]
        if all(self._satisfied(run, name) for name in plain) and not run.cancel.is_set():
            final, error = COMPLETED, None
        else:
            final = CANCELLED if run.cancel.is_set() and not run.aborted else FAILED
            error = run.aborted or self._first_error(run)
        self.store.update_run(run.id, "run_" + final.lower(), {"error": error} if error else None,
                              status=final, finished=time.time(), error=error)  # fmt: skip
        self._runs.pop(run.id, None)
        self.results[run.id] = final
        self._call_hook("run_finished", lambda: {"run": self._run_info(run.id)})
        if self.alerts is not None:
            self.alerts.run_finished(self._run_info(run.id), defer=self._notices.append)

    def _first_error(self, run: _ActiveRun) -> str | None:
        for task in self.store.tasks(run.id):
            if task.status == FAILED:
                return f"task {task.task!r}: {task.error}"
        for task in self.store.tasks(run.id):
            if task.status == CANCELLED and task.error:
                return f"task {task.task!r}: {task.error}"
        return None

    # --- hooks ----------------------------------------------------------------------------
    def _run_info(self, run_id: int) -> RunInfo:
        info = self.store.run(run_id)
        assert info is not None
        return info

    def _task_info(self, run_id: int, name: str) -> TaskRunInfo:
        info = self.store.task(run_id, name)
        assert info is not None
        return info

    def _call_hook(self, name: str, arguments: Callable[[], dict[str, Any]]) -> None:
        """Call a notification hook once the step is committed (plugins see what is in
        the store); its arguments are only built if a plugin listens."""
        if self.hooks is None:
            return
        caller = getattr(self.hooks.hook, name, None)
        if caller is None or not caller.get_hookimpls():
            return

        def call() -> None:
            try:
                caller(**arguments())
            except Exception:  # a plugin's notification must not break a run
                log.exception("plugin hook %s failed", name)

        self._notices.append(call)

    def _notify(self) -> None:
        notices, self._notices = self._notices, []
        for notice in notices:
            notice()


def _json_number(value: float) -> str:
    """A float as `json.dumps` writes it (repr), or null where JSON has no number."""
    return repr(value) if math.isfinite(value) else "null"


def redact_value(value: Any, secrets: list[str]) -> Any:
    """`value` (outputs: JSON-like) with every secret in its strings replaced by ***."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list):
        return [redact_value(item, secrets) for item in value]
    if isinstance(value, dict):
        return {redact(str(k), secrets): redact_value(v, secrets) for k, v in value.items()}
    return value


def scrub(context: TaskContext) -> None:
    """Seal the files an attempt leaves: owner-only (the task wrote `$CLERK_OUTPUTS`
    with its own umask) and its secrets hidden (in logs of executors that write them
    without `CappedLog`'s redaction, and in the outputs file)."""
    for path in (context.stdout_log, context.stderr_log, context.outputs_file):
        if path is not None:
            tighten(path)
            if context.secrets:
                redact_file(path, context.secrets)


def redact_file(path: Path, secrets: list[str]) -> None:
    """Rewrite a log file with its secrets replaced by ***, if it holds any."""
    try:
        data = path.read_bytes()
    except OSError:
        return
    clean = data
    for value in sorted({v for v in secrets if v and len(v) >= 4}, key=len, reverse=True):
        clean = clean.replace(value.encode(), b"***")
    if clean != data:
        write_private(path, clean)
