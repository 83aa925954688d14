"""Reconcile: compare a root on disk with the catalog by (dev, inode, size, mtime).

inotify drops events silently when its queue overflows, and nothing watches while the
daemon is down: this walk is what guarantees no file is missed. Only files that are new
or changed since the catalog last saw them go to the rules; a file that may still be
written goes to the settler first. The `Reconciler` walks the watched roots (at start,
on reload, on request, every `reconcile_interval`, and when events were lost);
`InFlight` keeps the files listed in flight, which a walk hands to the rules again.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sqlite_utils import Database

from clerk.roots import Root, RootSet
from clerk.rules.walk import Candidate, unreadable, walk_root
from clerk.store.catalog import Catalog, unchanged
from clerk.store.inflight import clear_inflight, drop_inflight, inflight, mark_inflight

if TYPE_CHECKING:
    from clerk.daemon.health import RootHealth
    from clerk.daemon.settle import Settler
    from clerk.rules.engine import Engine
    from clerk.rules.model import RuleSet

log = logging.getLogger("clerk.daemon")


@dataclass
class Walked:
    """One root's walk: what to process, and which catalog rows are still there."""

    new: list[Candidate] = field(default_factory=list)
    changed: list[Candidate] = field(default_factory=list)
    forced: list[tuple[Candidate, str]] = field(default_factory=list)  # (file, trigger)
    seen_ids: set[int] = field(default_factory=set)
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)


def walk_changes(db: Database, root: Root, roots: RootSet) -> Walked:
    known = Catalog(db).present_in(root.name)
    pending = inflight(db, root.name)
    walked = Walked()

    def on_error(path: str, exc: OSError) -> None:
        walked.errors.append(unreadable(path, exc))

    for candidate in walk_root(root, roots, on_error=on_error):
        st = candidate.st
        row = known.get(candidate.relpath)
        if row is None:
            walked.new.append(candidate)
            continue
        assert row.id is not None
        walked.seen_ids.add(row.id)
        trigger = pending.get(candidate.relpath)
        if trigger is not None:  # catalogued, but the run that took it never finished
            walked.forced.append((candidate, trigger))
        elif unchanged(row, st):
            walked.unchanged += 1
        else:
            walked.changed.append(candidate)
    return walked


class InFlight:
    """The files this daemon listed in flight (see clerk.store.inflight): listed until a
    batch handles them, and after a clean walk of their root only what is still listed."""

    def __init__(self, db: Database):
        self._db = db
        self._marked: set[tuple[str, str]] = set()  # (root, relpath)

    def mark(self, candidates: list[Candidate], trigger: str, now_wall: float) -> None:
        mark_inflight(self._db, candidates, trigger, now_wall)
        self._marked.update((c.root.name, c.relpath) for c in candidates)

    def unmark(self, batch: list[Candidate]) -> None:
        """A batch handled these files: those listed leave the list."""
        done = [c for c in batch if (c.root.name, c.relpath) in self._marked]
        if done:
            clear_inflight(self._db, done)
            self._marked.difference_update((c.root.name, c.relpath) for c in done)

    def walked(self, root: str, started: float) -> None:
        """A clean walk of `root` that began at `started` handled what was listed before."""
        drop_inflight(self._db, root, before=started)
        self._marked = {k for k in self._marked if k[0] != root}
        self._marked.update((root, relpath) for relpath in inflight(self._db, root))


class ApplyRules(Protocol):
    """How the reconciler hands files to the rules (the daemon's batches)."""

    def __call__(
        self, candidates: list[Candidate], trigger: str, *, seen_ids: set[int] | None = None
    ) -> object: ...


@dataclass
class Reconciled:
    """What a reconcile of one or more roots found."""

    new: int = 0
    changed: int = 0
    deferred: int = 0  # maybe still being written: left to the settler

    def add(self, other: Reconciled) -> None:
        self.new += other.new
        self.changed += other.changed
        self.deferred += other.deferred


