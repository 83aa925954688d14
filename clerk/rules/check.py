"""`clerk check`: what is wrong with a loaded rule set beyond its syntax.

`check_rules` looks across rules, roots and workflows: unknown roots and workflows,
duplicate names, template fields nothing provides, destinations outside every root,
missing root directories, and the workflows themselves: durations, sizes, retries,
`depends_on` references and cycles, and each task's executor keys, which the class
registered under its executor name checks itself (`Executor.check`: a plugin that
replaces `shell` validates shell tasks). Every finding is a `Problem`; nothing here
raises for anything a user wrote.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clerk.config import Config
from clerk.engine.api import Executor, problems_building
from clerk.engine.model import (
    TaskConfig,
    interrupt_key,
    parse_on_interrupt,
    parse_process_limit,
    written_key,
)
from clerk.errors import ClerkError, Location, Problem, SpecError
from clerk.plugins.manager import Registry
from clerk.rules.fileinfo import FIELD_SAMPLES, STANDARD_FIELDS
from clerk.rules.loader import (
    LoadedRuleSet,
    SourcedRule,
    WorkflowSource,
    cron_problem,
    load_rules,
)
from clerk.rules.model import AllNode, AnyNode, FilterNode, MatchNode, NotNode, Rule, RuleSet
from clerk.rules.suggest import hint, unknown
from clerk.rules.templates import spec_problem, template_specs
from clerk.units import parse_duration, parse_size
from clerk.yamlsrc import key_location, node_location, value_location

_CPU = re.compile(r"^\d+(\.\d+)?m?$")  # 2, 0.5 or Kubernetes-style 500m


def load_and_check(
    config: Config,
    registry: Registry,
    *,
    check_paths: bool = True,
    root_overrides: dict[str, str] | None = None,
) -> tuple[RuleSet, list[Problem]]:
    """Load `config.rule_files`, run every check; problems sorted by location."""
    files, problems = _rule_files(config)
    ruleset, load_problems = load_rules(files, registry, root_overrides=root_overrides)
    problems += load_problems
    problems += check_rules(ruleset, registry, check_paths=check_paths)
    problems.sort(key=lambda p: (p.where, p.message))
    return ruleset, problems


def _rule_files(config: Config) -> tuple[list[Path], list[Problem]]:
    """The rule files to read, and a problem for each configured source that has none."""
    sources = [Path(os.path.expandvars(str(p))).expanduser() for p in config.settings.rules] or [
        config.paths.rules_dir
    ]
    problems: list[Problem] = []
    for source in sources:
        if source.is_dir():
            if not any(source.glob("*.yaml")) and not any(source.glob("*.yml")):
                problems.append(_no_rule_files(source))
        elif not source.exists():
            if source.suffix in (".yaml", ".yml"):
                problems.append(Problem(Location(str(source)), "rule file does not exist"))
            else:
                problems.append(_no_rule_files(source))
    files = [f for f in config.rule_files if f.exists() and not f.is_dir()]
    return files, problems


def _no_rule_files(directory: Path) -> Problem:
    return Problem(
        Location(str(directory)), f"no rule files found in {directory} (run `clerk init`)"
    )


def check_rules(ruleset: RuleSet, registry: Registry, *, check_paths: bool = True) -> list[Problem]:
    """Semantic checks of a loaded rule set (see the module docstring)."""
    checker = _Checker(ruleset, registry)
    checker.check_roots(check_paths)
    for rule in ruleset.rules:
        checker.check_rule(rule)
    checker.check_duplicate_rules()
    workflows = _WorkflowChecker(checker.problems, registry.executors, ruleset)
    for source in _workflow_sources(ruleset):
        workflows.check(source)
    return checker.problems


def _workflow_sources(ruleset: RuleSet) -> list[WorkflowSource]:
    if isinstance(ruleset, LoadedRuleSet):
        return list(ruleset.workflow_sources.values())
    sources = []  # a rule set built in code: no positions, infer the form
    for name, definition in ruleset.workflows.items():
        kind = definition.get("kind") if isinstance(definition, dict) else None
        form = kind if kind in ("Task", "Workflow") else "compact"
        file = f"<workflow {name}>"
        sources.append(WorkflowSource(name, file, definition, str(form), Location(file)))
    return sources


def _spot(rule: Rule, key: str, default: Location | None = None) -> Location:
    """Where part `key` of `rule` was written, as precisely as is known."""
    if isinstance(rule, SourcedRule) and key in rule.locations:
        return rule.locations[key]
    return default or rule.where


def _fields_of(node: MatchNode) -> tuple[set[str], set[str]]:
    """Template fields a match tree provides: (always when it matches, possibly)."""
    if isinstance(node, FilterNode):
        provided = set(node.filter.provides())
        return provided, set(provided)
    if isinstance(node, NotNode):
        return set(), set()  # a negated filter matched nothing, so it gave no fields
    parts = [_fields_of(child) for child in node.children]
    possible = set().union(*(p for _, p in parts))
    if isinstance(node, AllNode):
        return set().union(*(g for g, _ in parts)), possible
    # any: only the fields every alternative provides are sure to be there
    always = set.intersection(*(g for g, _ in parts)) if parts else set()
    return always, possible


def _filters(node: MatchNode) -> Iterable[FilterNode]:
    if isinstance(node, FilterNode):
        yield node
    elif isinstance(node, NotNode):
        yield from _filters(node.child)
    elif isinstance(node, AllNode | AnyNode):
        for child in node.children:
            yield from _filters(child)


class _Checker:
    def __init__(self, ruleset: RuleSet, registry: Registry):
        self.ruleset = ruleset
        self.registry = registry
        self.problems: list[Problem] = []
        loaded = ruleset if isinstance(ruleset, LoadedRuleSet) else None
        self.broken_roots = loaded.broken_roots if loaded else set()
        self.path_locations = loaded.root_path_locations if loaded else {}

    def error(self, where: Location, message: str, severity: str = "error") -> None:
        self.problems.append(Problem(where, message, severity))

    def plugin_call(
        self, where: Location, what: str, call: Callable[[], Iterable[str]]
    ) -> list[str]:
        """Call a plugin's method; a bug in it becomes a problem, never a crash."""
        try:
            return [item for item in call() if isinstance(item, str)]
        except Exception as exc:
            self.error(where, f"{what} failed: {type(exc).__name__}: {exc}")
            return []

    # --- roots --------------------------------------------------------------------------
    def check_roots(self, check_paths: bool) -> None:
        by_path: dict[str, str] = {}
        for root in self.ruleset.roots:
            where = self.path_locations.get(root.name) or root.where or Location("<roots>")
            first = by_path.setdefault(root.path, root.name)
            if first != root.name:
                self.error(
                    where, f"roots {first!r} and {root.name!r} have the same path {root.path}"
                )
            if check_paths:
                self.check_root_path(root.name, root.path, root.watch, where)

    def check_root_path(self, name: str, path: str, watch: bool, where: Location) -> None:
        if os.path.isdir(path):
            return
        if os.path.exists(path):
            self.error(where, f"root {name!r}: {path} is not a directory")
        elif watch:
            self.error(where, f"root {name!r}: {path} does not exist (create it or fix the path)")
        else:
            self.error(where, f"root {name!r}: {path} does not exist yet", "warning")

    # --- rules --------------------------------------------------------------------------
    def check_duplicate_rules(self) -> None:
        first: dict[str, Location] = {}
        for rule in self.ruleset.rules:
            if not rule.name:
                continue
            where = _spot(rule, "name")
            if rule.name in first:
                self.error(
                    where, f"duplicate rule name {rule.name!r} (first at {first[rule.name]})"
                )
            else:
                first[rule.name] = where

    def check_rule(self, rule: Rule) -> None:
        for index, name in enumerate(rule.roots):
            if name not in self.ruleset.roots and name not in self.broken_roots:
                known = [*self.ruleset.roots.names, *self.broken_roots]
                self.error(_spot(rule, f"in.{index}"), unknown("root", name, known))
        always, possible = self.rule_fields(rule)
        failed = rule.failed_fields if isinstance(rule, SourcedRule) else frozenset()
        fields = _Fields(always, possible, failed)
        for index, step in enumerate(rule.actions):
            where = _spot(rule, f"actions.{index}.value", step.where)
            what = f"action {step.name!r}"
            for template in self.plugin_call(where, what, step.action.templates):
                self.check_template(template, fields, where)
            for template in self.plugin_call(where, what, step.action.path_templates):
                self.check_destination(template, where)
            self.check_run(step.name, step.action, where)
        if rule.group_by and "{" in rule.group_by:
            self.check_template(rule.group_by, fields, _spot(rule, "group_by"))

    def rule_fields(self, rule: Rule) -> tuple[set[str], set[str]]:
        for node in _filters(rule.match):
            what = f"filter {node.name!r}"
            for namespace in self.plugin_call(node.where, what, node.filter.namespaces):
                if namespace not in self.registry.classifiers:
                    self.error(
                        node.where,
                        f"{node.name} reads {namespace}.*, but "
                        + unknown("classifier", namespace, self.registry.classifiers),
                    )
            reads = getattr(node.filter, "attributes", frozenset)  # duck-typed plugin filters
            attributes = self.plugin_call(node.where, what, reads)
            for name in sorted(attributes or ()):
                self.check_attribute_name(name, node.where)
        try:
            return _fields_of(rule.match)
        except Exception as exc:  # a plugin's provides() is broken
            self.error(rule.where, f"a filter's provides() failed: {type(exc).__name__}: {exc}")
            return set(), set()

    def check_template(self, template: str, fields: _Fields, where: Location) -> None:
        try:
            specs = template_specs(template)
        except (ClerkError, ValueError) as exc:
            self.error(where, f"bad template {template!r}: {exc}")
            return
        for name, spec in specs:
            # a regex group is text; a classifier attribute's type is the classifier's
            sample = FIELD_SAMPLES.get(name, None if "." in name else "text")
            problem = spec_problem(name, spec, sample) if spec and sample is not None else None
            if problem:
                self.error(where, problem)
        for name in dict.fromkeys(name for name, _ in specs):
            if name in STANDARD_FIELDS or name in fields.always:
                continue
            if name in fields.possible:
                self.error(
                    where,
                    f"field {{{name}}} comes from a filter under any:, so it may have no value",
                    "warning",
                )
            elif "." in name:
                self.check_attribute_field(name, template, where)
            elif name not in fields.failed:
                choices = [*STANDARD_FIELDS, *fields.possible, *fields.failed]
                self.error(where, f"unknown field {{{name}}} in {template!r}{hint(name, choices)}")

    def check_attribute_name(self, name: str, where: Location) -> None:
        """An attribute a filter reads: a misspelt one would silently never match."""
        namespace, _, attribute = name.partition(".")
        classifier = self.registry.classifiers.get(namespace)
        attributes = getattr(classifier, "attributes", None) or frozenset()
        if classifier is not None and attributes and attribute not in attributes:
            self.error(
                where,
                f"classifier {namespace!r} has no attribute {attribute!r}"
                f"{hint(attribute, attributes)}",
            )

    def check_attribute_field(self, name: str, template: str, where: Location) -> None:
        namespace, _, attribute = name.partition(".")
        classifier = self.registry.classifiers.get(namespace)
        if classifier is None:
            self.error(
                where,
                f"unknown field {{{name}}} in {template!r}: "
                + unknown("classifier", namespace, self.registry.classifiers),
            )
            return
        attributes = getattr(classifier, "attributes", None) or frozenset()
        if attributes and attribute not in attributes:
            self.error(
                where,
                f"unknown field {{{name}}}: classifier {namespace!r} has no attribute"
                f" {attribute!r}{hint(attribute, attributes)}",
            )

    def check_destination(self, template: str, where: Location) -> None:
        """A destination whose fixed part is absolute must start inside a root."""
        fixed = template.split("{", 1)[0]
        if not fixed.startswith(("~", "/")):
            return  # relative: rendered next to the file, checked when rendered
        fixed = os.path.expanduser(fixed)
        if not os.path.isabs(fixed):
            return
        # with fields, only the directories before the first field are certain
        directory = fixed if "{" not in template else fixed[: fixed.rfind("/") + 1]
        directory = os.path.normpath(directory)
        if self.ruleset.roots.locate(directory) is None:
            names = ", ".join(self.ruleset.roots.names) or "none declared"
            self.error(
                where,
                f"destination {template!r} is outside every root ({directory} is in none of:"
                f" {names})",
            )

    def check_run(self, name: str, action: Any, where: Location) -> None:
        if name != "run":
            return
        workflow = getattr(action, "workflow", None) or getattr(action, "value", None)
        if isinstance(workflow, dict):
            workflow = workflow.get("workflow")
        if not isinstance(workflow, str) or "{" in workflow:
            return
        if workflow not in self.ruleset.workflows:
            self.error(where, unknown("workflow", workflow, self.ruleset.workflows))


