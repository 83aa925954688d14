"""The rules engine: the one way clerk applies rules to files.

`clerk scan`, `clerk explain` and the daemon all go through `Engine`. Files are handled
in batches: the catalog rows of a batch are read in one query, every file is classified
and matched (cheap filters first, expensive facts only when a rule needs them), the
planned file operations of the whole batch go to fileops in one call (one journal
commit for the intents, one for the outcomes), then effects run (tags, plugin actions)
with each file's final path, and the catalog is updated in one transaction.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from clerk.errors import ClerkError
from clerk.fileops.execute import new_batch_id
from clerk.fileops.types import OpRequest, OpResult
from clerk.plugins.api import EffectAction, FileOpAction, Target, Verdict
from clerk.plugins.manager import Registry
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
)
from clerk.rules.templates import Renderer
from clerk.rules.walk import Candidate, candidate_for, walk_root
from clerk.store import store_path, write_txn
from clerk.store.catalog import Catalog, CatalogRow, CatalogWriter

log = logging.getLogger("clerk.engine")

MAX_ERRORS_KEPT = 200
_REMOVING = frozenset({"trash", "delete"})
_RELOCATING = frozenset({"move", "rename"})


@dataclass
class FileOutcome:
    """What happened to one file (for `--json` and `clerk explain`)."""

    path: str
    rules: list[str]
    ops: list[OpResult] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "rules": self.rules,
            "ops": [
                {k: v for k, v in dataclasses.asdict(r).items() if v is not None} for r in self.ops
            ],
            "effects": self.effects,
            "error": self.error,
        }


@dataclass
class Summary:
    seen: int = 0
    matched: int = 0
    done: Counter[str] = field(default_factory=Counter)
    planned: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    failed: int = 0
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
    ):
        self.ruleset = ruleset
        self.registry = registry
        self.db = db
        self.catalog = Catalog(db) if db is not None else None
        self.dry_run = dry_run
        self.batch_size = batch_size
        self.keep_outcomes = keep_outcomes
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
        self._rules_cache: dict[tuple[str, str], list[Rule]] = {}
        # (dev, inode) acted on in this run -> its catalog id
        self._handled: dict[tuple[int, int], int | None] = {}
        self._matchers: dict[int, Matcher] = {}
        self._uncatalogued: set[str] = set()  # roots walked now that had no catalog rows
        self._fact_errors: list[str] = []  # classifier/MIME/hash failures, for the summary
        self._writer: CatalogWriter | None = None  # set inside `writing_behind()`

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
        for root, start, full in self._scan_targets(list(paths), list(root_names), only):
            if start is not None and os.path.isfile(start):
                candidate = candidate_for(start, self.ruleset.roots)
                candidates: Iterable[Candidate] = [candidate] if candidate else []
            else:
                candidates = walk_root(
                    root, self.ruleset.roots, start=start, on_error=self._walk_error(summary)
                )
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
                    self.facts.sync_catalog = writer.wait if writer is not None else None
                self._process_batch(batch, trigger, summary, rule_names, seen_ids, writer)
                for message in self._fact_errors:
                    summary.error(message)
                self._fact_errors.clear()
                if progress is not None:
                    progress(len(batch))
        finally:
            if writer is not None and writer is not shared:
                self.facts.sync_catalog = None
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
        self._writer, self.facts.sync_catalog = writer, writer.wait
        try:
            yield
        finally:
            self._writer, self.facts.sync_catalog = None, None
            writer.close()

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

    def spare_newest(self, rule: Rule, candidates: list[Candidate]) -> list[Candidate]:
        """`keep_newest: N`: the candidates to act on, sparing the N newest matching files
        of each `group_by` group (one group when the rule has no `group_by`)."""
        if rule.keep_newest is None:
            return candidates
        matcher = self._matcher(rule)
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
            self.facts.remember(file)
        batch_id = new_batch_id()
        results = self._execute(requests, batch_id)
        if requests and not self.dry_run:
            summary.batches.append(batch_id)
        for plan in plans:
            self._finish(plan, results, summary)
        if not self.dry_run and self.catalog is not None:
            rows = list(self._catalog_rows(plans, results))
            if rows and writer is not None:
                writer.write(results, rows)
            elif rows:
                with write_txn(self.db):  # type: ignore[arg-type]
                    self.catalog.trash_displaced(results, self.ruleset.roots)
                    self.catalog.upsert(rows)
        self.facts.forget_pending()
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
        key = (root, trigger)
        rules = self._rules_cache.get(key)
        if rules is None:
            if rule_names:
                rules = [r for r in self.ruleset.rules if root in r.roots and r.enabled]
            else:
                rules = self.ruleset.rules_for(root, trigger)
            self._rules_cache[key] = rules
        if rule_names:
            return [r for r in rules if r.name in rule_names]
        return rules

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
        for rule in self.rules_for(file.root.name, trigger, rule_names):
            if moved_to is not None:
                current, moved_to = self._view_at(current, moved_to), None
            if rule.after is not None and rule.waiting(current.st.st_mtime, self._now()):
                continue  # `after:` not unchanged long enough yet (the daemon looks again)
            fields: dict[str, Any] = {}
            try:
                if not self._matcher(rule)(current, fields):
                    continue
            except Exception as exc:  # a filter bug must not stop the run
                plan.error = f"rule {rule.name}: filter failed: {type(exc).__name__}: {exc}"
                return plan
            plan.rules.append(rule.name)
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
                    plan.error = (
                        f"rule {rule.name}: {step.name} failed: {type(exc).__name__}: {exc}"
                    )
                    break
                if request is None:
                    continue
                request.rule, request.file_id, request.chain = rule.name, file.file_id, last_request
                if last_request is None and request.src == file.path and not walk_follows:
                    request.source_stat = file.st  # the walk's lstat: fileops need not stat again
                requests.append(request)
                last_request = len(requests) - 1
                plan.steps.append(_Step(rule.name, action, fields, last_request))  # type: ignore[arg-type]
                if request.kind in _RELOCATING and request.dst:
                    moved_to = request.dst
                elif request.kind in _REMOVING or (
                    request.kind == "archive" and not request.options.get("keep_source")
                ):
                    gone = True
            if plan.error or not rule.continue_ or gone:
                break
        return plan

    def _now(self) -> float:
        """The time `after:` is measured against: the run's `now` (set per batch by the
        daemon), like the age filters."""
        return self.facts.now.timestamp()

    def _matcher(self, rule: Rule) -> Matcher:
        matcher = self._matchers.get(id(rule))
        if matcher is None:
            matcher = self._matchers[id(rule)] = compile_match(rule.match)
        return matcher

    def _view_at(self, file: FileInfo, path: str) -> FileInfo:
        located = self.ruleset.roots.locate(path)
        root, relpath = located if located else (file.root, os.path.basename(path))
        return file.at(root, path, relpath)

    def matches(
        self,
        node: MatchNode,
        file: FileInfo,
        fields: dict[str, Any],
        trace: list[tuple[FilterNode, Verdict]] | None = None,
    ) -> bool:
        """Evaluate a match tree. With `trace`, every filter runs and reports its verdict."""
        if isinstance(node, FilterNode):
            verdict = node.filter.match(file)
            if not isinstance(verdict, Verdict):
                verdict = Verdict(bool(verdict))
            if trace is not None:
                trace.append((node, verdict))
            if verdict.matched:
                fields.update(verdict.fields)
            return verdict.matched
        if isinstance(node, NotNode):
            return not self.matches(node.child, file, {}, trace)
        children = _by_cost(node)
        if isinstance(node, AllNode):
            ok = True
            for child in children:
                if not self.matches(child, file, fields, trace):
                    ok = False
                    if trace is None:
                        return False
            return ok
        assert isinstance(node, AnyNode)
        hit = False
        for child in children:
            if self.matches(child, file, fields, trace):
                hit = True
                if trace is None:
                    return True
        return hit

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
        outcome = FileOutcome(plan.file.path, plan.rules, error=plan.error)
        path, broken = plan.file.path, False
        current = plan.file
        for step in plan.steps:
            if step.request_index is not None:
                result = results[step.request_index]
                outcome.ops.append(result)
                if result.status == "done":
                    summary.done[result.kind] += 1
                elif result.status == "planned":
                    summary.planned[result.kind] += 1
                elif result.status == "skipped":
                    summary.skipped += 1
                    broken = broken or result.kind in _RELOCATING
                else:
                    summary.error(f"{result.src}: {result.kind}: {result.error}")
                    broken = True
                if result.ok and result.kind in _RELOCATING and result.dst:
                    path = result.dst
                continue
            if broken:
                continue
            if current.path != path:
                current = self._view_at(current, path)
            target = Target(
                current, path, current.fields(step.fields), self.renderer, step.rule, self.dry_run
            )
            effect = step.action
            assert isinstance(effect, EffectAction)
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
        if self.keep_outcomes and (plan.rules or plan.error):
            summary.outcomes.append(outcome)

    def _catalog_rows(
        self, plans: list[_FilePlan], results: list[OpResult]
    ) -> Iterator[CatalogRow]:
        """Rows to write after the batch: only for files whose row changed."""
        for plan in plans:
            file = plan.file
            root, relpath, state = file.root, file.relpath, "present"
            moved = False
            for step in plan.steps:
                if step.request_index is None:
                    continue
                result = results[step.request_index]
                if result.status != "done":
                    break
                if result.kind in _RELOCATING and result.dst:
                    located = self.ruleset.roots.locate(result.dst)
                    if located:
                        root, relpath = located
                        moved = True
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
            if changed:
                row = _row_for(file, root, relpath)
                row.state = state
                yield row

    # --- explain ---------------------------------------------------------------------------
    def explain(self, path: str) -> dict[str, Any]:
        """Every rule's verdict for one file, with rendered destinations; changes nothing."""
        candidate = candidate_for(path, self.ruleset.roots)
        if candidate is None:
            raise ClerkError(f"{path} is not a regular file inside any root")
        file = self._classify([candidate])[0]
        report: dict[str, Any] = {
            "path": file.path,
            "root": file.root.name,
            "relpath": file.relpath,
            "rules": [],
        }
        first_match: str | None = None
        for rule in self.ruleset.rules:
            if file.root.name not in rule.roots:
                continue
            trace: list[tuple[FilterNode, Verdict]] = []
            fields: dict[str, Any] = {}
            try:
                matched = self.matches(rule.match, file, fields, trace)
            except Exception as exc:
                report["rules"].append({"rule": rule.name, "error": str(exc)})
                continue
            entry: dict[str, Any] = {
                "rule": rule.name,
                "matched": matched,
                "lifecycle": rule.is_lifecycle,
                "filters": [
                    {
                        "filter": node.name,
                        "where": str(node.where),
                        "matched": v.matched,
                        "reason": v.reason,
                    }
                    for node, v in trace
                ],
                "actions": [],
            }
            wait = rule.waiting(file.st.st_mtime, self._now())
            if matched and wait:
                matched = entry["matched"] = False
                entry["waiting"] = _waiting_reason(rule, file.st.st_mtime, self._now())
                entry["filters"].append({"filter": "after", "where": str(rule.where),
                                         "matched": False, "reason": entry["waiting"]})  # fmt: skip
            if matched:
                entry["actions"] = self._describe_actions(rule, file, fields)
                if first_match is None and not rule.is_lifecycle:
                    first_match = rule.name
            report["rules"].append(entry)
        report["would_apply"] = first_match
        report["facts"] = {
            "size": file.size,
            "mtime": file.mtime.isoformat(timespec="seconds"),
            "mime": file.mime_if_known,
            "tags": sorted(file.tags),
        }
        return report

    def _describe_actions(self, rule: Rule, file: FileInfo, fields: dict[str, Any]) -> list[str]:
        lines, current = [], file
        for step in rule.actions:
            target = Target(
                current, current.path, current.fields(fields), self.renderer, rule.name, True
            )
            try:
                if isinstance(step.action, EffectAction):
                    lines.append(step.action.describe(target))
                    continue
                request = step.action.request(target)  # type: ignore[attr-defined]
            except Exception as exc:
                lines.append(f"{step.name}: error: {exc}")
                break
            if request is None:
                lines.append(f"{step.name}: nothing to do")
                continue
            lines.append(f"{request.kind} -> {request.dst}" if request.dst else request.kind)
            if request.kind in _RELOCATING and request.dst:
                current = self._view_at(current, request.dst)
        return lines

    # --- helpers ---------------------------------------------------------------------------
    def _scan_targets(
        self, paths: list[str], root_names: list[str], only: set[str] | None
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
                root = located[0]
                yield root, absolute, absolute == root.path
            return
        names = root_names or self._roots_in_use(only)
        for name in names:
            if name not in roots:
                raise ClerkError(f"no root named {name!r} (roots: {', '.join(roots.names)})")
            root = roots[name]
            if not os.path.isdir(root.path):
                raise ClerkError(f"root {name!r}: {root.path} is not a directory")
            yield root, None, True

    def _roots_in_use(self, only: set[str] | None) -> list[str]:
        names: list[str] = []
        for rule in self.ruleset.rules:
            if not rule.enabled or (only and rule.name not in only):
                continue
            if not only and (rule.is_lifecycle or "scan" not in rule.on):
                continue
            names.extend(n for n in rule.roots if n not in names)
        return names

    def _walk_error(self, summary: Summary) -> Callable[[str, OSError], None]:
        def on_error(path: str, exc: OSError) -> None:
            summary.error(f"{path}: cannot read: {exc.strerror or exc}")

        return on_error

    def _fact_error(self, file: FileInfo, what: str, exc: Exception) -> None:
        message = f"{what} failed: {type(exc).__name__}: {exc}"
        self._fact_errors.append(f"{file.path}: {message}")
        self._record_file_error(file, message)

    def _record_file_error(self, file: FileInfo, message: str) -> None:
        log.warning("%s: %s", file.path, message)
        if self.db is None or self.dry_run:
            return
        self.db.execute(
            "INSERT INTO events (ts, kind, subject, data) VALUES (?, 'file_error', ?, ?)",
            [
                time.time(),
                file.path.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                json.dumps({"error": message, "file_id": file.file_id}),
            ],
        )

    def _call_hook(self, name: str, subject: FileInfo | None, **kwargs: Any) -> None:
        try:
            getattr(self.hooks.hook, name)(**kwargs)
        except Exception as exc:
            if subject is not None:
                self._record_file_error(subject, f"hook {name} failed: {exc}")
            else:
                log.warning("hook %s failed: %s", name, exc)


def _waiting_reason(rule: Rule, mtime: float, now: float) -> str:
    age = _short_duration(max(0.0, now - mtime))
    return f"modified {age} ago, after: {_short_duration(rule.after or 0)}"


def _short_duration(seconds: float) -> str:
    """`90` -> `1m30s`, `3600` -> `1h`: the way rule files write durations."""
    whole, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    if whole or not parts:
        parts.append(f"{whole}s")
    return "".join(parts)


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


def compile_match(node: MatchNode) -> Matcher:
    """Turn a match tree into nested closures: the per-file path does no dispatch."""
    if isinstance(node, FilterNode):
        match = node.filter.match

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
        inner = compile_match(node.child)
        return lambda file, fields: not inner(file, {})
    children = [compile_match(child) for child in _by_cost(node)]
    if len(children) == 1:
        return children[0]
    if isinstance(node, AllNode):
        if not children:
            return lambda file, fields: True
        return lambda file, fields: all(child(file, fields) for child in children)
    return lambda file, fields: any(child(file, fields) for child in children)


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
