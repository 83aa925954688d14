"""One typed model for workflows written in either form.

Rule files carry workflows raw (`RuleSet.workflows`): the compact form under
`workflows:` (`depends_on`, `retry: {max, backoff, factor}`) and resource documents
(`kind: Task | Workflow`, `spec.tasks[].dependsOn`, `retryPolicy: {maxRetries}`).
`clerk check` (clerk/rules/check.py) has already reported what is wrong with them at
file:line:col; this module only translates, and raises `WorkflowError` for anything
that slipped through (a rule set built in code, say), never a KeyError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from clerk.errors import ClerkError, Location, Problem, SpecError
from clerk.units import parse_duration, parse_size

_T = TypeVar("_T")


class WorkflowError(ClerkError):
    """A workflow definition cannot be turned into the model (or names no workflow)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how late a failed task is tried again.

    The delay before retry n (1-based) is `backoff * factor**(n-1)`, capped at
    `max_backoff`, then stretched by a random factor in [1, 1 + jitter] so that many
    tasks failing together do not retry in lockstep.
    """

    max_retries: int = 0
    backoff: float = 1.0
    factor: float = 2.0
    max_backoff: float = 300.0
    jitter: float = 0.1

    def base_delay(self, retry: int) -> float:
        return min(self.max_backoff, self.backoff * self.factor ** max(0, retry - 1))


STRATEGIES = ("retry", "skip", "fallback", "abort")

#: what happens to a task cut off by its runner's death (kill -9, power loss): by
#: default it runs again, once, without spending a retry (at-least-once); `fail` is for
#: a task that must not run twice
ON_INTERRUPT = ("rerun", "fail")


@dataclass(frozen=True)
class FailurePolicy:
    """What to do when an attempt fails, by error code (`on_failure:` / `onFailure:`).

    `business_exit_codes`: exit statuses that mean "this input is wrong", not "try
    again" (error code `business`, never retried). `strategies` maps an error code
    (`exit`, `timeout`, `business`, `http`, ...) to retry | skip | fallback | abort;
    `default` covers the rest.
    """

    business_exit_codes: frozenset[int] = frozenset()
    strategies: Mapping[str, str] = field(default_factory=dict)
    default: str = "retry"

    def strategy(self, error_code: str | None) -> str:
        return self.strategies.get(error_code or "", self.default)


@dataclass(frozen=True)
class Resources:
    cpu: float = 0.0  # CPU slots the task holds while it runs; none unless declared
    memory: int | None = None  # bytes
    processes: int | None = None  # most processes its process group may have at once


@dataclass(frozen=True)
class TaskSpec:
    """One task of a workflow; `config` holds the executor's own keys (command, env...)."""

    name: str
    executor: str
    config: Mapping[str, Any]
    depends_on: tuple[str, ...] = ()
    timeout: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    resources: Resources = field(default_factory=Resources)
    fallback: str | None = None
    on_failure: FailurePolicy = field(default_factory=FailurePolicy)
    on_interrupt: str = "rerun"  # one of ON_INTERRUPT
    description: str = ""


@dataclass(frozen=True)
class Workflow:
    name: str
    tasks: dict[str, TaskSpec]  # in definition order, which is also a valid DAG order
    parallelism: int | None = None  # tasks of this workflow running at once, over all runs
    timeout: float | None = None
    schedule: str | None = None  # cron: the daemon starts a run on each tick
    every: float | None = None  # seconds: the same, by interval
    description: str = ""
    form: str = "compact"  # compact | Workflow | Task

    def dependents(self, name: str) -> list[str]:
        return [t.name for t in self.tasks.values() if name in t.depends_on]

    @cached_property
    def fallbacks(self) -> frozenset[str]:
        """Tasks that run only in place of a failed task (named by its `fallback:`)."""
        return frozenset(t.fallback for t in self.tasks.values() if t.fallback)


# Keys that belong to the engine; everything else in a task goes to its executor.
_ENGINE_KEYS = frozenset(
    {"name", "executor", "depends_on", "dependsOn", "timeout", "retry", "retryPolicy",
     "resources", "fallback", "description", "on_failure", "onFailure", "on_interrupt",
     "onInterrupt", "taskRef"}
)  # fmt: skip
_RENAMED = {"workingDir": "cwd"}