@dataclass(frozen=True)
class _Fields:
    always: set[str]
    possible: set[str]
    failed: frozenset[str]  # fields a filter that failed to load may have given


# --- workflows ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dialect:
    """Key names of one workflow form: compact (`depends_on`) or resource (`dependsOn`)."""

    depends_on: str
    retry: str
    retry_keys: tuple[str, ...]
    retry_max: str
    task_keys: tuple[str, ...]
    workflow_keys: tuple[str, ...]


# the engine's own task keys; the executor's are its class's `keys`
_TASK_KEYS = ("name", "executor", "timeout", "resources", "description", "fallback")
_TIMER = ("schedule", "every")  # a workflow the daemon starts on a cron or an interval
COMPACT = _Dialect(
    depends_on="depends_on",
    retry="retry",
    retry_keys=("max", "backoff", "factor", "max_backoff", "jitter"),
    retry_max="max",
    task_keys=(*_TASK_KEYS, "depends_on", "retry", "on_failure", interrupt_key(False)),
    workflow_keys=("tasks", "parallelism", "description", "timeout", *_TIMER, "on_failure"),
)
RESOURCE = _Dialect(
    depends_on="dependsOn",
    retry="retryPolicy",
    retry_keys=("maxRetries", "backoff", "factor", "maxBackoff", "jitter"),
    retry_max="maxRetries",
    task_keys=(
        *_TASK_KEYS, "dependsOn", "retryPolicy", "onFailure", "taskRef",
        interrupt_key(True),
    ),
    workflow_keys=(
        "tasks", "parallelism", "description", "timeout", "schedule", "every", "onFailure",
        "executor", "resources", "retryPolicy",
    ),
)  # fmt: skip


