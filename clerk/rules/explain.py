"""`clerk explain`: the plan `clerk scan` makes for one file, told as it is made.

`explain()` runs the very code `clerk scan --dry-run PATH` runs (rule selection, the
compiled matchers, action planning with conflicts and chaining, through a dry-run
fileops) with a `PlanTrace` listening (`Engine.tracing`). The explanation is built
from what the trace heard and from the planned ops, so it cannot disagree with scan:
there is no second matcher and no second action planner.

It is a plain function returning an `Explanation`: `clerk explain` renders it, the
platform's `preview` serializes it (`as_dict()`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from clerk.errors import ClerkError
from clerk.plugins.api import Verdict
from clerk.rules.engine import FileOutcome, op_as_dict
from clerk.rules.model import TRIGGERS, AllNode, AnyNode, FilterNode, MatchNode, NotNode, Rule
from clerk.rules.walk import Candidate, explicit_candidate
from clerk.units import format_duration, iso_time

if TYPE_CHECKING:
    from clerk.fileops.types import OpResult
    from clerk.rules.engine import Engine, Summary
    from clerk.rules.fileinfo import FileInfo

#: rule statuses: the first five come from the traced run, the others say why the run
#: did not ask the rule (`Rule.skip`, `Engine.rule_skip`) or why it stopped before it
APPLIES, NO_MATCH, WAITING, ERROR, SPARED = "applies", "no match", "waiting", "error", "spared"
ALREADY_DONE = "already done"
NOT_REACHED = "not reached"


@dataclass
class NodeVerdict:
    """One node of a rule's match tree as the run judged it (written order)."""

    kind: str  # "filter", "all", "any" or "not"
    name: str  # the filter's name, or the combinator's
    where: str | None
    matched: bool | None  # None: not checked (the run had its answer without it)
    reason: str = ""
    seen: Any = None  # the file's value, as the filter saw it
    wanted: Any = None  # what the filter asks for
    error: str | None = None  # the filter raised
    children: list[NodeVerdict] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "where": self.where,
            "matched": self.matched,
            "reason": self.reason,
            "seen": plain(self.seen),
            "wanted": plain(self.wanted),
            "error": self.error,
            "children": [child.as_dict() for child in self.children],
        }


@dataclass
class PlannedAction:
    """One action of a rule as planned: a file op's (dry-run) result, or an effect."""

    rule: str
    action: str  # "move", "tag", ...
    op: OpResult | None = None
    effect: str | None = None  # what the effect would do
    error: str | None = None  # it could not be planned, or an earlier action broke the chain

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "op": op_as_dict(self.op) if self.op is not None else None,
            "effect": self.effect,
            "error": self.error,
        }


@dataclass
class RuleVerdict:
    """What became of one rule for the file, in rule-file order."""

    rule: str
    where: str
    status: str  # see the statuses above and `clerk.rules.model.Skip`
    lifecycle: bool
    reason: str = ""
    path: str | None = None  # where the file was when the rule judged it
    matched: bool | None = None  # None: the run did not evaluate the match
    match: NodeVerdict | None = None
    actions: list[PlannedAction] = field(default_factory=list)
    error: str | None = None  # planning its actions failed: later rules were not asked
    seen: Any = None  # `waiting`: seconds since the last change
    wanted: Any = None  # `waiting`: the rule's `after:` in seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "where": self.where,
            "status": self.status,
            "lifecycle": self.lifecycle,
            "reason": self.reason,
            "path": self.path,
            "matched": self.matched,
            "match": self.match.as_dict() if self.match is not None else None,
            "actions": [a.as_dict() for a in self.actions],
            "error": self.error,
            "seen": plain(self.seen),
            "wanted": plain(self.wanted),
        }


@dataclass
class FileFacts:
    size: int
    mtime: datetime
    mime: str | None  # only when a rule needed it (or the catalog knew it)
    tags: list[str]


@dataclass
class Explanation:
    """How the rules judge one file, and the plan `clerk scan --dry-run` makes for it."""

    path: str
    root: str
    relpath: str
    trigger: str
    facts: FileFacts
    rules: list[RuleVerdict]
    #: the very outcome a dry-run scan of this path keeps (`scan --dry-run --json` files)
    outcome: FileOutcome
    errors: list[str] = field(default_factory=list)

    @property
    def would_apply(self) -> list[str]:
        """The rules that would act, in order (more than one through `continue: true`)."""
        return self.outcome.rules

    @property
    def ops(self) -> list[OpResult]:
        """The planned file operations, as `scan --dry-run` plans them."""
        return self.outcome.ops

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "root": self.root,
            "relpath": self.relpath,
            "trigger": self.trigger,
            "facts": {
                "size": self.facts.size,
                "mtime": iso_time(self.facts.mtime),
                "mime": self.facts.mime,
                "tags": self.facts.tags,
            },
            "rules": [r.as_dict() for r in self.rules],
            "would_apply": self.would_apply,
            "plan": self.outcome.as_dict(),
            "errors": self.errors,
        }


