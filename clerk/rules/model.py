"""The loaded, validated rule set: roots, rules, match trees and action steps."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clerk.errors import Location
from clerk.roots import DEFAULT_IGNORE as DEFAULT_IGNORE  # re-exported: plugins import them here
from clerk.roots import Root as Root
from clerk.roots import RootSet as RootSet
from clerk.units import format_duration

if TYPE_CHECKING:
    from clerk.plugins.api import Action, Filter

TRIGGERS: frozenset[str] = frozenset({"created", "modified", "moved", "scan", "schedule"})
DEFAULT_TRIGGERS: frozenset[str] = frozenset({"created", "moved", "scan"})


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