def executor_config(task: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a task that go to its executor (everything the engine does not own)."""
    return {_RENAMED.get(k, k): v for k, v in task.items() if k not in _ENGINE_KEYS}


def written_key(key: str, resource: bool) -> str:
    """How an executor key (`cwd`) is written in a task of the compact or resource form."""
    if resource:
        return next((raw for raw, ours in _RENAMED.items() if ours == key), key)
    return key


class TaskConfig(dict[str, Any]):
    """A task's executor keys, as `executor_config` gives them, that know where they
    were written: what an executor's `check` (`clerk check`) is handed.

    `where(key)` is the file:line:col of the value under `key`, `where(key, index)` of
    item `index` of that (list) value, `where()` of the task's `executor:`. A task
    written in code has no positions: then the file alone (`<workflow NAME>`).
    """

    def __init__(self, task: Mapping[str, Any], *, executor: str, file: str,
                 resource: bool = False):  # fmt: skip
        super().__init__(executor_config(task))
        self.executor = executor  # the name the task gave (a plugin may register any)
        self.file = file
        self.resource = resource
        self._task = task  # the task as read (ruamel's mappings carry positions)

    def where(self, key: str | None = None, index: int | None = None) -> Location:
        from clerk.yamlsrc import key_location, node_location, value_location

        task = self._task
        if key is None:
            key = "executor"
            if key not in task:
                return node_location(self.file, task)
            return value_location(self.file, task, key)
        written = written_key(key, self.resource)
        if written not in task:
            return self.where()
        if index is not None and isinstance(task[written], list):
            return key_location(self.file, task[written], index)
        return value_location(self.file, task, written)

    def problem(self, error: SpecError) -> Problem:
        """An executor's SpecError as a problem: at the key it names, else at the task's
        `executor:`, saying whose complaint it is."""
        if error.key is not None:
            return Problem(self.where(error.key, error.index), str(error))
        return Problem(self.where(), f"{self.executor} task: {error}")


def build_workflows(raw: Mapping[str, Any]) -> dict[str, Workflow]:
    """Every workflow of a rule set (`RuleSet.workflows`), by name."""
    task_resources = {
        name: definition
        for name, definition in raw.items()
        if isinstance(definition, dict) and definition.get("kind") == "Task"
    }
    return {name: build_workflow(name, d, task_resources) for name, d in raw.items()}


def build_workflow(
    name: str, definition: Any, task_resources: Mapping[str, Any] | None = None
) -> Workflow:
    if not isinstance(definition, dict):
        raise WorkflowError(f"workflow {name!r}: wants a mapping, got {definition!r}")
    kind = definition.get("kind")
    try:
        if kind == "Task":
            spec = _spec(name, definition)
            task = _task(spec, defaults={}, resource=True, task_name=name)
            return Workflow(name, {name: task}, description=str(spec.get("description", "")),
                            form="Task")  # fmt: skip
        if kind == "Workflow":
            spec = _spec(name, definition)
            return _workflow(name, spec, resource=True, refs=task_resources or {})
        return _workflow(name, definition, resource=False, refs={})
    except (SpecError, TypeError, ValueError) as exc:
        raise WorkflowError(f"workflow {name!r}: {exc}") from None


def _spec(name: str, definition: dict[str, Any]) -> dict[str, Any]:
    spec = definition.get("spec")
    if not isinstance(spec, dict):
        raise WorkflowError(f"workflow {name!r}: a resource needs a spec: mapping")
    return spec


def _workflow(
    name: str, spec: dict[str, Any], *, resource: bool, refs: Mapping[str, Any]
) -> Workflow:
    raw_tasks = spec.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise WorkflowError(f"workflow {name!r}: needs tasks: (a non-empty list)")
    # resource-form workflows may give defaults for their tasks
    defaults: dict[str, Any] = {
        k: spec[k] for k in ("executor", "resources", "retryPolicy", "onFailure") if k in spec
    }
    if not resource and "on_failure" in spec:
        defaults["on_failure"] = spec["on_failure"]
    tasks: dict[str, TaskSpec] = {}
    for raw in raw_tasks:
        if not isinstance(raw, dict):
            raise WorkflowError(f"workflow {name!r}: a task is a mapping, got {raw!r}")
        if resource and "taskRef" in raw:
            raw = _resolve_ref(name, raw, refs)
        task = _task(raw, defaults=defaults, resource=resource)
        if task.name in tasks:
            raise WorkflowError(f"workflow {name!r}: duplicate task {task.name!r}")
        tasks[task.name] = task
    parallelism = spec.get("parallelism")
    if parallelism is not None and (not isinstance(parallelism, int) or parallelism < 1):
        raise WorkflowError(f"workflow {name!r}: parallelism wants a whole number >= 1")
    return Workflow(
        name,
        _in_dag_order(name, tasks),
        parallelism=parallelism,
        timeout=_duration(spec.get("timeout"), "timeout"),
        schedule=spec.get("schedule"),
        every=_every(name, spec),
        description=str(spec.get("description", "")),
        form="Workflow" if resource else "compact",
    )


def _every(name: str, spec: dict[str, Any]) -> float | None:
    every = _duration(spec.get("every"), "every")
    if every is not None and every <= 0:
        raise WorkflowError(f"workflow {name!r}: every: wants a duration above 0")
    if every is not None and spec.get("schedule") is not None:
        raise WorkflowError(f"workflow {name!r}: has schedule: or every:, not both")
    return every


def _resolve_ref(workflow: str, raw: dict[str, Any], refs: Mapping[str, Any]) -> dict[str, Any]:
    """A `taskRef: NAME` task is the Task resource NAME, with this entry's keys on top."""
    ref = raw["taskRef"]
    target = refs.get(ref)
    if not isinstance(target, dict) or not isinstance(target.get("spec"), dict):
        raise WorkflowError(f"workflow {workflow!r}: taskRef {ref!r} names no Task")
    merged = {**target["spec"], **{k: v for k, v in raw.items() if k != "taskRef"}}
    merged.setdefault("name", ref)
    return merged


def _task(
    raw: dict[str, Any], *, defaults: dict[str, Any], resource: bool, task_name: str | None = None
) -> TaskSpec:
    raw = {**defaults, **raw}
    name = task_name if task_name is not None else raw.get("name")
    if not isinstance(name, str) or not name:
        raise WorkflowError(f"a task needs a name, got {name!r}")
    executor = raw.get("executor")
    if not isinstance(executor, str):
        raise WorkflowError(f"task {name!r} needs an executor:")
    deps = raw.get("dependsOn" if resource else "depends_on", [])
    deps = [deps] if isinstance(deps, str) else list(deps or [])
    config = executor_config(raw)
    retry_key = "retryPolicy" if resource else "retry"
    return TaskSpec(
        name=name,
        executor=executor,
        config=config,
        depends_on=tuple(str(d) for d in deps),
        timeout=_duration(raw.get("timeout"), f"task {name!r}: timeout"),
        retry=_keyed(f"task {name!r}: retry", _retry, raw.get(retry_key), resource),
        resources=_keyed(f"task {name!r}: resources", _resources, raw.get("resources")),
        fallback=raw.get("fallback"),
        on_failure=_keyed(
            f"task {name!r}: on_failure",
            _failure,
            raw.get("onFailure" if resource else "on_failure"),
            "fallback" if raw.get("fallback") else "retry",
        ),
        on_interrupt=_keyed(
            f"task {name!r}: {interrupt_key(resource)}",
            parse_on_interrupt,
            raw.get(interrupt_key(resource)),
        ),
        description=str(raw.get("description", "")),
    )


def interrupt_key(resource: bool) -> str:
    """The task key that says what an interruption does, in the compact or resource form."""
    return "onInterrupt" if resource else "on_interrupt"


def parse_on_interrupt(raw: Any) -> str:
    """`on_interrupt: rerun` (the default) or `fail`; SpecError for anything else."""
    if raw is None:
        return ON_INTERRUPT[0]
    if raw not in ON_INTERRUPT:
        raise SpecError(f"wants {' or '.join(ON_INTERRUPT)}, got {raw!r}")
    return str(raw)


def _retry(raw: Any, resource: bool) -> RetryPolicy:
    if raw is None:
        return RetryPolicy()
    if not isinstance(raw, dict):
        raise WorkflowError(f"retry wants a mapping, got {raw!r}")
    default = RetryPolicy()
    max_key, cap_key = ("maxRetries", "maxBackoff") if resource else ("max", "max_backoff")
    return RetryPolicy(
        max_retries=int(raw.get(max_key, default.max_retries)),
        backoff=parse_duration(raw.get("backoff", default.backoff)),
        factor=float(raw.get("factor", default.factor)),
        max_backoff=parse_duration(raw.get(cap_key, default.max_backoff)),
        jitter=float(raw.get("jitter", default.jitter)),
    )


def _failure(raw: Any, default: str) -> FailurePolicy:
    """`on_failure: skip`, or `{business_exit_codes: [2], timeout: skip, default: abort}`.

    Without a `default`, a task with a `fallback:` falls back, others retry.
    """
    if raw is None:
        return FailurePolicy(default=default)
    if isinstance(raw, str):
        raw = {"default": raw}
    if not isinstance(raw, dict):
        raise SpecError(f"wants a strategy ({', '.join(STRATEGIES)}) or a mapping, got {raw!r}")
    raw = dict(raw)
    codes = raw.pop("business_exit_codes", raw.pop("businessExitCodes", []))
    if not isinstance(codes, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in codes
    ):
        raise SpecError(f"business_exit_codes wants a list of exit statuses, got {codes!r}")
    for code, strategy in raw.items():
        if strategy not in STRATEGIES:
            raise SpecError(f"{code}: wants one of {', '.join(STRATEGIES)}, got {strategy!r}")
    default = raw.pop("default", default)
    return FailurePolicy(frozenset(codes), {str(k): v for k, v in raw.items()}, default)


def _resources(raw: Any) -> Resources:
    if raw is None:
        return Resources()
    if not isinstance(raw, dict):
        raise WorkflowError(f"resources wants a mapping, got {raw!r}")
    cpu_text = str(raw.get("cpu", 0)).strip()
    cpu = float(cpu_text[:-1]) / 1000 if cpu_text.endswith("m") else float(cpu_text)
    memory = raw.get("memory")
    processes = raw.get("processes")
    if processes is not None:
        processes = parse_process_limit(processes)
    return Resources(
        cpu=cpu, memory=parse_size(memory) if memory is not None else None, processes=processes
    )


def parse_process_limit(value: Any) -> int:
    """`resources.processes`: a whole number of processes, at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"processes: wants a whole number of processes (1 or more), got {value!r}")
    return value


def _duration(value: Any, what: str = "timeout") -> float | None:
    return None if value is None else _keyed(what, parse_duration, value)


def _keyed(what: str, parse: Callable[..., _T], *args: Any) -> _T:
    """`parse(*args)`, with `what` (which key of which task) in front of its complaint."""
    try:
        return parse(*args)
    except (SpecError, TypeError, ValueError) as exc:
        raise SpecError(f"{what}: {exc}") from None


def _in_dag_order(workflow: str, tasks: dict[str, TaskSpec]) -> dict[str, TaskSpec]:
    """The tasks sorted so that every task comes after its dependencies (Kahn)."""
    for task in tasks.values():
        if task.fallback is not None and (task.fallback not in tasks or task.fallback == task.name):
            raise WorkflowError(f"workflow {workflow!r}: task {task.name!r} falls back to"
                                f" unknown task {task.fallback!r}")  # fmt: skip
        uses_fallback = "fallback" in (
            task.on_failure.default,
            *task.on_failure.strategies.values(),
        )
        if uses_fallback and task.fallback is None:
            raise WorkflowError(f"workflow {workflow!r}: task {task.name!r} has a fallback"
                                " strategy but no fallback: task")  # fmt: skip
        for dep in task.depends_on:
            if dep not in tasks:
                raise WorkflowError(f"workflow {workflow!r}: task {task.name!r} depends on"
                                    f" unknown task {dep!r}")  # fmt: skip
    ordered: dict[str, TaskSpec] = {}
    remaining = dict(tasks)
    while remaining:
        ready = [t for t in remaining.values() if all(d in ordered for d in t.depends_on)]
        if not ready:
            raise WorkflowError(
                f"workflow {workflow!r}: dependency cycle among {', '.join(sorted(remaining))}"
            )
        for task in ready:
            ordered[task.name] = remaining.pop(task.name)
    return ordered


def find_workflow(workflows: Mapping[str, Workflow], name: str) -> Workflow:
    if name not in workflows:
        from clerk.rules.suggest import unknown

        raise WorkflowError(unknown("workflow", name, list(workflows)))
    return workflows[name]
