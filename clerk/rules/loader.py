"""Load rule files into a `RuleSet`, reporting every problem at its file:line:col.

`load_rules` never raises for anything a user wrote: a file that is not YAML, a document
that is not a mapping, a wrong type anywhere, an unknown filter or action, a plugin whose
constructor rejects a value. It collects each as a `Problem` and goes on, so `clerk check`
shows them all at once.

Choices made here (DESIGN.md is silent on them):
- A relative root path is relative to the directory of the rule file that declares it;
  a `--root NAME=PATH` override is relative to the current directory.
- Overriding a root also rebases action values that point inside it: with
  `--root organized=/tmp/demo`, `move: ~/Organized/{name}` becomes
  `move: /tmp/demo/{name}` when `organized` was declared as `~/Organized`. Without this
  an override would leave every destination outside every root.
- A rule with an error is loaded disabled, and a filter that could not be built is
  replaced by a node that matches nothing; a caller that ignores errors still acts on
  nothing it was not told to.
- `actions: []` is allowed (a rule that only stops later rules); a missing `actions:`
  is an error, as it is usually a mistake.
- Workflows are kept as plain values (compact definitions, or whole resource documents
  with `kind`); `clerk.rules.check` validates them until the engine defines their model.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clerk.errors import ClerkError, Location, Problem, SpecError
from clerk.fileops.types import CONFLICT_POLICIES
from clerk.plugins.manager import Registry
from clerk.rules.model import (
    DEFAULT_IGNORE,
    DEFAULT_TRIGGERS,
    TRIGGERS,
    ActionStep,
    AllNode,
    AnyNode,
    FilterNode,
    MatchNode,
    NotNode,
    Root,
    RootSet,
    Rule,
    RuleSet,
)
from clerk.rules.patterns import PatternError, globs_pattern, group_names
from clerk.rules.suggest import hint, unknown
from clerk.yamlsrc import (
    brief,
    key_location,
    load_documents,
    node_location,
    offset_location,
    plain,
    read_text,
    value_location,
)

TOP_KEYS = ("roots", "rules", "workflows")
ROOT_KEYS = ("path", "recursive", "watch", "poll", "settle", "ignore", "follow_symlinks")
RULE_KEYS = (
    "name", "in", "on", "match", "actions", "continue", "schedule", "every", "after",
    "keep_newest", "group_by", "enabled", "description",
)  # fmt: skip
RESOURCE_KEYS = ("apiVersion", "kind", "metadata", "spec")
RESOURCE_KINDS = ("Task", "Workflow")
COMBINATORS = ("all", "any", "not")

# Words from organize, Hazel and friends that mean one of ours.
_RULE_ALIASES = {
    "filters": "match", "filter": "match", "locations": "in", "location": "in",
    "root": "in", "roots": "in", "when": "match", "do": "actions", "action": "actions",
    "triggers": "on", "cron": "schedule", "interval": "every", "stop": "continue",
}  # fmt: skip
_ROOT_ALIASES = {"subfolders": "recursive", "exclude": "ignore", "delay": "settle"}
_TOP_ALIASES = {"locations": "roots", "rule": "rules", "workflow": "workflows"}

PATH_MAX = 4096  # Linux's limit on a path, in bytes
_ROOT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ENV_VAR = re.compile(r"\$(?:\{([^}]*)\}|(\w+))")


@dataclass
class SourcedRule(Rule):
    """A `Rule` that remembers where its parts were written, for `clerk check`.

    `locations` keys: "name", "in", "in.<i>", "on", "match", "schedule", "group_by",
    "actions.<i>.value" (i counts the steps that were built).
    """

    locations: dict[str, Location] = field(default_factory=dict, compare=False, repr=False)
    #: fields a filter that could not be built may have given (its pattern's named groups):
    #: `clerk check` does not call them unknown, and reports every other unknown field
    failed_fields: frozenset[str] = frozenset()


@dataclass(frozen=True)
class WorkflowSource:
    """Where a workflow was written: its YAML node (ruamel, with positions) and form."""

    name: str
    file: str
    node: Any
    form: str  # "compact" | "Workflow" | "Task"
    where: Location


@dataclass
class LoadedRuleSet(RuleSet):
    """A `RuleSet` plus what `clerk check` needs to point at the right lines."""

    workflow_sources: dict[str, WorkflowSource] = field(default_factory=dict, compare=False)
    root_path_locations: dict[str, Location] = field(default_factory=dict, compare=False)
    broken_roots: set[str] = field(default_factory=set, compare=False)


def load_rules(
    files: Sequence[Path],
    registry: Registry,
    *,
    root_overrides: Mapping[str, str] | None = None,
) -> tuple[RuleSet, list[Problem]]:
    """Read rule files in order and build one `RuleSet`; return it with every problem.

    Roots and workflows merge by name across files (a second definition is a problem),
    rules are concatenated in file order. The rule set is only fit to act on when no
    problem has severity "error".
    """
    with _collector_paused():
        return _load_rules(files, registry, root_overrides or {})


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A big rule file makes a million objects and no reference cycles; the cyclic
    collector would walk all of them again every few thousand (half of the time of
    checking 20,000 rules). Nothing is lost: it runs again afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_rules(
    files: Sequence[Path], registry: Registry, root_overrides: Mapping[str, str]
) -> tuple[RuleSet, list[Problem]]:
    state = _State(registry)
    readers: list[_DocReader] = []
    for path in files:
        text, problems = read_text(Path(path))
        docs, more = ([], []) if text is None else load_documents(Path(path), text)
        state.problems.extend([*problems, *more])
        state.sources[str(path)] = text or ""
        base_dir = os.path.dirname(os.path.abspath(path))
        readers.extend(_DocReader(state, str(path), base_dir, doc) for doc in docs)
    # Roots first, from every file: rules may name roots declared in a later file, and
    # overrides must be known before action values are rebased.
    _each(readers, _DocReader.check_top)
    _each(readers, _DocReader.read_roots)
    state.apply_overrides(root_overrides)
    _each(readers, _DocReader.read_rules)
    _each(readers, _DocReader.read_workflows)
    state.resolve_missing_in()
    ruleset = LoadedRuleSet(
        roots=RootSet(state.roots.values()),
        rules=list(state.rules),
        workflows=state.workflows,
        files=[Path(f) for f in files],
        workflow_sources=state.workflow_sources,
        root_path_locations=state.root_path_locations,
        broken_roots=state.broken_roots,
    )
    return ruleset, state.problems


def _each(readers: list[_DocReader], step: Callable[[_DocReader], None]) -> None:
    for reader in readers:
        try:
            step(reader)
        except RecursionError:  # absurdly deep nesting: report it, keep the rest
            reader.error(Location(reader.file), "the document is nested too deeply")


def expand_path(text: str, base_dir: str) -> tuple[str | None, str | None]:
    """Expand `~` and `$VARS`, make absolute (against `base_dir`), normalize.

    Returns (path, None) or (None, what is wrong).
    """
    if "\0" in text:
        return None, "a path cannot contain a NUL character"
    if len(text) > PATH_MAX:  # and expanding `${${${...` takes time quadratic in its length
        return None, f"a path is at most {PATH_MAX} characters, this one has {len(text)}"
    for braced, bare in _ENV_VAR.findall(text):
        name = braced or bare
        if name not in os.environ:
            return None, f"environment variable ${name} is not set"
    expanded = os.path.expanduser(os.path.expandvars(text.strip()))
    if expanded.startswith("~"):
        return None, f"cannot expand {expanded.split('/')[0]!r} (no such user)"
    if not os.path.isabs(expanded):
        expanded = os.path.join(base_dir, expanded)
    path = os.path.normpath(expanded)
    if path.startswith("//"):  # POSIX keeps a leading "//"; clerk compares plain paths
        path = "/" + path.lstrip("/")
    return path, None


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _strings(value: Any) -> Iterator[str]:
    """Every string in a YAML value, keys and items included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _show(value: Any) -> str:
    return brief(value)