def explain(
    engine: Engine,
    path: str,
    *,
    trigger: str = "scan",
    rule_names: Iterable[str] = (),
) -> Explanation:
    """Explain what `engine` would do to the file at `path`; changes nothing.

    `engine` must be a dry-run engine (`App.engine(ruleset, dry_run=True)`). `trigger`
    and `rule_names` select the rules as they do for `Engine.scan` (`clerk scan --rule`).
    """
    if not engine.dry_run:
        raise ValueError("explain needs a dry-run engine: it must change nothing")
    if trigger not in TRIGGERS:
        raise ClerkError(f"unknown trigger {trigger!r} (one of {', '.join(sorted(TRIGGERS))})")
    absolute = os.path.normpath(os.path.abspath(os.path.expanduser(path)))
    candidate = explicit_candidate(absolute, engine.ruleset.roots)
    names = list(rule_names)
    trace = PlanTrace()
    with engine.tracing(trace):
        summary = engine.scan([candidate.path], rule_names=names, trigger=trigger)
    return _explanation(engine, candidate, trigger, set(names) or None, trace, summary)


def _explanation(
    engine: Engine,
    candidate: Candidate,
    trigger: str,
    only: set[str] | None,
    trace: PlanTrace,
    summary: Summary,
) -> Explanation:
    heard = next((f for f in trace.files if f.file.path == candidate.path), None)
    spared_by = trace.spared_by.get(candidate.path)
    verdicts: list[RuleVerdict] = []
    for rule in engine.ruleset.rules:
        record = heard.rules.get(rule.name) if heard is not None else None
        if record is not None:
            verdicts.append(record)
            continue
        verdict = RuleVerdict(rule.name, str(rule.where), NOT_REACHED, rule.is_lifecycle)
        skip = engine.rule_skip(rule, candidate.root.name, trigger, only)
        if rule is spared_by:
            verdict.status = SPARED
            verdict.reason = f"kept: one of the {rule.keep_newest} newest of its group"
        elif skip is not None:
            verdict.status, verdict.reason = skip.status, skip.reason
        elif heard is not None and heard.stop:
            verdict.reason = f"not reached: {heard.stop}"
        verdicts.append(verdict)
    if heard is not None:
        file: FileInfo | None = heard.file
        outcome = heard.outcome or FileOutcome(candidate.path, [])
    else:  # spared by `keep_newest`: the rules never saw it
        file, outcome = None, FileOutcome(candidate.path, [])
    return Explanation(
        path=candidate.path,
        root=candidate.root.name,
        relpath=candidate.relpath,
        trigger=trigger,
        facts=_facts(candidate, file),
        rules=verdicts,
        outcome=outcome,
        errors=list(summary.errors),
    )


def _facts(candidate: Candidate, file: FileInfo | None) -> FileFacts:
    if file is None:
        st = candidate.st
        return FileFacts(st.st_size, datetime.fromtimestamp(st.st_mtime).astimezone(), None, [])
    return FileFacts(file.size, file.mtime, file.mime_if_known, sorted(file.tags))


# --- the trace -----------------------------------------------------------------------------


@dataclass
class FileTrace:
    """What the engine told a `PlanTrace` about one file."""

    file: FileInfo
    rules: dict[str, RuleVerdict] = field(default_factory=dict)  # in the order asked
    stop: str | None = None  # why the rules after the last one asked were not
    outcome: FileOutcome | None = None