class Reconciler:
    """Walks the watched roots, hands what is new, changed or in flight to the rules, and
    says when the next walk is due."""

    def __init__(
        self,
        db: Database,
        *,
        health: RootHealth,
        settler: Settler,
        inflight: InFlight,
        apply: ApplyRules,
        flush: Callable[[], None],
        stopping: Callable[[], bool],
        record_error: Callable[[str, str], None],
        interval: float,
    ):
        self._db = db
        self._health = health
        self._settler = settler
        self._inflight = inflight
        self._apply = apply
        self._flush = flush  # catalog rows still written behind: written before a walk
        self._stopping = stopping
        self._record_error = record_error
        # 0 turns the periodic reconcile off (start, reload and overflows still reconcile)
        self._every = interval if interval > 0 else float("inf")
        self._ruleset: RuleSet | None = None
        self._engine: Engine | None = None
        self._wanted: str | None = None  # why a walk is wanted before its time
        self.next_at = 0.0  # monotonic time of the next periodic walk
        self.reconciles = 0
        self.last: float | None = None  # wall time the last reconcile ended

    def use(self, ruleset: RuleSet, engine: Engine) -> None:
        self._ruleset = ruleset
        self._engine = engine

    def want(self, reason: str) -> None:
        """A walk is wanted at the next turn of the loop (events were lost)."""
        self._wanted = reason

    def due(self, now: float) -> bool:
        return self._wanted is not None or now >= self.next_at

    def schedule(self) -> None:
        """The next periodic walk is one interval from now."""
        self.next_at = time.monotonic() + self._every

    def reconcile_due(self) -> None:
        """The walk that is due (wanted, or the periodic one), then the next one's time."""
        reason = self._wanted or "interval"
        self._wanted = None
        self.reconcile(reason)
        self.schedule()

    def reconcile(self, reason: str) -> None:
        """Walk every watched root and handle what is new or changed since the catalog."""
        assert self._ruleset is not None
        self._flush()  # the walk compares with the catalog: all of it
        started = time.monotonic()
        totals = Reconciled()
        for root in self._ruleset.roots:
            if not root.watch:
                continue
            if self._stopping():
                return
            if not self._health.available(root):
                continue
            totals.add(self._reconcile_root(root))
        self.reconciles += 1
        self.last = time.time()
        log.info(
            "reconcile (%s): %d new, %d changed, %d deferred to settle (%.2fs)",
            reason, totals.new, totals.changed, totals.deferred, time.monotonic() - started,
        )  # fmt: skip

    def _reconcile_root(self, root: Root) -> Reconciled:
        assert self._ruleset is not None and self._engine is not None
        walk_started = time.time()
        walked = walk_changes(self._db, root, self._ruleset.roots)
        now_wall, now = time.time(), time.monotonic()
        deferred = 0
        todo: dict[str, list[Candidate]] = {"created": [], "scan": []}
        groups = [("created", c) for c in walked.new] + [("scan", c) for c in walked.changed]
        groups += [(trigger, c) for c, trigger in walked.forced]
        for trigger, candidate in groups:
            path = candidate.path
            if path in self._settler or self._settler.is_open(path):
                deferred += 1
            elif now_wall - candidate.st.st_mtime < root.settle:
                # maybe still being written: settle decides
                self._settler.touch(path, root, trigger, now)
                deferred += 1
            else:
                todo.setdefault(trigger, []).append(candidate)
        seen = set(walked.seen_ids)
        for trigger, candidates in todo.items():
            self._apply(candidates, trigger, seen_ids=seen)
        for error in walked.errors:
            self._record_error("reconcile", error)
        # Only a clean, complete walk of a root that is still there may say a file is gone:
        # an unmounted root or an unreadable directory must not empty the catalog.
        if not walked.errors and not self._stopping() and self._health.available(root):
            with self._db.atomic():
                assert self._engine.catalog is not None
                self._engine.catalog.mark_gone(root.name, seen)
            self._inflight.walked(root.name, walk_started)
        others = sum(len(v) for k, v in todo.items() if k != "created")
        return Reconciled(len(todo["created"]), others, deferred)


def root_device(root: Root) -> int | None:
    """The device of the root's directory, or None when it is not there."""
    try:
        st = os.stat(root.path)
    except OSError:
        return None
    return st.st_dev if stat.S_ISDIR(st.st_mode) else None
