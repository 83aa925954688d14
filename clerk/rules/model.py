"""The loaded, validated rule set: roots, rules, match trees and action steps."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clerk.errors import Location
from clerk.units import format_duration

if TYPE_CHECKING:
    from clerk.plugins.api import Action, Filter

DEFAULT_IGNORE: tuple[str, ...] = ("*.part", "*.crdownload", ".~lock*", "*.tmp", ".clerk-tmp-*")
TRIGGERS: frozenset[str] = frozenset({"created", "modified", "moved", "scan", "schedule"})
DEFAULT_TRIGGERS: frozenset[str] = frozenset({"created", "moved", "scan"})


@dataclass(frozen=True)
class Root:
    """A directory clerk may read and write; every path it touches is inside one."""

    name: str
    path: str  # absolute, user-expanded, normalized; no trailing slash
    recursive: bool = True
    watch: bool = True
    poll: bool = False
    settle: float = 5.0
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    follow_symlinks: bool = False
    where: Location | None = field(default=None, compare=False)

    def contains(self, path: str) -> bool:
        return path == self.path or path.startswith(self.path.rstrip("/") + "/")


class RootSet:
    """Named roots, with the lookup from an absolute path to (root, relpath)."""

    def __init__(self, roots: Iterable[Root] = ()):
        self._by_name: dict[str, Root] = {r.name: r for r in roots}
        # most specific first, so a root nested in another claims its own files
        self._by_depth = sorted(self._by_name.values(), key=lambda r: len(r.path), reverse=True)

    def __getitem__(self, name: str) -> Root:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Root]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Root | None:
        return self._by_name.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def locate(self, path: str) -> tuple[Root, str] | None:
        """The most specific root holding `path` (absolute, normalized) and the relpath."""
        for root in self._by_depth:
            base = root.path
            if path.startswith(base):
                if len(path) == len(base):
                    return root, "."
                if path[len(base)] == "/":
                    return root, path[len(base) + 1 :]
                if base == "/":
                    return root, path[1:]
        return None


@dataclass
class FilterNode:
    """A leaf of a match tree: one configured filter."""

    name: str
    filter: Filter
    where: Location


@dataclass
class AllNode:
    children: list[MatchNode]
    where: Location | None = None


@dataclass
class AnyNode:
    children: list[MatchNode]
    where: Location | None = None


@dataclass
class NotNode:
    child: MatchNode
    where: Location | None = None


MatchNode = FilterNode | AllNode | AnyNode | NotNode


def iter_filters(node: MatchNode) -> Iterator[FilterNode]:
    if isinstance(node, FilterNode):
        yield node
    elif isinstance(node, NotNode):
        yield from iter_filters(node.child)
    else:
        for child in node.children:
            yield from iter_filters(child)


@dataclass
class ActionStep:
    name: str
    action: Action
    where: Location


@dataclass(frozen=True)
class Skip:
    """Why a rule does not run for a file: a short status and the reason in words.

    status: `disabled`, `other root`, `lifecycle`, `not triggered` (see `Rule.skip`), or
    `not selected` (`clerk scan --rule` named other rules).
    """

    status: str
    reason: str


@dataclass
class Rule:
    name: str
    roots: tuple[str, ...]
    match: MatchNode
    actions: list[ActionStep]
    on: frozenset[str] = DEFAULT_TRIGGERS
    continue_: bool = False
    schedule: str | None = None  # cron expression: a lifecycle sweep
    every: float | None = None  # interval in seconds: a lifecycle sweep
    after: float | None = None  # act only once the file is unchanged this long
    keep_newest: int | None = None
    group_by: str | None = None
    enabled: bool = True
    where: Location = field(default_factory=lambda: Location("<unknown>"))

    @property
    def is_lifecycle(self) -> bool:
        return bool(self.schedule or self.every)

    def skip(self, root: str, trigger: str, *, named: bool = False) -> Skip | None:
        """Why this rule does not run for a file of `root` on `trigger` (None: it runs).

        `named`: the caller picked this rule by name (`clerk scan --rule`, a lifecycle
        sweep); then `on:` and schedules do not hold it back. The one place that decides
        which rules a scan, the daemon and `clerk explain` run.
        """
        if not self.enabled:
            return Skip("disabled", "disabled")
        if root not in self.roots:
            return Skip("other root", f"not in root {root} (in: {', '.join(self.roots)})")
        if named:
            return None
        if self.is_lifecycle:
            every = format_duration(self.every or 0)
            when = f"schedule: {self.schedule}" if self.schedule else f"every: {every}"
            return Skip("lifecycle", f"lifecycle rule ({when}): runs on its schedule or by name")
        if trigger not in self.on:
            on = ", ".join(sorted(self.on))
            return Skip("not triggered", f"not triggered by {trigger} (on: {on})")
        return None

    def waiting(self, mtime: float, now: float) -> float:
        """Seconds until a file modified at `mtime` has been unchanged for `after`
        (0: due, or the rule has no `after`)."""
        if self.after is None:
            return 0.0
        return max(0.0, mtime + self.after - now)


@dataclass
class RuleSet:
    roots: RootSet
    rules: list[Rule]
    workflows: dict[str, Any] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def rules_for(self, root: str, trigger: str) -> list[Rule]:
        return [r for r in self.rules if r.skip(root, trigger) is None]

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)
