"""The rules engine: the one way clerk applies rules to files.

`clerk scan`, `clerk explain` and the daemon all go through `Engine` (explain is a dry
run with a `PlanTrace` listening, see `clerk.rules.explain`). Files are handled
in batches: the catalog rows of a batch are read in one query, every file is classified
and matched (cheap filters first, expensive facts only when a rule needs them), the
planned file operations of the whole batch go to fileops in one call (one journal
commit for the intents, one for the outcomes), then effects run (tags, plugin actions)
with each file's final path, and the catalog is updated in one transaction.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from clerk.errors import ClerkError
from clerk.fileops.execute import new_batch_id
from clerk.fileops.types import RELOCATING, OpRequest, OpResult
from clerk.plugins.api import EffectAction, FileOpAction, Target, Verdict
from clerk.plugins.manager import Registry
from clerk.rules.copies import NEEDS_EVERY_COPY
from clerk.rules.facts import FactSource
from clerk.rules.fileinfo import FileInfo
from clerk.rules.model import (
    AllNode,
    AnyNode,
    FilterNode,
    MatchNode,
    NotNode,
    Root,
    Rule,
    RuleSet,
    Skip,
)
from clerk.rules.templates import Renderer
from clerk.rules.walk import Candidate, candidate_for, refuse_ignored, unreadable, walk_root
from clerk.store import store_path, write_txn
from clerk.store.catalog import Catalog, CatalogRow, CatalogWriter
from clerk.store.events import record_file_error
from clerk.store.journal import IN_PLACE_KINDS, done_in_place

if TYPE_CHECKING:
    from clerk.engine.queue import RunSink
    from clerk.rules.explain import PlanTrace

log = logging.getLogger("clerk.engine")

MAX_ERRORS_KEPT = 200
_REMOVING = frozenset({"trash", "delete"})


@dataclass
class FileOutcome:
    """What happened to one file (for `--json` and `clerk explain`)."""

    path: str
    rules: list[str]
    ops: list[OpResult] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    error: str | None = None
    already_done: list[str] = field(default_factory=list)  # rules not applied again

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "rules": self.rules,
            "ops": [op_as_dict(r) for r in self.ops],
            "effects": self.effects,
            "error": self.error,
            "already_done": self.already_done,
        }


def op_as_dict(result: OpResult) -> dict[str, Any]:
    """An op's outcome as `--json` shows it (unset fields left out)."""
    return {k: v for k, v in dataclasses.asdict(result).items() if v is not None}


def failed(what: str, exc: Exception, file: FileInfo) -> str:
    """The message for a filter, action or fact that raised on `file`: a file that
    cannot be read says so with the system's reason (`cannot read it: Permission
    denied`), anything else names the exception."""
    if isinstance(exc, OSError) and exc.strerror:
        name = exc.filename
        which = "it" if name is None or os.fsdecode(name) == file.here.path else os.fsdecode(name)
        return f"cannot read {which}: {exc.strerror}"
    return f"{what} failed: {type(exc).__name__}: {exc}"


@dataclass
class Summary:
    seen: int = 0
    matched: int = 0
    done: Counter[str] = field(default_factory=Counter)
    planned: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    failed: int = 0
    already_done: int = 0  # files a matching rule had already acted on, unchanged since
    errors: list[str] = field(default_factory=list)
    outcomes: list[FileOutcome] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def error(self, message: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(message)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "matched": self.matched,
            "done": dict(self.done),
            "planned": dict(self.planned),
            "skipped": self.skipped,
            "failed": self.failed,
            "already_done": self.already_done,
            "errors": self.errors,
            "batches": self.batches,
            "elapsed": round(self.elapsed, 3),
        }


@dataclass
class _Step:
    """One planned action of one file."""

    rule: str
    action: FileOpAction | EffectAction
    fields: dict[str, Any]
    request_index: int | None = None  # for file ops: index in the batch's request list


@dataclass
class _FilePlan:
    file: FileInfo
    rules: list[str]
    steps: list[_Step]
    error: str | None = None
    already_done: list[str] = field(default_factory=list)


