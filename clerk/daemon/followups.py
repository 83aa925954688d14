"""Follow-ups: files the daemon looks at again later, without an event.

Two kinds: a file a rule with `after:` did not take yet because it changed too recently
(looked at again when the first such rule is due), and a file a rule moved into another
watched root (a chain: that root's rules see it arrive, since the watch event is ours
and ignored). Both wait in one due queue and are listed in flight meanwhile, so a
restart's reconcile looks at them again too. A file moved by rules more than MAX_HOPS
times within HOP_WINDOW is in a rule loop: it is left where it is, with an error.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from clerk.rules.walk import Candidate, candidate_for
from clerk.store import write_txn
from clerk.store.events import record_file_error

if TYPE_CHECKING:
    from sqlite_utils import Database

    from clerk.daemon.health import RootHealth
    from clerk.daemon.reconcile import InFlight
    from clerk.rules.engine import Engine, FileOutcome, Summary
    from clerk.rules.model import RuleSet

log = logging.getLogger("clerk.daemon")

AFTER_SLACK = 0.05  # look at an `after:` file this late: the monotonic and wall clocks drift
MAX_HOPS = 8  # rule moves of one file (dev, inode) within HOP_WINDOW before it is left be
HOP_WINDOW = 600.0
_RELOCATING = frozenset({"move", "rename"})


class FollowUps:
    """The due queue of `after:` waits and rule-chain hops, and the hop counts."""

    def __init__(
        self,
        db: Database,
        inflight: InFlight,
        health: RootHealth,
        record_error: Callable[[str, str], None],
    ):
        self._db = db
        self._inflight = inflight
        self._health = health
        self._record_error = record_error
        self._ruleset: RuleSet | None = None
        self._engine: Engine | None = None
        self._chain_roots: set[str] = set()
        # (monotonic due, seq, path, trigger); the latest request for a path wins
        self._due: list[tuple[float, int, str, str]] = []
        self._due_at: dict[str, float] = {}
        self._due_seq = itertools.count()
        self._hops: dict[tuple[int, int], tuple[int, float]] = {}  # -> (hops, first hop)
        self.hop_limited = 0

    def use(self, ruleset: RuleSet, engine: Engine) -> None:
        """The rules of a (re)load; what waits stays due."""
        self._ruleset = ruleset
        self._engine = engine
        # watched roots whose rules take arrivals: a rule moving a file there is a chain
        self._chain_roots = {
            r.name for r in ruleset.roots if r.watch and ruleset.rules_for(r.name, "moved")
        }

    @property
    def waiting(self) -> int:
        """How many files are due later (`clerk status`)."""
        return len(self._due_at)

    def after_batch(self, batch: list[Candidate], trigger: str, summary: Summary) -> None:
        """Files a rule with `after:` did not take yet because they changed too recently:
        look at them again when the first such rule is due (not before: the engine checks
        the mtime again then, so a file changed meanwhile waits anew). A file an earlier
        rule took is not waited for: the first matching rule won."""
        assert self._ruleset is not None and self._engine is not None
        if not any(rule.after for rule in self._ruleset.rules):
            return
        taken = {outcome.path for outcome in summary.outcomes if outcome.rules}
        now_wall, now = time.time(), time.monotonic()
        waiting: list[Candidate] = []
        for candidate in batch:
            rules = self._engine.rules_for(candidate.root.name, trigger, None)
            rules = [rule for rule in rules if rule.after]
            if not rules or candidate.path in taken:
                continue
            try:
                st = os.lstat(candidate.path)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != (candidate.st.st_dev, candidate.st.st_ino):
                continue
            waits = [w for w in (r.waiting(st.st_mtime, now_wall) for r in rules) if w > 0]
            if waits:
                self._look_again(candidate.path, trigger, now + min(waits) + AFTER_SLACK)
                waiting.append(candidate)
        if waiting:
            self._inflight.mark(waiting, trigger, now_wall)

    def follow_chains(self, summary: Summary) -> None:
        """Each file of the batch a rule moved into another watched root arrives there."""
        if self._chain_roots:
            for outcome in summary.outcomes:
                self._follow_chain(outcome)

    def _follow_chain(self, outcome: FileOutcome) -> None:
        assert self._ruleset is not None
        roots = self._ruleset.roots
        moves = [r for r in outcome.ops if r.status == "done" and r.dst and r.kind in _RELOCATING]
        relocated = moves[-1] if moves else None
        dst = relocated.dst if relocated is not None else None
        there = roots.locate(dst) if dst is not None else None
        if relocated is None or dst is None or there is None:
            return
        if there[0].name not in self._chain_roots:
            return
        root = there[0]
        here = roots.locate(outcome.path)
        if here is None or here[0].name == root.name or not self._health.up(root.name):
            return
        try:
            st = os.lstat(dst)
        except OSError:
            return
        hops = self._count_hop((st.st_dev, st.st_ino))
        if hops > MAX_HOPS:
            self.hop_limited += 1
            message = (
                f"moved by rules {hops - 1} times within {HOP_WINDOW:g}s: a rule loop?"
                f" left in root {root.name}"
            )
            self._record_error("hops", f"{dst}: {message}")
            # against the file, where the engine puts its errors (`clerk files show`)
            with write_txn(self._db):
                record_file_error(self._db, dst, message, file_id=relocated.file_id)
            log.error("%s: %s", dst, message)
            return
        candidate = candidate_for(dst, roots)
        if candidate is None:
            return
        # listed in flight: a crash before the next step does not lose it (reconcile)
        self._inflight.mark([candidate], "moved", time.time())
        self._look_again(dst, "moved", time.monotonic())

    def _count_hop(self, identity: tuple[int, int]) -> int:
        now = time.monotonic()
        hops, first = self._hops.get(identity, (0, now))
        if now - first > HOP_WINDOW:
            hops, first = 0, now
        self._hops[identity] = (hops + 1, first)
        if len(self._hops) > 10_000:
            for key in [k for k, (_, t) in self._hops.items() if now - t > HOP_WINDOW]:
                del self._hops[key]
        return hops + 1

    def _look_again(self, path: str, trigger: str, due: float) -> None:
        """Handle `path` at monotonic time `due` (the latest request for a path wins)."""
        self._due_at[path] = due
        heapq.heappush(self._due, (due, next(self._due_seq), path, trigger))

    def next_due(self) -> float | None:
        """The monotonic time the next file is due, or None."""
        while self._due:
            due, _, path, _ = self._due[0]
            if self._due_at.get(path) == due:
                return due
            heapq.heappop(self._due)  # superseded
        return None

    def take_due(self, now: float) -> dict[str, list[Candidate]]:
        """The files due by `now`, by trigger, out of the queue (those in a root that is
        unavailable or gone are dropped: reconcile finds them when it is back)."""
        assert self._ruleset is not None
        by_trigger: dict[str, list[Candidate]] = {}
        while self._due and self._due[0][0] <= now:
            due, _, path, trigger = heapq.heappop(self._due)
            if self._due_at.get(path) != due:
                continue
            del self._due_at[path]
            candidate = candidate_for(path, self._ruleset.roots)
            if candidate is not None and self._health.up(candidate.root.name):
                by_trigger.setdefault(trigger, []).append(candidate)
        return by_trigger