class PlanTrace:
    """Listens to an engine while it plans (`Engine.tracing`): every rule it asks, every
    filter verdict, every planned action, every file's outcome. Holds any number of
    files, so a whole traced scan can be compared with what it did."""

    def __init__(self) -> None:
        self.files: list[FileTrace] = []
        self.spared_by: dict[str, Rule] = {}  # path -> the keep_newest rule that spared it
        self._by_file: dict[int, FileTrace] = {}
        self._current: FileTrace | None = None
        self._verdicts: dict[int, Verdict | bool | Exception] = {}

    # called by Engine._plan, for one file at a time
    def begin(self, file: FileInfo) -> None:
        self._current = self._by_file[id(file)] = FileTrace(file)
        self.files.append(self._current)

    def waiting(self, rule: Rule, file: FileInfo, now: float) -> None:
        age, after = max(0.0, now - file.st.st_mtime), rule.after or 0.0
        record = self._record(rule, file, WAITING)
        record.reason = f"modified {format_duration(age)} ago, after: {format_duration(after)}"
        record.seen, record.wanted = round(age, 3), after

    def judging(self, rule: Rule, file: FileInfo) -> None:
        self._record(rule, file, NO_MATCH)
        self._verdicts = {}

    def verdict(self, node: MatchNode, verdict: Verdict | bool | Exception) -> None:
        """The compiled matcher's hook: one node decided."""
        self._verdicts[id(node)] = verdict

    def judged(self, rule: Rule, matched: bool | None, error: str | None = None) -> None:
        record = self._rule(rule)
        record.matched = matched
        record.match = _tree(rule.match, self._verdicts, top=True)
        self._verdicts = {}
        if error is not None:
            record.status, record.reason = ERROR, error
            self._file().stop = f"rule {rule.name} failed"
        elif matched:
            record.status = APPLIES

    def already_done(self, rule: Rule, op_id: int) -> None:
        record = self._rule(rule)
        record.status = ALREADY_DONE
        record.reason = f"done before by op {op_id}; the file is unchanged since"

    def stopped(self, rule: Rule, error: str | None, gone: bool) -> None:
        if error is not None:
            self._rule(rule).error = error
            self._file().stop = f"rule {rule.name} failed"
        elif gone:
            self._file().stop = f"rule {rule.name} removed the file"
        else:
            self._file().stop = f"rule {rule.name} matched first (no continue: true)"

    # called by Engine._finish, after the batch's ops were planned
    def action(
        self,
        file: FileInfo,
        rule: str,
        name: str,
        *,
        op: OpResult | None = None,
        effect: str | None = None,
        error: str | None = None,
    ) -> None:
        trace = self._by_file.get(id(file))
        if trace is not None and rule in trace.rules:
            trace.rules[rule].actions.append(PlannedAction(rule, name, op, effect, error))

    def finished(self, file: FileInfo, outcome: FileOutcome) -> None:
        trace = self._by_file.get(id(file))
        if trace is not None:
            trace.outcome = outcome

    # called by Engine.spare_newest
    def spared(self, rule: Rule, path: str) -> None:
        self.spared_by[path] = rule

    def _file(self) -> FileTrace:
        assert self._current is not None, "begin() first"
        return self._current

    def _record(self, rule: Rule, file: FileInfo, status: str) -> RuleVerdict:
        record = RuleVerdict(rule.name, str(rule.where), status, rule.is_lifecycle, path=file.path)
        self._file().rules[rule.name] = record
        return record

    def _rule(self, rule: Rule) -> RuleVerdict:
        return self._file().rules[rule.name]


def _tree(
    node: MatchNode, verdicts: dict[int, Verdict | bool | Exception], *, top: bool = False
) -> NodeVerdict:
    """The match tree in written order, each node with the verdict the run gave it."""
    if isinstance(node, FilterNode):
        kind, name, children = "filter", node.name, []
    elif isinstance(node, NotNode):
        kind, name, children = "not", "not", [node.child]
    else:
        kind = "all" if isinstance(node, AllNode) else "any"
        assert isinstance(node, AllNode | AnyNode)
        name, children = kind, node.children
    where = str(node.where) if node.where is not None else None
    result = NodeVerdict(kind, name, where, None, "not checked")
    result.children = [_tree(child, verdicts) for child in children]
    verdict = verdicts.get(id(node))
    if isinstance(verdict, Exception):
        result.reason = result.error = f"failed: {type(verdict).__name__}: {verdict}"
    elif isinstance(verdict, Verdict):
        result.matched, result.reason = verdict.matched, verdict.reason
        result.seen, result.wanted = verdict.seen, verdict.wanted
    elif verdict is not None:
        result.matched, result.reason = bool(verdict), ""
        if top and kind == "all" and not children:
            result.reason = "no filters: every file"
    return result


def plain(value: Any) -> Any:
    """A filter's `seen`/`wanted` as JSON: times as ISO 8601, sets as sorted lists."""
    if isinstance(value, datetime):
        return iso_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