class Engine:
    """Applies a rule set to files. One per run (scan) or per rule-set load (daemon)."""

    def __init__(
        self,
        ruleset: RuleSet,
        registry: Registry,
        db: Database | None,
        *,
        fileops: Any = None,
        hooks: Any = None,
        dry_run: bool = False,
        batch_size: int = 500,
        keep_outcomes: bool = False,
        now: datetime | None = None,
        run_sink: RunSink | None = None,
    ):
        self.ruleset = ruleset
        self.registry = registry
        self.db = db
        self.catalog = Catalog(db) if db is not None else None
        self.dry_run = dry_run
        self.batch_size = batch_size
        self.keep_outcomes = keep_outcomes
        self.run_sink = run_sink  # where `run:` actions put their runs (clerk.engine.queue)
        self.renderer = Renderer(ruleset.roots)
        self.facts = FactSource(
            self.catalog,
            registry.classifiers,
            roots=ruleset.roots,
            now=now,
            on_error=self._fact_error,
        )
        if fileops is None and not dry_run:
            raise ClerkError("an engine that acts needs fileops")
        self.fileops = fileops
        self.hooks = hooks
        self._notify_classified = _has_impls(hooks, "file_classified")
        self._notify_op = _has_impls(hooks, "op_done")
        self._rules_cache: dict[tuple[str, str, frozenset[str] | None], list[Rule]] = {}
        # (dev, inode) acted on in this run -> its catalog id
        self._handled: dict[tuple[int, int], int | None] = {}
        self._matchers: dict[int, Matcher] = {}
        self._trace: PlanTrace | None = None  # set inside `tracing()`
        self._traced: dict[int, Matcher] = {}  # the same matchers, reporting to `_trace`
        self._uncatalogued: set[str] = set()  # roots walked now that had no catalog rows
        self._fact_errors: list[str] = []  # classifier/MIME/hash failures, for the summary
        self._writer: CatalogWriter | None = None  # set inside `writing_behind()`
        # rules that only copy, link or archive keeping the source: applied once to a
        # version of a file (`_done_before`); what they did to this batch's files
        self._in_place = sorted(r.name for r in ruleset.rules if _leaves_in_place(r))
        self._done: dict[tuple[int, str], tuple[int, int, int]] = {}
        # some rule asks for duplicates: every file a run meets is one of the copies
        self.facts.copies.track = any(_copy_orders(rule) for rule in ruleset.rules)

    # --- entry points ----------------------------------------------------------------------
    def scan(
        self,
        paths: Iterable[str] = (),
        *,
        root_names: Iterable[str] = (),
        rule_names: Iterable[str] = (),
        trigger: str = "scan",
        progress: Callable[[int], None] | None = None,
    ) -> Summary:
        """Walk roots (all roots rules use, or the named ones, or paths) and apply rules."""
        started = time.monotonic()
        summary = Summary()
        only = set(rule_names) or None
        if only:
            unknown = only - {r.name for r in self.ruleset.rules}
            if unknown:
                raise ClerkError(f"no rule named {', '.join(sorted(unknown))}")
        sparing = [r for r in self.ruleset.rules if only and r.name in only and r.keep_newest]
        if sparing and len(only or ()) > 1:
            raise ClerkError(f"rule {sparing[0].name} keeps the newest files: run it on its own")
        self.reset_run()
        for root, start, full in self._scan_targets(list(paths), list(root_names), only, trigger):
            if start is not None and os.path.isfile(start):
                candidate = candidate_for(start, self.ruleset.roots)
                candidates: Iterable[Candidate] = [candidate] if candidate else []
            else:
                candidates = walk_root(
                    root, self.ruleset.roots, start=start, on_error=self._walk_error(summary)
                )
            orders = {o for r in self.rules_for(root.name, trigger, only) for o in _copy_orders(r)}
            if orders & NEEDS_EVERY_COPY:
                # the first copy met may not be the original: know them all before judging
                candidates = list(candidates)
                self.facts.copies.expect(candidates)
            if sparing:
                candidates = self.spare_newest(sparing[0], list(candidates))
                full = False  # the spared files were not shown to the rules: no "gone" sweep
            seen_ids: set[int] | None = set() if full else None
            if self.catalog is not None and not self.catalog.knows_root(root.name):
                # nothing to look up while walking it: only this walk adds rows (and
                # files it moves further down the walk are skipped, see _process_batch)
                self._uncatalogued.add(root.name)
            try:
                self.process(
                    candidates,
                    trigger,
                    summary=summary,
                    rule_names=only,
                    seen_ids=seen_ids,
                    progress=progress,
                )
            finally:
                self._uncatalogued.discard(root.name)
            if seen_ids is not None and self.catalog is not None and not self.dry_run:
                with self.db.atomic():  # type: ignore[union-attr]
                    self.catalog.mark_gone(root.name, seen_ids)
        summary.elapsed = time.monotonic() - started
        return summary

    def process(
        self,
        candidates: Iterable[Candidate],
        trigger: str,
        *,
        summary: Summary | None = None,
        rule_names: set[str] | None = None,
        seen_ids: set[int] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Summary:
        """Apply the rules for `trigger` to candidates, in batches."""
        summary = summary or Summary()
        shared = self._writer
        writer: CatalogWriter | None = shared
        try:
            for index, batch in enumerate(_chunks(candidates, self.batch_size)):
                if index == 1 and writer is None:  # a second batch: worth a writer thread
                    writer = self._catalog_writer()
                    self.facts.copies.sync_catalog = writer.wait if writer is not None else None
                self._process_batch(batch, trigger, summary, rule_names, seen_ids, writer)
                for message in self._fact_errors:
                    summary.error(message)
                self._fact_errors.clear()
                if progress is not None:
                    progress(len(batch))
        finally:
            if writer is not None and writer is not shared:
                self.facts.copies.sync_catalog = None
                writer.close()
        return summary

    @contextmanager
    def writing_behind(self) -> Iterator[None]:
        """Catalog rows of every `process()` call in this block go to one writer thread.

        For a caller that hands the engine many batches one call at a time (the daemon
        working off a backlog): each batch's rows are written while the next is planned,
        as they are within one long `process()` call. Everything is written when the
        block ends; catalog reads for duplicates wait for the rows still on their way.
        """
        if self._writer is not None:
            yield
            return
        writer = self._catalog_writer()
        if writer is None:
            yield
            return
        self._writer, self.facts.copies.sync_catalog = writer, writer.wait
        try:
            yield
        finally:
            self._writer, self.facts.copies.sync_catalog = None, None
            writer.close()

    @contextmanager
    def tracing(self, trace: PlanTrace) -> Iterator[None]:
        """Tell `trace` every rule's and filter's verdict and every planned action while
        this block runs: the plan, as it is made (`clerk explain` listens in a dry run).

        The matchers are the compiled ones, with a hook: same order, same short cuts.
        One trace at a time per engine.
        """
        if self._trace is not None:
            raise RuntimeError("this engine is already being traced")
        self._trace, self._traced = trace, {}
        try:
            yield
        finally:
            self._trace, self._traced = None, {}

    def _catalog_writer(self) -> CatalogWriter | None:
        # `file_classified` hooks may read the catalog: they get it written, as before
        if self.dry_run or self.db is None or self.catalog is None or self._notify_classified:
            return None
        path = store_path(self.db)
        return CatalogWriter(path, self.ruleset.roots) if path else None

    def reset_run(self) -> None:
        """Forget which files this run acted on (a daemon treats each batch as a run).

        Within one run the engine skips a file it already moved when a walk meets it
        again; inode numbers are reused, so a long-lived engine must forget them.
        """
        self._handled.clear()
        self.facts.copies.reset()

    def spare_newest(self, rule: Rule, candidates: list[Candidate]) -> list[Candidate]:
        """`keep_newest: N`: the candidates to act on, sparing the N newest matching files
        of each `group_by` group (one group when the rule has no `group_by`)."""
        if rule.keep_newest is None:
            return candidates
        matcher = self._matcher(rule, traced=False)  # the rule itself is traced when it runs
        groups: dict[str, list[tuple[int, int]]] = {}
        for start in range(0, len(candidates), self.batch_size):
            chunk = candidates[start : start + self.batch_size]
            for offset, file in enumerate(self._classify(chunk)):
                fields: dict[str, Any] = {}
                try:
                    matched = matcher(file, fields)
                except Exception:  # the failing filter is reported when the rule runs
                    matched = False
                if not matched:
                    continue
                key = self._group_key(rule, file, fields)
                groups.setdefault(key, []).append((file.st.st_mtime_ns, start + offset))
        acted: list[int] = []
        for members in groups.values():
            members.sort(reverse=True)
            acted.extend(index for _, index in members[rule.keep_newest :])
            if self._trace is not None:
                for _, index in members[: rule.keep_newest]:
                    self._trace.spared(rule, candidates[index].path)
        return [candidates[i] for i in sorted(acted)]

    def _group_key(self, rule: Rule, file: FileInfo, fields: dict[str, Any]) -> str:
        if not rule.group_by:
            return ""
        try:
            return self.renderer.render_text(rule.group_by, file.fields(fields))
        except Exception as exc:  # a group that cannot be named is its own group
            return f"<{type(exc).__name__}>"

    # --- one batch -------------------------------------------------------------------------
    def _process_batch(
        self,
        batch: list[Candidate],
        trigger: str,
        summary: Summary,
        rule_names: set[str] | None,
        seen_ids: set[int] | None,
        writer: CatalogWriter | None = None,
    ) -> None:
        files = self._classify(batch)
        if self._in_place and self.db is not None:
            known = [f.file_id for f in files if f.file_id is not None]
            self._done = done_in_place(self.db, known, self._in_place)
        if not self.dry_run:
            self._catalog_new(files)
        if seen_ids is not None:
            seen_ids.update(f.file_id for f in files if f.file_id is not None)
        requests: list[OpRequest] = []
        plans: list[_FilePlan] = []
        for file in files:
            summary.seen += 1
            key = (file.st.st_dev, file.st.st_ino)
            if key in self._handled:
                # a file this run already moved, met again further down the walk; its
                # catalog row may still be on its way, so say it was seen by its id
                handled = self._handled[key]
                if seen_ids is not None and handled is not None:
                    seen_ids.add(handled)
                continue
            plan = self._plan(file, trigger, rule_names, requests)
            if plan.rules:
                summary.matched += 1
            if plan.error:
                summary.error(f"{file.path}: {plan.error}")
                self._record_file_error(file, plan.error)
            plans.append(plan)
            self.facts.copies.met(file)
        batch_id = new_batch_id()
        results = self._execute(requests, batch_id)
        if requests and not self.dry_run:
            summary.batches.append(batch_id)
        for plan in plans:
            self._finish(plan, results, summary)
        self.facts.copies.end_batch()
        hashes, self.facts.copies.learned = self.facts.copies.learned, []
        if not self.dry_run and self.catalog is not None:
            rows = self._catalog_rows(plans, results)
            if (rows or hashes) and writer is not None:
                writer.write(results, rows, hashes)
            elif rows or hashes:
                with write_txn(self.db):  # type: ignore[arg-type]
                    self.catalog.write_batch(results, rows, self.ruleset.roots, hashes)
        if self._notify_classified:
            for plan in plans:
                self._call_hook("file_classified", plan.file, file=plan.file)

    def _classify(self, batch: list[Candidate]) -> list[FileInfo]:
        cached: dict[tuple[str, str], CatalogRow] = {}
        if self.catalog is not None:
            by_root: dict[str, list[str]] = {}
            skip = self._uncatalogued
            for c in batch:
                if c.root.name not in skip:
                    by_root.setdefault(c.root.name, []).append(c.relpath)
            for root_name, relpaths in by_root.items():
                for relpath, row in self.catalog.rows_for(root_name, relpaths).items():
                    cached[(root_name, relpath)] = row
        return [
            FileInfo(
                c.root, c.path, c.relpath, c.st, self.facts, cached.get((c.root.name, c.relpath))
            )
            for c in batch
        ]

    def _catalog_new(self, files: list[FileInfo]) -> None:
        """Reserve catalog ids for first-seen files, so their ops can name them.

        Their rows are written once, after the batch, where the files ended up.
        """
        new = [f for f in files if f.file_id is None]
        if not new or self.catalog is None:
            return
        first = self.catalog.reserve_ids(len(new))
        for offset, file in enumerate(new):
            file.file_id = first + offset
            file.unsaved = True

    # --- matching and planning -------------------------------------------------------------
    def rules_for(self, root: str, trigger: str, rule_names: set[str] | None) -> list[Rule]:
        """The rules that run, in order, for a file of `root` on `trigger` (see `rule_skip`)."""
        key = (root, trigger, frozenset(rule_names) if rule_names else None)
        rules = self._rules_cache.get(key)
        if rules is None:
            skip = self.rule_skip
            rules = self._rules_cache[key] = [
                r for r in self.ruleset.rules if skip(r, root, trigger, rule_names) is None
            ]
        return rules

    def rule_skip(
        self, rule: Rule, root: str, trigger: str, rule_names: set[str] | None
    ) -> Skip | None:
        """Why `rule` does not run for a file of `root` on `trigger` (None: it runs).

        `rule_names`: the caller named the rules to run (`clerk scan --rule`, a lifecycle
        sweep); then only those run, lifecycle rules and `on:` notwithstanding.
        """
        if rule_names and rule.name not in rule_names:
            return Skip("not selected", f"not selected (only {', '.join(sorted(rule_names))})")
        return rule.skip(root, trigger, named=bool(rule_names))

    def _plan(
        self,
        file: FileInfo,
        trigger: str,
        rule_names: set[str] | None,
        requests: list[OpRequest],
    ) -> _FilePlan:
        plan = _FilePlan(file, [], [])
        current = file
        moved_to: str | None = None  # where a planned move takes the file (view made lazily)
        last_request: int | None = None
        walk_follows = file.root.follow_symlinks  # then file.st is not an lstat
        trace = self._trace
        if trace is not None:
            trace.begin(file)
        for rule in self.rules_for(file.root.name, trigger, rule_names):
            if moved_to is not None:
                current, moved_to = self._view_at(current, moved_to), None
            if rule.after is not None and rule.waiting(current.st.st_mtime, self._now()):
                if trace is not None:
                    trace.waiting(rule, current, self._now())
                continue  # `after:` not unchanged long enough yet (the daemon looks again)
            fields: dict[str, Any] = {}
            if trace is not None:
                trace.judging(rule, current)
            try:
                matched = self._matcher(rule)(current, fields)
            except Exception as exc:  # a filter bug must not stop the run
                failure = failed("filter", exc, current)
                plan.error = f"rule {rule.name}: {failure}"
                if trace is not None:
                    trace.judged(rule, None, failure)
                return plan
            if trace is not None:
                trace.judged(rule, matched)
            if not matched:
                continue
            plan.rules.append(rule.name)
            earlier = self._done_before(rule, file)
            if earlier is not None:
                plan.already_done.append(rule.name)
                if trace is not None:
                    trace.already_done(rule, earlier)
                if not rule.continue_:
                    if trace is not None:
                        trace.stopped(rule, None, False)
                    break
                continue
            gone = False
            for step in rule.actions:
                action = step.action
                if isinstance(action, EffectAction):
                    plan.steps.append(_Step(rule.name, action, fields))
                    continue
                if gone:
                    plan.error = f"rule {rule.name}: {step.name} after the file was removed"
                    break
                if moved_to is not None:
                    current, moved_to = self._view_at(current, moved_to), None
                target = Target(
                    current, current.path, current.fields(fields), self.renderer, rule.name,
                    self.dry_run,
                )  # fmt: skip
                try:
                    request = action.request(target)  # type: ignore[attr-defined]
                except ClerkError as exc:
                    plan.error = f"rule {rule.name}: {step.name}: {exc}"
                    break
                except Exception as exc:
                    plan.error = f"rule {rule.name}: {failed(step.name, exc, current)}"
                    break
                if request is None:
                    continue
                request.rule, request.file_id, request.chain = rule.name, file.file_id, last_request
                if last_request is None and request.src == file.path and not walk_follows:
                    request.source_stat = file.st  # the walk's lstat: fileops need not stat again
                requests.append(request)
                last_request = len(requests) - 1
                plan.steps.append(_Step(rule.name, action, fields, last_request))  # type: ignore[arg-type]
                if request.kind in RELOCATING and request.dst:
                    moved_to = request.dst
                elif request.kind in _REMOVING or (
                    request.kind == "archive" and not request.options.get("keep_source")
                ):
                    gone = True
                    self.facts.copies.leaving(file)  # nobody's original any more
            if plan.error or not rule.continue_ or gone:
                if trace is not None:
                    trace.stopped(rule, plan.error, gone)
                break
        return plan

    def _done_before(self, rule: Rule, file: FileInfo) -> int | None:
        """The op by which `rule` already acted on this version of the file, if it is a
        rule that leaves the file in place (a copy, a link, an archive keeping the
        source): that is not done again until the file changes or the op is undone.
        A move takes the file away, a tag is the same again: those rules always run."""
        if file.file_id is None:
            return None
        found = self._done.get((file.file_id, rule.name))
        if found is None:
            return None
        op_id, size, mtime_ns = found
        return op_id if (file.st.st_size, file.st.st_mtime_ns) == (size, mtime_ns) else None

    def _now(self) -> float:
        """The time `after:` is measured against: the run's `now` (set per batch by the
        daemon), like the age filters."""
        return self.facts.now.timestamp()

    def _matcher(self, rule: Rule, *, traced: bool = True) -> Matcher:
        if traced and self._trace is not None:
            matcher = self._traced.get(id(rule))
            if matcher is None:
                matcher = self._traced[id(rule)] = compile_match(rule.match, self._trace.verdict)
            return matcher
        matcher = self._matchers.get(id(rule))
        if matcher is None:
            matcher = self._matchers[id(rule)] = compile_match(rule.match)
        return matcher

    def _view_at(self, file: FileInfo, path: str) -> FileInfo:
        located = self.ruleset.roots.locate(path)
        root, relpath = located if located else (file.root, os.path.basename(path))
        return file.at(root, path, relpath)

    # --- acting ----------------------------------------------------------------------------
    def _execute(self, requests: list[OpRequest], batch_id: str) -> list[OpResult]:
        if not requests:
            return []
        if self.dry_run and self.fileops is None:
            return [
                OpResult(r.kind, r.src, r.dst, "planned", rule=r.rule, file_id=r.file_id)
                for r in requests
            ]
        results: list[OpResult] = self.fileops.execute(requests, batch=batch_id)
        for result in results:
            if result.status == "done" and result.dst_inode is not None and result.dst_dev:
                self._handled[result.dst_dev, result.dst_inode] = result.file_id
            if self._notify_op:
                self._call_hook("op_done", None, result=result)
        return results

    def _finish(self, plan: _FilePlan, results: list[OpResult], summary: Summary) -> None:
        outcome = FileOutcome(plan.file.path, plan.rules, error=plan.error,
                              already_done=plan.already_done)  # fmt: skip
        if plan.already_done:
            summary.already_done += 1
        path, broken = plan.file.path, False
        current = plan.file
        trace = self._trace
        for step in plan.steps:
            if step.request_index is not None:
                result = results[step.request_index]
                outcome.ops.append(result)
                if trace is not None:
                    trace.action(plan.file, step.rule, result.kind, op=result)
                if result.status == "done":
                    summary.done[result.kind] += 1
                elif result.status == "planned":
                    summary.planned[result.kind] += 1
                elif result.status == "skipped":
                    summary.skipped += 1
                    broken = broken or result.kind in RELOCATING
                else:
                    summary.error(f"{result.src}: {result.kind}: {result.error}")
                    broken = True
                if result.ok and result.kind in RELOCATING and result.dst:
                    path = result.dst
                    if result.status == "done":  # facts are read there from now on
                        plan.file.moved_to(self._view_at(plan.file, path))
                continue
            effect = step.action
            assert isinstance(effect, EffectAction)
            if broken:
                if trace is not None:
                    trace.action(plan.file, step.rule, _effect_name(effect),
                                 error="not done: an earlier action did not complete")  # fmt: skip
                continue
            if current.path != path:
                current = self._view_at(current, path)
            target = Target(
                current, path, current.fields(step.fields), self.renderer, step.rule, self.dry_run,
                self.run_sink,
            )  # fmt: skip
            try:
                if self.dry_run:
                    outcome.effects.append(effect.describe(target))
                    summary.planned[_effect_name(effect)] += 1
                else:
                    note = effect.apply(target)
                    outcome.effects.append(note or effect.describe(target))
                    summary.done[_effect_name(effect)] += 1
            except Exception as exc:  # a plugin action failing is this file's failure only
                message = f"rule {step.rule}: {type(effect).__name__} failed: {exc}"
                summary.error(f"{plan.file.path}: {message}")
                self._record_file_error(plan.file, message)
                outcome.error = message
                if trace is not None:
                    trace.action(plan.file, step.rule, _effect_name(effect), error=message)
            else:
                if trace is not None:
                    trace.action(plan.file, step.rule, _effect_name(effect),
                                 effect=outcome.effects[-1])  # fmt: skip
        if trace is not None:
            trace.finished(plan.file, outcome)
        if self.keep_outcomes and (plan.rules or plan.error):
            summary.outcomes.append(outcome)

    def _catalog_rows(self, plans: list[_FilePlan], results: list[OpResult]) -> list[CatalogRow]:
        """Rows to write after the batch: only for files whose row changed.

        A file of this batch that a later one's `overwrite` trashed is trashed (the
        catalog's `trash_displaced` sees only the rows written before the batch).
        """
        rows: list[CatalogRow | None] = []
        here: dict[str, int] = {}  # where this batch's files are now -> their row's index
        for plan in plans:
            file = plan.file
            root, relpath, state, path = file.root, file.relpath, "present", file.path
            moved = False
            for step in plan.steps:
                if step.request_index is None:
                    continue
                result = results[step.request_index]
                if result.status != "done":
                    break
                displaced = result.displaced
                if displaced is not None and displaced.status == "done":
                    victim = here.pop(os.path.normpath(displaced.src), None)
                    trashed = rows[victim] if victim is not None else None
                    if trashed is not None:
                        trashed.state = "trashed"
                if result.kind in RELOCATING and result.dst:
                    located = self.ruleset.roots.locate(result.dst)
                    if located:
                        root, relpath = located
                        path, moved = result.dst, True
                elif result.kind == "trash":
                    state = "trashed"
                elif result.kind == "delete":
                    state = "deleted"
                elif result.kind == "archive" and not os.path.lexists(result.src):
                    state = "archived"
            changed = (
                moved
                or state != "present"
                or file.computed
                or file.cached is None
                or any(isinstance(s.action, EffectAction) for s in plan.steps)
            )
            row = None
            if changed:
                row = _row_for(file, root, relpath)
                row.state = state
            if state == "present":
                here[path] = len(rows)
            rows.append(row)
        return [row for row in rows if row is not None]

    # --- helpers ---------------------------------------------------------------------------
    def _scan_targets(
        self, paths: list[str], root_names: list[str], only: set[str] | None, trigger: str
    ) -> Iterator[tuple[Root, str | None, bool]]:
        roots = self.ruleset.roots
        if paths:
            for path in paths:
                absolute = os.path.normpath(os.path.abspath(os.path.expanduser(path)))
                if absolute in roots.names or path in roots.names:
                    yield roots[path], None, True
                    continue
                located = roots.locate(absolute)
                if located is None:
                    raise ClerkError(f"{path} is not inside any root")
                if not os.path.exists(absolute):
                    raise ClerkError(f"{path} does not exist")
                root, relpath = located
                refuse_ignored(path, root, relpath, is_dir=os.path.isdir(absolute))
                yield root, absolute, absolute == root.path
            return
        names = root_names or self._roots_in_use(only, trigger)
        for name in names:
            if name not in roots:
                raise ClerkError(f"no root named {name!r} (roots: {', '.join(roots.names)})")
            root = roots[name]
            if not os.path.isdir(root.path):
                raise ClerkError(f"root {name!r}: {root.path} is not a directory")
            yield root, None, True

    def _roots_in_use(self, only: set[str] | None, trigger: str) -> list[str]:
        names: list[str] = []
        for rule in self.ruleset.rules:
            names.extend(
                n for n in rule.roots
                if n not in names and self.rule_skip(rule, n, trigger, only) is None
            )  # fmt: skip
        return names

    def _walk_error(self, summary: Summary) -> Callable[[str, OSError], None]:
        def on_error(path: str, exc: OSError) -> None:
            summary.error(unreadable(path, exc))

        return on_error

    def _fact_error(self, file: FileInfo, what: str, exc: Exception) -> None:
        message = failed(what, exc, file)
        self._fact_errors.append(f"{file.path}: {message}")
        self._record_file_error(file, message)

    def _record_file_error(self, file: FileInfo, message: str) -> None:
        # not logged here: the summary carries it, and its caller shows it once (scan
        # prints `error:` lines, the daemon logs them)
        if self.db is None or self.dry_run:
            return
        record_file_error(self.db, file.path, message, file_id=file.file_id)

    def _call_hook(self, name: str, subject: FileInfo | None, **kwargs: Any) -> None:
        try:
            getattr(self.hooks.hook, name)(**kwargs)
        except Exception as exc:
            log.warning("%shook %s failed: %s", f"{subject.path}: " if subject else "", name, exc)
            if subject is not None:
                self._record_file_error(subject, f"hook {name} failed: {exc}")


def _row_for(file: FileInfo, root: Root, relpath: str) -> CatalogRow:
    st = file.st
    return CatalogRow(
        file.file_id,
        root.name,
        relpath,
        st.st_size,
        st.st_mtime_ns,
        st.st_dev,
        st.st_ino,
        file.mime_if_known,
        file.hash_if_known,
        set(file.tags),
        dict(file.known_attrs),
    )


Matcher = Callable[[FileInfo, dict[str, Any]], bool]
#: told each node's verdict as a traced matcher decides it: a filter's `Verdict` (or the
#: plain bool a plugin answered, or the exception it raised), a combinator's bool
VerdictHook = Callable[[MatchNode, "Verdict | bool | Exception"], None]


def compile_match(node: MatchNode, hook: VerdictHook | None = None) -> Matcher:
    """Turn a match tree into nested closures: the per-file path does no dispatch.

    With `hook`, each node reports its verdict as it is decided (`clerk explain`): the
    same closures in the same order with the same short cuts, so a node that was not
    needed for the answer is not asked and not reported.
    """
    matcher = _compile(node, hook)
    if hook is None or isinstance(node, FilterNode):
        return matcher
    return _reporting(node, matcher, hook)


def _compile(node: MatchNode, hook: VerdictHook | None) -> Matcher:
    if isinstance(node, FilterNode):
        match: Callable[[FileInfo], Verdict] = node.filter.match
        if hook is not None:
            match = _reporting_filter(node, match, hook)

        def leaf(file: FileInfo, fields: dict[str, Any]) -> bool:
            verdict = match(file)
            if verdict.__class__ is bool:  # a plugin may answer with a plain bool
                return verdict
            if verdict.matched:
                if verdict.fields:
                    fields.update(verdict.fields)
                return True
            return False

        return leaf
    if isinstance(node, NotNode):
        inner = compile_match(node.child, hook)
        return lambda file, fields: not inner(file, {})
    children = [compile_match(child, hook) for child in _by_cost(node)]
    if len(children) == 1:
        return children[0]
    if isinstance(node, AllNode):
        if not children:
            return lambda file, fields: True
        return lambda file, fields: all(child(file, fields) for child in children)
    return lambda file, fields: any(child(file, fields) for child in children)


def _reporting_filter(
    node: FilterNode, match: Callable[[FileInfo], Verdict], hook: VerdictHook
) -> Callable[[FileInfo], Verdict]:
    def reporting(file: FileInfo) -> Verdict:
        try:
            verdict = match(file)
        except Exception as exc:
            hook(node, exc)
            raise
        hook(node, verdict)
        return verdict

    return reporting


def _reporting(node: MatchNode, matcher: Matcher, hook: VerdictHook) -> Matcher:
    def reporting(file: FileInfo, fields: dict[str, Any]) -> bool:
        matched = matcher(file, fields)
        hook(node, matched)
        return matched

    return reporting


def _by_cost(node: AllNode | AnyNode) -> list[MatchNode]:
    ordered = getattr(node, "_ordered", None)
    if ordered is None:
        ordered = sorted(node.children, key=_node_cost)
        node._ordered = ordered  # type: ignore[union-attr]
    return ordered


def _node_cost(node: MatchNode) -> int:
    if isinstance(node, FilterNode):
        return node.filter.cost
    if isinstance(node, NotNode):
        return _node_cost(node.child)
    return max((_node_cost(c) for c in node.children), default=0)


def _leaves_in_place(rule: Rule) -> bool:
    """Does every file operation of `rule` leave the file where it is (and is there one)?"""
    kinds = [
        (getattr(step.action, "kind", None), getattr(step.action, "keep_source", False))
        for step in rule.actions
        if not isinstance(step.action, EffectAction)
    ]
    return bool(kinds) and all(
        kind in IN_PLACE_KINDS and (kind != "archive" or keep) for kind, keep in kinds
    )


def _copy_orders(rule: Rule) -> set[str]:
    """The orders `rule`'s filters pick originals by (see `Filter.copies`)."""
    orders: set[str] = set()
    stack: list[MatchNode] = [rule.match]
    while stack:
        node = stack.pop()
        if isinstance(node, FilterNode):
            asks = getattr(node.filter, "copies", None)
            order = asks() if callable(asks) else None
            if order:
                orders.add(order)
        elif isinstance(node, NotNode):
            stack.append(node.child)
        else:
            stack.extend(node.children)
    return orders


def _effect_name(effect: EffectAction) -> str:
    name = type(effect).__name__
    return name[:-6].lower() if name.endswith("Action") else name


def _has_impls(hooks: Any, name: str) -> bool:
    if hooks is None:
        return False
    return bool(getattr(hooks.hook, name).get_hookimpls())


def _chunks(items: Iterable[Candidate], size: int) -> Iterator[list[Candidate]]:
    chunk: list[Candidate] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