def _prefixed(name: str, message: str) -> str:
    """`"size: <message>"` unless the message already starts with the name."""
    return message if message.startswith(name) else f"{name}: {message}"


class _State:
    """What every document of one `load_rules` call adds to."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.problems: list[Problem] = []
        self.declared_roots: dict[str, Location] = {}
        self.roots: dict[str, Root] = {}
        self.broken_roots: set[str] = set()
        self.root_path_locations: dict[str, Location] = {}
        self.rules: list[SourcedRule] = []
        self.without_in: list[SourcedRule] = []
        self.workflows: dict[str, Any] = {}
        self.workflow_sources: dict[str, WorkflowSource] = {}
        self.rebase_map: dict[str, str] = {}  # original root path -> overridden path
        self.sources: dict[str, str] = {}  # file -> its text, to point inside a scalar
        self._lines: dict[str, list[str]] = {}

    def line(self, file: str, number: int) -> str | None:
        """Line `number` (1-based) of a rule file as it was read."""
        if file not in self._lines:
            self._lines[file] = self.sources.get(file, "").splitlines()
        lines = self._lines[file]
        return lines[number - 1] if 0 < number <= len(lines) else None

    def error(self, where: Location, message: str, severity: str = "error") -> None:
        self.problems.append(Problem(where, message, severity))

    def apply_overrides(self, overrides: Mapping[str, str]) -> None:
        for name, raw in overrides.items():
            where = Location("--root")
            if name not in self.declared_roots:
                self.error(where, f"--root {name}={raw}: " + unknown("root", name, self.roots))
                continue
            path, problem = expand_path(str(raw), os.getcwd())
            root = self.roots.get(name)
            if path is None:
                self.error(where, f"--root {name}={raw}: {problem}")
            elif root is not None:  # a broken root already has its own problem
                if root.path != path:
                    self.rebase_map[root.path] = path
                self.roots[name] = dataclasses.replace(root, path=path)
                self.root_path_locations[name] = where

    def rebase(self, value: Any) -> Any:
        """Move paths that point inside an overridden root along with it."""
        if not self.rebase_map:
            return value
        if isinstance(value, str):
            return self._rebase_text(value)
        if isinstance(value, list):
            return [self.rebase(v) for v in value]
        if isinstance(value, dict):
            return {k: self.rebase(v) for k, v in value.items()}
        return value

    def _rebase_text(self, text: str) -> str:
        if not text.startswith(("~", "/")):
            return text
        expanded = os.path.expanduser(text)
        inside = [old for old in self.rebase_map if _within(expanded, old)]
        if not inside:
            return text
        old = max(inside, key=len)  # the most specific root
        rest = expanded[len(old.rstrip("/")) :]
        return (self.rebase_map[old].rstrip("/") + rest) or "/"

    def add_workflow(self, source: WorkflowSource, definition: Any) -> None:
        first = self.workflow_sources.get(source.name)
        if first is not None:
            self.error(
                source.where, f"workflow {source.name!r} is already defined at {first.where}"
            )
            return
        self.workflows[source.name] = definition
        self.workflow_sources[source.name] = source

    def resolve_missing_in(self) -> None:
        """`in:` may be left out when there is exactly one root (in all files together)."""
        names = list(self.declared_roots)
        for rule in self.without_in:
            if len(names) == 1:
                rule.roots = (names[0],)
                continue
            if names:
                detail = f"there are {len(names)} roots ({', '.join(names)})"
            else:
                detail = "no roots are declared (add them under `roots:`)"
            self.error(rule.where, f"rule {rule.name!r} needs `in:` naming its root(s): {detail}")
            rule.enabled = False


class _DocReader:
    """Reads one YAML document of one file; positions come from its ruamel nodes."""

    def __init__(self, state: _State, file: str, base_dir: str, doc: Any):
        self.state = state
        self.registry = state.registry
        self.file = file
        self.base_dir = base_dir
        self.doc = doc
        self.is_mapping = isinstance(doc, dict)
        self.is_resource = self.is_mapping and ("kind" in doc or "apiVersion" in doc)
        self._failed_fields: set[str] = set()  # of the rule being read

    # --- positions and problems ---------------------------------------------------------
    def key_at(self, node: Any, key: Any) -> Location:
        return key_location(self.file, node, key)

    def value_at(self, node: Any, key: Any) -> Location:
        """The value's position; an empty value (`key:`) points at its key instead."""
        return value_location(self.file, node, key)

    def node_at(self, node: Any) -> Location:
        return node_location(self.file, node)

    def error(self, where: Location, message: str, severity: str = "error") -> None:
        self.state.error(where, message, severity)

    def check_keys(
        self, node: Any, allowed: Sequence[str], what: str, aliases: Mapping[str, str]
    ) -> None:
        for key in node:
            if not (isinstance(key, str) and key in allowed):
                self.error(self.key_at(node, key), unknown(what, key, allowed, aliases))

    # --- typed values -------------------------------------------------------------------
    def opt_bool(self, node: Any, key: str, default: bool) -> bool:
        if key not in node:
            return default
        value = node[key]
        if isinstance(value, bool):
            return value
        self.error(self.value_at(node, key), f"{key}: wants true or false, got {_show(value)}")
        return default

    def opt_str(self, node: Any, key: str, *, non_empty: bool = True) -> str | None:
        if key not in node:
            return None
        value = node[key]
        if isinstance(value, str) and (value.strip() or not non_empty):
            return str(value)
        self.error(self.value_at(node, key), f"{key}: wants a text value, got {_show(value)}")
        return None

    def opt_int(self, node: Any, key: str, minimum: int) -> int | None:
        if key not in node:
            return None
        value = node[key]
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return int(value)
        self.error(
            self.value_at(node, key),
            f"{key}: wants a whole number >= {minimum}, got {_show(value)}",
        )
        return None

    def opt_duration(self, node: Any, key: str, *, positive: bool = False) -> float | None:
        if key not in node:
            return None
        from clerk.units import parse_duration

        value = node[key]
        try:
            if not isinstance(value, str | int | float):
                raise SpecError(f"expected a duration like 30s, 5m or 2h, got {_show(value)}")
            seconds = parse_duration(value)
            if positive and seconds <= 0:
                raise SpecError(f"wants a duration greater than zero, got {_show(value)}")
        except SpecError as exc:
            self.error(self.value_at(node, key), f"{key}: {exc}")
            return None
        return seconds

    def str_items(self, node: Any, key: str, what: str) -> list[tuple[str, Location]] | None:
        """A string or a list of strings, each with its position; None after a problem."""
        value = node[key]
        if isinstance(value, str) and value:
            return [(str(value), self.value_at(node, key))]
        if not isinstance(value, list):
            self.error(
                self.value_at(node, key),
                f"{key}: wants {what} or a list of them, got {_show(value)}",
            )
            return None
        items: list[tuple[str, Location]] = []
        for index, item in enumerate(value):
            if isinstance(item, str) and item:
                items.append((str(item), self.key_at(value, index)))
            else:
                self.error(self.key_at(value, index), f"{key}: wants {what}, got {_show(item)}")
                return None
        return items

    # --- top level ----------------------------------------------------------------------
    def check_top(self) -> None:
        if not self.is_mapping:
            self.error(
                self.node_at(self.doc),
                "a rule file is a mapping with roots:, rules: and workflows:"
                f" (or a resource with apiVersion: and kind:), got {_show(self.doc)}",
            )
        elif not self.is_resource:
            self.check_keys(self.doc, TOP_KEYS, "top-level key", _TOP_ALIASES)

    # --- roots --------------------------------------------------------------------------
    def read_roots(self) -> None:
        if not self.is_mapping or self.is_resource or self.doc.get("roots") is None:
            return
        roots = self.doc["roots"]
        if not isinstance(roots, dict):
            self.error(
                self.value_at(self.doc, "roots"),
                "roots: wants a mapping of names to paths, like `downloads: ~/Downloads`",
            )
            return
        for name in roots:
            self.read_root(roots, name)

    def read_root(self, roots: Any, name: Any) -> None:
        where = self.key_at(roots, name)
        if not isinstance(name, str) or not _ROOT_NAME.match(name):
            self.error(
                where, f"a root name is letters, digits, '_', '-' and '.', got {_show(name)}"
            )
            return
        first = self.state.declared_roots.get(name)
        if first is not None:
            self.error(where, f"root {name!r} is already defined at {first}")
            return
        self.state.declared_roots[name] = where
        spec = roots[name]
        if isinstance(spec, dict):
            root = self.root_from_mapping(name, spec, where)
        elif isinstance(spec, str):
            path = self.root_path(roots, name, name)
            root = Root(name, path, where=where) if path else None
        else:
            self.error(
                self.value_at(roots, name),
                f"root {name!r} wants a path or a mapping with path:, got {_show(spec)}",
            )
            root = None
        if root is None:
            self.state.broken_roots.add(name)
        else:
            self.state.roots[name] = root

    def root_from_mapping(self, name: str, spec: Any, where: Location) -> Root | None:
        self.check_keys(spec, ROOT_KEYS, "root key", _ROOT_ALIASES)
        if "path" not in spec:
            self.error(where, f"root {name!r} needs a path:")
            return None
        path = self.root_path(spec, "path", name)
        settle = self.opt_duration(spec, "settle")
        own_ignore = self.str_items(spec, "ignore", "a glob") if "ignore" in spec else []
        for glob, glob_at in own_ignore or []:
            try:
                globs_pattern([glob])
            except PatternError as exc:
                self.error(glob_at, f"ignore: {exc}")
        ignore = dict.fromkeys([*DEFAULT_IGNORE, *(g for g, _ in own_ignore or [])])
        options = {
            key: self.opt_bool(spec, key, default)
            for key, default in (
                ("recursive", True), ("watch", True), ("poll", False), ("follow_symlinks", False),
            )
        }  # fmt: skip
        if path is None:
            return None
        return Root(
            name,
            path,
            settle=5.0 if settle is None else settle,
            ignore=tuple(ignore),
            where=where,
            **options,
        )

    def root_path(self, node: Any, key: str, name: str) -> str | None:
        """Root `name`'s path, written as `node[key]`."""
        value = node[key]
        where = self.value_at(node, key)
        if not isinstance(value, str) or not value.strip():
            self.error(
                where, f"a root path wants a directory, like ~/Downloads, got {_show(value)}"
            )
            return None
        path, problem = expand_path(str(value), self.base_dir)
        if path is None:
            self.error(where, f"root path {str(value)!r}: {problem}")
            return None
        self.state.root_path_locations[name] = where
        return path

    # --- rules --------------------------------------------------------------------------
    def read_rules(self) -> None:
        if not self.is_mapping or self.is_resource or self.doc.get("rules") is None:
            return
        rules = self.doc["rules"]
        if not isinstance(rules, list):
            self.error(
                self.value_at(self.doc, "rules"),
                f"rules: wants a list of rules (`- name: ...`), got {_show(rules)}",
            )
            return
        for index, item in enumerate(rules):
            if not isinstance(item, dict):
                self.error(
                    self.key_at(rules, index),
                    f"a rule is a mapping with name:, match: and actions:, got {_show(item)}",
                )
                continue
            self.state.rules.append(self.read_rule(item))

    def read_rule(self, node: Any) -> SourcedRule:
        start = len(self.state.problems)
        self.check_keys(node, RULE_KEYS, "rule key", _RULE_ALIASES)
        locations: dict[str, Location] = {}
        for key in ("name", "in", "on", "match", "schedule", "group_by"):
            if key in node:
                locations[key] = self.value_at(node, key)
        name = self.rule_name(node)
        roots = self.rule_roots(node, locations)
        on = self.read_triggers(node)
        self._failed_fields = set()
        match = self.read_match(node)
        actions = self.read_actions(node, name, locations)
        schedule = self.read_schedule(node)
        every = self.opt_duration(node, "every", positive=True)
        if schedule is not None and every is not None:
            self.error(self.key_at(node, "every"), "a rule has schedule: or every:, not both")
        rule = SourcedRule(
            name=name,
            roots=tuple(roots or ()),
            match=match,
            actions=actions,
            on=on,
            continue_=self.opt_bool(node, "continue", False),
            schedule=schedule,
            every=every,
            after=self.opt_duration(node, "after"),
            keep_newest=self.opt_int(node, "keep_newest", 1),
            group_by=self.opt_str(node, "group_by"),
            enabled=self.opt_bool(node, "enabled", True),
            where=self.node_at(node),
            locations=locations,
            failed_fields=frozenset(self._failed_fields),
        )
        self.opt_str(node, "description", non_empty=False)
        if any(p.severity == "error" for p in self.state.problems[start:]):
            rule.enabled = False
        if roots is None:
            self.state.without_in.append(rule)
        return rule

    def rule_name(self, node: Any) -> str:
        if "name" not in node:
            self.error(self.node_at(node), "a rule needs a name:")
            return ""
        return self.opt_str(node, "name") or ""

    def rule_roots(self, node: Any, locations: dict[str, Location]) -> list[str] | None:
        """The root names under `in:`; None when `in:` is left out."""
        if "in" not in node:
            return None
        if node["in"] == []:
            self.error(self.value_at(node, "in"), "in: wants at least one root name")
            return []
        items = self.str_items(node, "in", "a root name") or []
        for index, (_, where) in enumerate(items):
            locations[f"in.{index}"] = where
        return [name for name, _ in items]

    def read_triggers(self, node: Any) -> frozenset[str]:
        if "on" not in node:
            return DEFAULT_TRIGGERS
        if node["on"] == []:
            self.error(self.value_at(node, "on"), f"on: wants at least one of {_triggers()}")
            return DEFAULT_TRIGGERS
        triggers = set()
        for trigger, where in self.str_items(node, "on", "a trigger") or []:
            if trigger in TRIGGERS:
                triggers.add(trigger)
            else:
                self.error(where, unknown("trigger", trigger, TRIGGERS))
        return frozenset(triggers) or DEFAULT_TRIGGERS

    def read_schedule(self, node: Any) -> str | None:
        text = self.opt_str(node, "schedule")
        if text is None:
            return None
        problem = cron_problem(text)
        if problem:
            self.error(self.value_at(node, "schedule"), f"schedule: {problem}")
            return None
        return text

    # --- match --------------------------------------------------------------------------
    def read_match(self, rule: Any) -> MatchNode:
        if rule.get("match") is None:  # left out (or empty): every file
            return AllNode([], self.key_at(rule, "match") if "match" in rule else None)
        return self.match_value(rule, "match")

    def match_value(self, parent: Any, key: Any) -> MatchNode:
        """The match tree written as `parent[key]`: a list (all of) or a mapping."""
        value = parent[key]
        where = self.value_at(parent, key)
        if isinstance(value, list):
            return AllNode([self.match_item(value, i) for i in range(len(value))], where)
        if isinstance(value, dict):
            return self.match_mapping(value) if value else AllNode([], where)
        return self.no_match(
            where,
            f"{key}: wants a list of filters or a mapping like {{extension: pdf}}"
            f", got {_show(value)}",
            value,
        )

    def match_item(self, seq: Any, index: int) -> MatchNode:
        item = seq[index]
        if isinstance(item, dict) and item:
            return self.match_mapping(item)
        message = f"a filter is a mapping like `- extension: pdf`, got {_show(item)}"
        if isinstance(item, str) and item in self.registry.filters:
            message = f"filter {item!r} needs a value: write `- {item}: ...`"
        return self.no_match(self.key_at(seq, index), message, item)

    def match_mapping(self, node: Any) -> MatchNode:
        """Several keys mean all of them; one key is that filter or combinator."""
        children = [self.match_key(node, key) for key in node]
        return children[0] if len(children) == 1 else AllNode(children, self.node_at(node))

    def match_key(self, node: Any, key: Any) -> MatchNode:
        where = self.key_at(node, key)
        value = node[key]
        if key in ("all", "any"):
            if not isinstance(value, list) or (key == "any" and not value):
                return self.no_match(
                    self.value_at(node, key),
                    f"{key}: wants a list of filters, like {key}: [{{extension: pdf}},"
                    f" {{mime: image/*}}], got {_show(value)}",
                    value,
                )
            children = [self.match_item(value, i) for i in range(len(value))]
            return AllNode(children, where) if key == "all" else AnyNode(children, where)
        if key == "not":
            if isinstance(value, list | dict) and value:
                return NotNode(self.match_value(node, key), where)
            return self.no_match(
                self.value_at(node, key),
                f"not: wants a filter mapping or a list of filters, got {_show(value)}",
                value,
            )
        return self.filter_node(node, key)

    def filter_node(self, node: Any, key: Any) -> MatchNode:
        where = self.key_at(node, key)
        cls = self.registry.filters.get(key) if isinstance(key, str) else None
        if cls is None:
            if key in RULE_KEYS:
                message = f"{key!r} belongs to the rule, not inside match: (check the indentation)"
            else:
                message = unknown("filter", key, [*self.registry.filters, *COMBINATORS])
            return self.no_match(where, message, node[key])
        value = node[key]
        try:
            built = cls(plain(value))
        except PatternError as exc:
            return self.no_match(self.pattern_at(node, key, exc), _prefixed(key, str(exc)), value)
        except (SpecError, ClerkError) as exc:
            return self.no_match(self.value_at(node, key), _prefixed(key, str(exc)), value)
        except Exception as exc:  # a plugin's bug must not stop the other checks
            origin = self.registry.origin.get(f"filter:{key}", "?")
            return self.no_match(
                self.value_at(node, key),
                f"filter {key!r} (plugin {origin}) failed on this value:"
                f" {type(exc).__name__}: {exc}",
                value,
            )
        return FilterNode(key, built, where)

    def pattern_at(self, node: Any, key: Any, exc: PatternError) -> Location:
        """Where the trouble in a pattern is: in the scalar under `node[key]` that holds it."""
        holder, holder_key = _holding(node, key, exc.pattern)
        where = self.value_at(holder, holder_key)
        return offset_location(where, self.state.line(self.file, where.line), exc.offset)

    def no_match(self, where: Location, message: str, value: Any = None) -> MatchNode:
        """Report `message`; stand in a node that matches nothing (fail closed). The
        named groups in `value` (the filter's) are fields it might have given."""
        self.error(where, message)
        for text in _strings(value):
            self._failed_fields |= group_names(text)
        return AnyNode([], where)

    # --- actions ------------------------------------------------------------------------
    def read_actions(
        self, rule: Any, name: str, locations: dict[str, Location]
    ) -> list[ActionStep]:
        value = rule.get("actions")
        if value is None:
            self.error(
                self.key_at(rule, "actions") if "actions" in rule else self.node_at(rule),
                f"rule {name!r} has no actions: (write `actions: []` for a rule that only"
                " stops later rules)",
            )
            return []
        if not isinstance(value, list):
            self.error(
                self.value_at(rule, "actions"),
                f"actions: wants a list, like [{{trash: {{}}}}], got {_show(value)}",
            )
            return []
        steps: list[ActionStep] = []
        for index in range(len(value)):
            step = self.read_action(value, index)
            if step is not None:
                locations[f"actions.{len(steps)}.value"] = self.value_at(value[index], step.name)
                steps.append(step)
        return steps

    def read_action(self, seq: Any, index: int) -> ActionStep | None:
        item = seq[index]
        if not isinstance(item, dict) or not item:
            message = f"an action is a mapping like `- move: ~/Archive/{{name}}`, got {_show(item)}"
            if isinstance(item, str) and item in self.registry.actions:
                message = f"action {item!r} needs a value: write `- {item}: ...`"
            self.error(self.key_at(seq, index), message)
            return None
        name = self.action_name(item)
        if name is None:
            return None
        options = self.action_options(item, name)
        if options is None:
            return None
        return self.build_action(item, name, options)

    def action_name(self, item: Any) -> str | None:
        actions = self.registry.actions
        names = [k for k in item if isinstance(k, str) and k in actions]
        if len(names) > 1:
            # an action may take an option named like another action
            fitting = [n for n in names if all(k == n or k in _options(actions[n]) for k in item)]
            if len(fitting) == 1:
                return fitting[0]
            self.error(
                self.key_at(item, names[1]),
                f"one action per item, found {', '.join(names)}: start a new `- ` for each",
            )
            return None
        if names:
            return names[0]
        known_options = {o for cls in actions.values() for o in _options(cls)}
        strangers = [k for k in item if not (isinstance(k, str) and k in known_options)]
        if strangers:
            self.error(self.key_at(item, strangers[0]), unknown("action", strangers[0], actions))
        else:
            self.error(
                self.node_at(item),
                f"options {', '.join(map(str, item))} without an action{hint('', actions)}",
            )
        return None

    def action_options(self, item: Any, name: str) -> dict[str, Any] | None:
        allowed = _options(self.registry.actions[name])
        options: dict[str, Any] = {}
        ok = True
        for key in item:
            if key == name:
                continue
            if key not in allowed:
                ok = False
                message = (
                    f"{name} has no option {key!r}{hint(key, allowed)}"
                    if allowed
                    else f"{name} takes no options, got {key!r}"
                )
                if key in self.registry.actions:
                    message += ": write each action as its own `- ` item"
                self.error(self.key_at(item, key), message)
            elif key == "on_conflict" and item[key] not in CONFLICT_POLICIES:
                ok = False
                self.error(
                    self.value_at(item, key),
                    "on_conflict: " + unknown("policy", plain(item[key]), CONFLICT_POLICIES),
                )
            else:
                options[key] = plain(item[key])
        return options if ok else None

    def build_action(self, item: Any, name: str, options: dict[str, Any]) -> ActionStep | None:
        cls = self.registry.actions[name]
        value = self.state.rebase(plain(item[name]))
        try:
            action = cls(value, self.state.rebase(options))
        except (SpecError, ClerkError) as exc:
            self.error(self.value_at(item, name), _prefixed(name, str(exc)))
            return None
        except Exception as exc:  # a plugin's bug must not stop the other checks
            origin = self.registry.origin.get(f"action:{name}", "?")
            self.error(
                self.value_at(item, name),
                f"action {name!r} (plugin {origin}) failed on this value:"
                f" {type(exc).__name__}: {exc}",
            )
            return None
        return ActionStep(name, action, self.key_at(item, name))

    # --- workflows ----------------------------------------------------------------------
    def read_workflows(self) -> None:
        if not self.is_mapping:
            return
        if self.is_resource:
            self.read_resource()
            return
        workflows = self.doc.get("workflows")
        if workflows is None:
            return
        if not isinstance(workflows, dict):
            self.error(
                self.value_at(self.doc, "workflows"),
                f"workflows: wants a mapping of names to definitions, got {_show(workflows)}",
            )
            return
        for name, spec in workflows.items():
            where = self.key_at(workflows, name)
            if not isinstance(name, str) or not name:
                self.error(where, f"a workflow name is text, got {_show(name)}")
            elif not isinstance(spec, dict):
                self.error(
                    self.value_at(workflows, name),
                    f"workflow {name!r} wants a mapping with tasks:, got {_show(spec)}",
                )
            else:
                source = WorkflowSource(name, self.file, spec, "compact", where)
                self.state.add_workflow(source, plain(spec))

    def read_resource(self) -> None:
        doc = self.doc
        self.check_keys(doc, RESOURCE_KEYS, "resource key", {})
        where = self.node_at(doc)
        api = self.opt_str(doc, "apiVersion")
        if "apiVersion" not in doc:
            self.error(where, "a resource document needs apiVersion:")
        kind = doc.get("kind")
        if kind not in RESOURCE_KINDS:
            self.error(
                self.value_at(doc, "kind") if "kind" in doc else where,
                unknown("kind", plain(kind), RESOURCE_KINDS)
                if "kind" in doc
                else "a resource document needs kind: Task or kind: Workflow",
            )
        name, name_at = self.resource_name(doc, where)
        spec = doc.get("spec")
        if not isinstance(spec, dict):
            self.error(
                self.value_at(doc, "spec") if "spec" in doc else where,
                f"a {kind if isinstance(kind, str) else 'resource'} needs a spec: mapping",
            )
        elif api is not None and kind in RESOURCE_KINDS and name is not None:
            source = WorkflowSource(name, self.file, doc, str(kind), name_at)
            self.state.add_workflow(source, plain(doc))

    def resource_name(self, doc: Any, where: Location) -> tuple[str | None, Location]:
        metadata = doc.get("metadata")
        if not isinstance(metadata, dict):
            self.error(
                self.value_at(doc, "metadata") if "metadata" in doc else where,
                "a resource needs metadata: with a name:",
            )
            return None, where
        if "name" not in metadata:
            self.error(self.key_at(doc, "metadata"), "metadata: needs a name:")
            return None, where
        return self.opt_str(metadata, "name"), self.value_at(metadata, "name")


def _holding(node: Any, key: Any, text: str) -> tuple[Any, Any]:
    """The container and key, at or under `node[key]`, whose value is the string `text`."""
    stack = [(node, key)]
    while stack:
        holder, holder_key = stack.pop()
        value = holder[holder_key]
        if isinstance(value, str) and value == text:
            return holder, holder_key
        if isinstance(value, dict):
            stack.extend((value, k) for k in reversed(list(value)))
        elif isinstance(value, list):
            stack.extend((value, i) for i in reversed(range(len(value))))
    return node, key


def _options(cls: type) -> frozenset[str]:
    options: Any = getattr(cls, "options", frozenset())
    return frozenset(o for o in options if isinstance(o, str)) if options else frozenset()


def _triggers() -> str:
    return ", ".join(sorted(TRIGGERS))


def cron_problem(text: str) -> str | None:
    """What is wrong with a 5-field cron expression (None when APScheduler accepts it)."""
    if len(text.split()) != 5:
        return (
            "wants a cron expression with 5 fields (minute hour day month weekday),"
            f" like '0 3 * * *', got {text!r}"
        )
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(text, timezone="UTC")
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        return f"invalid cron expression {text!r}: {exc}"
    return None