class _WorkflowChecker:
    """Validates workflow definitions in either form, pointing into their YAML."""

    def __init__(self, problems: list[Problem], executors: Mapping[str, type], ruleset: RuleSet):
        self.problems = problems
        self.executor_classes = dict(executors)  # name -> the class registered under it
        self.executors = list(executors)
        self.ruleset = ruleset
        self.file = "<workflows>"
        loaded = ruleset if isinstance(ruleset, LoadedRuleSet) else None
        sources = loaded.workflow_sources if loaded else {}
        self.task_resources = sorted(n for n, s in sources.items() if s.form == "Task")

    def error(self, where: Location, message: str, severity: str = "error") -> None:
        self.problems.append(Problem(where, message, severity))

    def key_at(self, node: Any, key: Any) -> Location:
        return key_location(self.file, node, key)

    def value_at(self, node: Any, key: Any) -> Location:
        return value_location(self.file, node, key)

    def check(self, source: WorkflowSource) -> None:
        self.file = source.file
        node = source.node
        if not isinstance(node, dict):
            self.error(source.where, f"workflow {source.name!r} wants a mapping with tasks:")
            return
        if source.form == "compact":
            self.check_workflow(node, COMPACT, source.where)
            return
        spec = node.get("spec")
        if not isinstance(spec, dict):
            self.error(source.where, f"{source.form} {source.name!r} needs a spec: mapping")
        elif source.form == "Task":
            self.check_task(spec, RESOURCE, name=None)
        else:
            self.check_workflow(spec, RESOURCE, self.key_at(node, "spec"))

    def check_keys(self, node: Any, allowed: Sequence[str], what: str) -> None:
        # the engine's model is still open, so an unknown key is a warning, not an error
        for key in node:
            if not (isinstance(key, str) and key in allowed):
                self.error(self.key_at(node, key), unknown(what, key, allowed), "warning")

    def check_workflow(self, node: Any, dialect: _Dialect, where: Location) -> None:
        self.check_keys(node, dialect.workflow_keys, "workflow key")
        self.number(node, "parallelism", minimum=1, whole=True)
        self.duration(node, "timeout")
        self.check_schedule(node)
        tasks = node.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            self.error(
                self.value_at(node, "tasks") if "tasks" in node else where,
                "a workflow needs tasks: (a non-empty list of tasks)",
            )
            return
        named: dict[str, Any] = {}
        for index, task in enumerate(tasks):
            if not isinstance(task, dict):
                self.error(
                    self.key_at(tasks, index), "a task is a mapping with name: and executor:"
                )
                continue
            name = self.check_task(task, dialect, name=index)
            if name is not None and name in named:
                self.error(self.value_at(task, "name"), f"duplicate task name {name!r}")
            elif name is not None:
                named[name] = task
        self.check_dependencies(named, dialect)

    def check_task(self, task: Any, dialect: _Dialect, name: int | None) -> str | None:
        """Check one task; return its name (tasks in a workflow need one)."""
        resource = dialect is RESOURCE
        self.check_keys(task, (*dialect.task_keys, *self.executor_keys(task, resource)),
                        "task key")  # fmt: skip
        task_name = None
        if name is not None:
            task_name = task.get("name")
            if not isinstance(task_name, str) or not task_name:
                where = self.value_at(task, "name") if "name" in task else self.node_at(task)
                self.error(where, "a task needs a name:")
                task_name = None
        if "taskRef" in task:
            self.check_task_ref(task)
        else:
            self.check_executor(task, resource)
        self.duration(task, "timeout")
        self.check_retry(task, dialect)
        self.check_on_interrupt(task, interrupt_key(dialect is RESOURCE))
        self.check_resources(task)
        return task_name

    def executor_keys(self, task: Any, resource: bool) -> list[str]:
        """The task keys its executor reads, as the task's form writes them; for a task
        whose executor is not known, those of every executor (it gets one error)."""
        executor = task.get("executor")
        cls = self.executor_classes.get(executor) if isinstance(executor, str) else None
        classes = [cls] if cls is not None else list(self.executor_classes.values())
        return [written_key(k, resource) for c in classes for k in getattr(c, "keys", ()) or ()]

    def node_at(self, node: Any) -> Location:
        return node_location(self.file, node)

    def check_task_ref(self, task: Any) -> None:
        ref = task["taskRef"]
        if not isinstance(ref, str) or ref not in self.task_resources:
            self.error(self.value_at(task, "taskRef"), unknown("Task", ref, self.task_resources))

    def check_executor(self, task: Any, resource: bool) -> None:
        executor = task.get("executor")
        if "executor" not in task:
            self.error(
                self.node_at(task), f"a task needs an executor: ({', '.join(self.executors)})"
            )
            return
        if not isinstance(executor, str) or executor not in self.executor_classes:
            self.error(
                self.value_at(task, "executor"), unknown("executor", executor, self.executors)
            )
            return
        # the class registered under the name checks its own keys (a plugin's `shell` too)
        cls = self.executor_classes[executor]
        config = TaskConfig(task, executor=executor, file=self.file, resource=resource)
        own_check = getattr(cls, "check", None) if issubclass(cls, Executor) else None
        try:
            problems = own_check(config) if own_check else problems_building(cls, config)
        except Exception as exc:  # a plugin's bug must not crash `clerk check`
            problems = [Problem(config.where(), f"executor {executor!r} failed on this task:"
                                                f" {type(exc).__name__}: {exc}")]  # fmt: skip
        self.problems.extend(problems)

    def check_retry(self, task: Any, dialect: _Dialect) -> None:
        retry = task.get(dialect.retry)
        if dialect.retry not in task:
            return
        if not isinstance(retry, dict):
            self.error(
                self.value_at(task, dialect.retry),
                f"{dialect.retry}: wants a mapping like {{{dialect.retry_max}: 3, backoff: 2s}}",
            )
            return
        self.check_keys(retry, dialect.retry_keys, f"{dialect.retry} key")
        self.number(retry, dialect.retry_max, minimum=0, whole=True)
        self.duration(retry, "backoff")
        self.duration(retry, "max_backoff" if dialect is COMPACT else "maxBackoff")
        self.number(retry, "factor", minimum=1, whole=False)

    def check_on_interrupt(self, task: Any, key: str) -> None:
        """What the model would make of it (one parser: the engine's)."""
        if key in task:
            try:
                parse_on_interrupt(task[key])
            except SpecError as exc:
                self.error(self.value_at(task, key), f"{key}: {exc}")

    def check_resources(self, task: Any) -> None:
        resources = task.get("resources")
        if "resources" not in task:
            return
        if not isinstance(resources, dict):
            self.error(
                self.value_at(task, "resources"),
                "resources: wants a mapping like {cpu: 1, memory: 512Mi}",
            )
            return
        self.check_keys(resources, ("cpu", "memory", "processes"), "resource")
        cpu = resources.get("cpu")
        if "cpu" in resources and not _valid_cpu(cpu):
            self.error(
                self.value_at(resources, "cpu"),
                f"cpu: wants a number like 1, 0.5 or 500m, got {cpu!r}",
            )
        if "memory" in resources:
            memory = resources["memory"]
            try:
                if not isinstance(memory, str | int) or isinstance(memory, bool):
                    raise SpecError(f"expected a size like 512Mi or 2GB, got {memory!r}")
                parse_size(memory)
            except SpecError as exc:
                self.error(self.value_at(resources, "memory"), f"memory: {exc}")
        if "processes" in resources:
            try:
                parse_process_limit(resources["processes"])
            except SpecError as exc:
                self.error(self.value_at(resources, "processes"), str(exc))

    def number(self, node: Any, key: str, *, minimum: float, whole: bool) -> None:
        if key not in node:
            return
        value = node[key]
        kinds = (int,) if whole else (int, float)
        if not isinstance(value, kinds) or isinstance(value, bool) or value < minimum:
            kind = "a whole number" if whole else "a number"
            self.error(
                self.value_at(node, key), f"{key}: wants {kind} >= {minimum:g}, got {value!r}"
            )

    def check_schedule(self, node: Any) -> None:
        """`schedule:` (cron) or `every:` (an interval): the daemon starts runs on them."""
        if "schedule" in node:
            schedule = node["schedule"]
            problem = (
                cron_problem(schedule)
                if isinstance(schedule, str)
                else f"expected a cron expression like '*/5 * * * *', got {schedule!r}"
            )
            if problem:
                self.error(self.value_at(node, "schedule"), f"schedule: {problem}")
            if "every" in node:
                both = "a workflow has schedule: or every:, not both"
                self.error(self.key_at(node, "every"), both)
        self.duration(node, "every")
        try:
            every = parse_duration(node["every"]) if "every" in node else None
        except (SpecError, TypeError, ValueError):
            every = None  # reported just above
        if every is not None and every <= 0:
            self.error(self.value_at(node, "every"), "every: wants a duration above 0")

    def duration(self, node: Any, key: str) -> None:
        if key not in node:
            return
        value = node[key]
        try:
            if not isinstance(value, str | int | float):
                raise SpecError(f"expected a duration like 30s, 5m or 2h, got {value!r}")
            parse_duration(value)
        except SpecError as exc:
            self.error(self.value_at(node, key), f"{key}: {exc}")

    # --- the DAG ------------------------------------------------------------------------
    def check_dependencies(self, tasks: dict[str, Any], dialect: _Dialect) -> None:
        key = dialect.depends_on
        graph: dict[str, list[str]] = {}
        for name, task in tasks.items():
            graph[name] = []
            if key not in task:
                continue
            deps = task[key]
            items = [deps] if isinstance(deps, str) else deps
            if not isinstance(items, list):
                self.error(self.value_at(task, key), f"{key}: wants a task name or a list of them")
                continue
            for index, dep in enumerate(items):
                where = (
                    self.value_at(task, key) if isinstance(deps, str) else self.key_at(deps, index)
                )
                if not isinstance(dep, str) or dep not in tasks:
                    self.error(where, unknown("task", dep, [n for n in tasks if n != name]))
                else:
                    graph[name].append(dep)
        for cycle in _cycles(graph):
            task = tasks[cycle[0]]
            self.error(self.value_at(task, key), f"dependency cycle: {' -> '.join(cycle)}")


def _valid_cpu(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return False
    text = str(value).strip()
    return bool(_CPU.match(text)) and float(text.rstrip("m")) > 0


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Each distinct cycle once, as [a, b, ..., a], found by an iterative DFS."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    for start in graph:
        if state.get(start):
            continue
        path: list[str] = [start]
        stack = [iter(graph[start])]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    found.append(cycle)
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(graph[nxt]))
    return found
