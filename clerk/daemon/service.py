"""The daemon's lifecycle and its one worker thread.

Start: config -> store (migrated on open) -> rules (refused like `clerk check`) ->
recover unfinished ops -> watchers -> first reconcile -> READY. Then the worker loop:
drain the intake queue (watch events, overflow notices, commands), hand complete files
to the rules engine, reconcile every `reconcile_interval`, check the watchers, ping the
systemd watchdog. Signal handlers only set flags and wake the loop.

The engine is not thread-safe and SQLite has one writer: every rule run and every store
write happens on the thread that calls `Daemon.run()` (the main thread).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import queue
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from clerk.daemon.followups import FollowUps
from clerk.daemon.health import RootHealth
from clerk.daemon.notify import Notifier, watchdog_interval
from clerk.daemon.reconcile import InFlight, Reconciler
from clerk.daemon.runs import DaemonRuns
from clerk.daemon.schedule import WORKFLOW_PREFIX, Schedules
from clerk.daemon.settle import FloodGauge, Ready, Settler
from clerk.daemon.watch import FsEvent, Overflow, Watchers
from clerk.errors import ConfigError, Problem
from clerk.fileops.types import OpResult
from clerk.rules.walk import Candidate, accepts, candidate_for, unreadable, walk_root
from clerk.store.catalog import unchanged
from clerk.store.inflight import inflight

if TYPE_CHECKING:
    from clerk.app import App
    from clerk.roots import Root
    from clerk.rules.engine import Engine, Summary
    from clerk.rules.model import RuleSet
    from clerk.store import Checkpointer

log = logging.getLogger("clerk.daemon")

STATUS_EVERY = 1.0  # seconds between READY status lines after batches
HEALTH_INTERVAL = 1.0  # seconds between watcher / root availability checks
MAX_WAIT = 2.0  # the loop wakes at least this often (cheap: no busy polling)
DRAIN_LIMIT = 2000  # intake items handled between two looks at what is ready
BACKLOG = 100  # ready files or queued events from which catalog rows are written behind
PLACED_TTL = 120.0  # how long events at a destination we placed are ours
LAST_ERRORS = 20
OVERFLOW_BACKLOG = 3.0  # seconds after the overflow's reconcile before opens count again
RUN_STOP_TIMEOUT = 20.0  # running tasks may finish this long on stop (TimeoutStopSec=30s)

INITIALIZING, READY, PROCESSING, DEGRADED, STOPPING = (
    "INITIALIZING", "READY", "PROCESSING", "DEGRADED", "STOPPING",
)  # fmt: skip


@dataclass
class Command:
    """A request for the worker thread (from the control socket); `reply` gets a dict."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    reply: queue.SimpleQueue[dict[str, Any]] = field(default_factory=queue.SimpleQueue)


@dataclass
class _Wake:
    reason: str


class Daemon:
    def __init__(self, app: App, *, notifier: Notifier | None = None):
        self.app = app
        self.notifier = notifier or Notifier()
        self.intake: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.settler = Settler(on_refused=self._refused)
        self.flood = FloodGauge()
        self._holding = False  # a flood is on: complete files wait (see FloodGauge)
        self.watchers = Watchers(self.intake)
        self.health = RootHealth(self.watchers, self.record_error)
        # built once the store is open (prepare): a second daemon must not open it at all
        self.inflight: InFlight
        self.follow_ups: FollowUps
        self.reconciler: Reconciler
        self.ruleset: RuleSet | None = None
        self.engine: Engine | None = None
        self.state = INITIALIZING
        self.started = time.time()
        self.paused = False
        self.last_errors: deque[dict[str, Any]] = deque(maxlen=LAST_ERRORS)
        self.overflows = 0
        self.processed = 0
        self.reloads = 0
        self._ops: deque[tuple[float, int]] = deque()
        self._checkpoints: Checkpointer | None = None
        self._ops_total = 0  # the sum over self._ops, kept so status costs O(1) per batch
        self._status_sent = 0.0  # monotonic time of the last STATUS= line
        self._placed: dict[str, tuple[tuple[int, int], float]] = {}
        self._trust_opens_at: float | None = None
        self._stop = False
        self._reload = False
        self._next_health = 0.0
        self._next_ping = 0.0
        self._ping_every = watchdog_interval()
        self.schedules: Schedules | None = None
        # While a backlog lasts, catalog rows go to one writer thread (Engine.writing_behind)
        # across batches; `_recent` holds the paths whose rows may still be on their way.
        self._behind: contextlib.ExitStack | None = None
        self._recent: set[str] = set()
        self.runs = DaemonRuns(app)

    # --- start -----------------------------------------------------------------------------
    def prepare(self) -> list[Problem]:
        """Config, store, rules, recovery. Raises ConfigError (every problem) on bad rules;
        returns the warnings."""
        self.app.config  # noqa: B018 - a broken config.yaml fails here, before anything
        from clerk.store import checkpoint_in_background

        # before the store opens: its connections leave WAL checkpoints (an fsync of
        # 50-150 ms) to a thread instead of stalling whichever batch crosses the limit
        self._checkpoints = checkpoint_in_background(self.app.config.store_path)
        db = self.app.store  # opening migrates
        self.inflight = InFlight(db)
        self.follow_ups = FollowUps(db, self.inflight, self.health, self.record_error)
        self.reconciler = Reconciler(
            db,
            health=self.health,
            settler=self.settler,
            inflight=self.inflight,
            apply=self.run_rules,
            flush=self._write_now,
            stopping=lambda: self._stop,
            record_error=self.record_error,
            interval=self.app.config.settings.reconcile_interval,
        )
        ruleset, problems = self.app.check()
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise ConfigError(problems)
        recovered = self.app.recover(ruleset)
        if recovered:
            log.warning("recovered %d interrupted operation(s)", len(recovered))
        self._use(ruleset)
        return [p for p in problems if p.severity != "error"]

    def _use(self, ruleset: RuleSet) -> None:
        self._write_now()
        self.ruleset = ruleset
        # the rules' runs start here, in the daemon's runner
        self.engine = self.app.engine(ruleset, keep_outcomes=True, run_sink=self.runs.submit)
        self.runs.use(ruleset)
        self.health.use(self.watched_roots())
        self.follow_ups.use(ruleset, self.engine)
        self.reconciler.use(ruleset, self.engine)

    def watched_roots(self) -> list[Root]:
        assert self.ruleset is not None
        return [r for r in self.ruleset.roots if r.watch]

    def run(self) -> int:
        """The worker loop, until stopped. Returns the exit code."""
        self._install_signals()
        self.runs.start()  # runs of an earlier daemon first, then the rules' runs at once
        self.health.start_watchers()
        self.reconciler.reconcile("start")
        self._sync_schedules()
        self._set_state()
        # what start-up built lives as long as the daemon: out of the collector's full
        # passes, which otherwise stall the worker 100 ms+ now and then (p99 latency)
        gc.freeze()
        self.notifier.ready(self.status_line())
        log.info("ready: %s", self.status_line())
        self.reconciler.schedule()
        while not self._stop:
            self._wait_and_drain()
            if self._stop:
                break
            self._tick()
        self._shutdown()
        return 0

    def _sync_schedules(self) -> None:
        assert self.ruleset is not None
        if self.schedules is None:
            self.schedules = Schedules(self.app.store, self._fire_job)
        for name in self.schedules.sync(self.ruleset):
            log.info("job %s missed a run while the daemon was down: running it now", name)
            self._fire_job(name, "missed")

    def _fire_job(self, name: str, why: str = "schedule") -> None:
        # on APScheduler's thread: only a request for the worker
        self.intake.put(Command("run_job", {"name": name, "why": why}))

    def _tick(self) -> None:
        now = time.monotonic()
        if self._reload:
            self._reload = False
            self.reload()
        if now >= self._next_health:
            self._next_health = now + HEALTH_INTERVAL
            self.check_health()
        holding = self.flood.holding(now)
        if holding != self._holding:
            self._holding = holding
            if holding:
                # the watch threads read less often too (see watch.BUSY_PAUSE): each
                # read wakes a thread, and waking one per event slows the writer down
                self.watchers.worker_idle.clear()
                log.info("a flood of events: complete files wait until it ends")
            else:
                self.watchers.worker_idle.set()
                log.info("the flood is over: %d file(s) waiting to settle", len(self.settler))
        if not holding and self.reconciler.due(now):
            self.reconciler.reconcile_due()
            if not self.settler.track_opens:
                # events queued before the overflow arrive for a little while yet
                self._trust_opens_at = time.monotonic() + OVERFLOW_BACKLOG
        if self._trust_opens_at is not None and now >= self._trust_opens_at:
            self._trust_opens_at = None
            self.settler.trust_opens()
        if not self.paused and not holding:
            ready = self.settler.due(time.monotonic())
            if ready:
                if len(ready) >= BACKLOG or self.intake.qsize() >= BACKLOG:
                    self._write_behind()
                self.process_ready(ready)
            elif self.intake.empty():
                self._write_now()
            for trigger, due in self.follow_ups.take_due(time.monotonic()).items():
                # not `_not_yet_handled`: the catalog knows these files, they are due anyway
                self.run_rules(due, trigger)
        elif holding:
            self._write_now()
        self._ping()

    def _write_behind(self) -> None:
        """A backlog: each batch's catalog rows are written while the next is planned."""
        if self._behind is None and self.engine is not None:
            self._behind = contextlib.ExitStack()
            self._behind.enter_context(self.engine.writing_behind())

    def _write_now(self) -> None:
        """The backlog is worked off: write what is left; rows are written at once again."""
        behind, self._behind = self._behind, None
        self._recent = set()
        if behind is None:
            return
        try:
            behind.close()
        except Exception as exc:  # the last catalog write failed: the next walk redoes it
            log.exception("writing the catalog failed")
            self.record_error("process", f"catalog: {type(exc).__name__}: {exc}")

    def _wait_and_drain(self) -> None:
        now = time.monotonic()
        if self._holding:
            # a flood: complete files, looks again and reconciles wait for its end
            wake_at = min(self.flood.next_look(), self._next_health + 0.01, now + MAX_WAIT)
        else:
            wake_at = min(self.reconciler.next_at, self._next_health + 0.01, now + MAX_WAIT)
            deadline = self.settler.next_deadline()
            if deadline is not None and not self.paused:
                wake_at = min(wake_at, deadline)
            due = self.follow_ups.next_due()
            if due is not None and not self.paused:
                wake_at = min(wake_at, due)
        if self._ping_every:
            wake_at = min(wake_at, self._next_ping)
        try:
            item = self.intake.get(timeout=max(0.0, wake_at - now))
        except queue.Empty:
            return
        self._handle(item)
        # take what is already queued before acting (a burst becomes one batch), but not
        # forever: under a steady flood of events the files already complete must move on
        for _ in range(DRAIN_LIMIT):
            try:
                item = self.intake.get_nowait()
            except queue.Empty:
                return
            self._handle(item)

    def _handle(self, item: Any) -> None:
        if isinstance(item, FsEvent):
            self.flood.saw()
            self.on_fs_event(item)
        elif isinstance(item, Overflow):
            self.overflows += 1
            self.flood.overflowed(time.monotonic())
            self.settler.events_lost()
            self.reconciler.want("overflow")
            self.record_error("watch", "inotify queue overflowed: events lost; reconciling")
        elif isinstance(item, Command):
            item.reply.put(self.command(item))

    # --- signals ---------------------------------------------------------------------------
    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        # Only flags here: the batch in flight finishes, then the loop exits.
        self.request_stop()

    def _on_reload_signal(self, signum: int, frame: Any) -> None:
        self._reload = True
        self.intake.put(_Wake("reload"))

    def request_stop(self) -> None:
        if not self._stop:
            self._stop = True
            self.state = STOPPING
            self.notifier.stopping()
            self.runs.stop_taking()  # at once: no task starts while the daemon stops
        self.intake.put(_Wake("stop"))

    def _shutdown(self) -> None:
        self.state = STOPPING
        self.notifier.stopping()
        self._write_now()
        log.info("stopping (%d path(s) still settling; reconcile picks them up)", len(self.settler))
        for path, entry in list(self.settler.pending.items())[:10]:
            log.info("still settling: %s (%s, open: %s, closed: %s)", path, entry.trigger,
                     self.settler.is_open(path), entry.closed)  # fmt: skip
        self.watchers.close()
        if self._checkpoints is not None:
            self._checkpoints.stop()
        if self.schedules is not None:
            self.schedules.shutdown()
        self.runs.stop(RUN_STOP_TIMEOUT)
        for name in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(name, signal.SIG_DFL)

    # --- events ------------------------------------------------------------------------------
    def on_fs_event(self, event: FsEvent) -> None:
        assert self.ruleset is not None
        if event.kind == "deleted":
            self._forget(event.path, event.is_dir)
            return
        path, kind = event.path, event.kind
        if kind == "moved":
            self._forget(event.path, event.is_dir)
            if not event.dest:
                return
            path = event.dest
        elif kind == "moved_in":  # renamed here from outside the root: it arrives as moved
            kind = "moved"
        located = self.ruleset.roots.locate(path)
        if located is None:
            return
        root, relpath = located
        if not root.watch or not self.health.up(root.name):
            return
        if not accepts(root, relpath, is_dir=event.is_dir):  # what the walk would skip
            return
        now = time.monotonic()
        if event.is_dir:
            if kind in ("created", "moved"):
                self._walk_into(root, path, kind, now)
            return
        if kind == "opened":
            self.settler.opened(path)
        elif kind == "closed_nowrite":
            self.settler.closed_without_write(path)
        elif self._placed_by_us(path):
            return
        elif kind == "closed":
            self.settler.closed_after_write(path, root, "modified", now)
        elif kind == "new":  # made here: its creator has it open until its close
            self.settler.created_open(path, root, now)
        elif kind == "new_closed":  # made here, and its writer is done already
            self.settler.created_closed(path, root, now)
        elif kind in ("created", "moved", "modified") or (
            kind == "attrib" and path in self.settler  # mtime set after the last write
        ):
            self.settler.touch(path, root, kind, now)

    def _forget(self, path: str, is_dir: bool) -> None:
        if is_dir:
            self.settler.forget_under(path)
        else:
            self.settler.forget(path)

    def _walk_into(self, root: Root, directory: str, kind: str, now: float) -> None:
        """A directory arrived: every file in it is an arrival (the watch covers it now)."""
        assert self.ruleset is not None
        if not root.recursive:
            return
        for candidate in walk_root(root, self.ruleset.roots, start=directory):
            if not self._placed_by_us(candidate.path):
                self.settler.touch(candidate.path, root, kind, now)

    def _refused(self, path: str, exc: OSError) -> None:
        """A link that arrived and that the walk would refuse: said as the walk says it."""
        message = unreadable(path, exc)
        self.record_error("watch", message)
        log.warning("%s", message)

    def _placed_by_us(self, path: str) -> bool:
        placed = self._placed.get(path)
        if placed is None:
            return False
        identity, expires = placed
        if time.monotonic() > expires:
            del self._placed[path]
            return False
        try:
            st = os.lstat(path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == identity

    # --- processing ---------------------------------------------------------------------------
    def process_ready(self, ready: list[Ready]) -> None:
        assert self.ruleset is not None
        by_trigger: dict[str, list[Candidate]] = {}
        roots = self.ruleset.roots
        for item in ready:
            if not self.health.up(item.root.name):
                continue
            st = item.st
            located = roots.locate(item.path) if st is not None else None
            if st is not None and located is not None:
                # the settler's look just now (the walk's `followed`) found it complete:
                # no second look
                candidate: Candidate | None = Candidate(located[0], item.path, located[1], st)
            else:
                candidate = candidate_for(item.path, roots)
            if candidate is not None:
                by_trigger.setdefault(item.trigger, []).append(candidate)
        todo: dict[str, list[Candidate]] = {}
        for trigger, candidates in by_trigger.items():
            fresh, unknown = self._not_yet_handled(candidates)
            if trigger == "modified" and unknown:
                # a close whose IN_CREATE an inotify overflow dropped: a file the catalog
                # has never seen was created, not modified (rules react to "created")
                todo.setdefault("created", []).extend(unknown)
                new = {id(c) for c in unknown}
                fresh = [c for c in fresh if id(c) not in new]
            todo.setdefault(trigger, []).extend(fresh)
        for trigger, fresh in todo.items():
            if fresh:
                self.run_rules(fresh, trigger)

    def _not_yet_handled(
        self, candidates: list[Candidate]
    ) -> tuple[list[Candidate], list[Candidate]]:
        """Drop files the catalog already knows exactly as they are (handled before: an
        event that arrived after a reconcile, or a restart after a crash). Returns the
        others, and those of them the catalog has no row for."""
        assert self.engine is not None and self.engine.catalog is not None
        by_root: dict[str, list[Candidate]] = {}
        for c in candidates:
            by_root.setdefault(c.root.name, []).append(c)
        fresh: list[Candidate] = []
        unknown: list[Candidate] = []
        if self._recent and any(c.path in self._recent for c in candidates):
            self._write_now()  # a file met again while its row may be on its way: wait
        for root_name, group in by_root.items():
            rows = self.engine.catalog.rows_for(root_name, [c.relpath for c in group])
            unfinished = inflight(self.app.store, root_name)
            for c in group:
                row = rows.get(c.relpath)
                st = c.st
                if row is not None and c.relpath not in unfinished and unchanged(row, st):
                    continue
                fresh.append(c)
                if row is None:
                    unknown.append(c)
        return fresh, unknown

    def run_rules(
        self,
        candidates: Iterable[Candidate],
        trigger: str,
        seen_ids: set[int] | None = None,
        rule_names: set[str] | None = None,
    ) -> Totals:
        """The one way the daemon applies rules: the engine `clerk scan` uses, in batches,
        stopping between batches when asked to stop."""
        assert self.engine is not None
        totals = Totals()
        size = self.app.config.settings.journal_batch
        todo = candidates if isinstance(candidates, list) else list(candidates)
        if len(todo) <= size:
            if todo:
                self._run_batch(todo, trigger, seen_ids, rule_names, totals)
            return totals
        # a backlog (a burst, a reconcile): catalog rows are written by a thread while
        # the next batch is planned, as in `clerk scan`
        try:
            with self.engine.writing_behind():
                for start in range(0, len(todo), size):
                    batch = todo[start : start + size]
                    if not self._run_batch(batch, trigger, seen_ids, rule_names, totals):
                        break
        except Exception as exc:  # the last catalog write failed: the next walk redoes it
            log.exception("writing the catalog failed")
            self.record_error("process", f"catalog: {type(exc).__name__}: {exc}")
        return totals

    def _run_batch(
        self,
        batch: list[Candidate],
        trigger: str,
        seen_ids: set[int] | None,
        rule_names: set[str] | None,
        totals: Totals,
    ) -> bool:
        assert self.engine is not None
        if self._stop:
            return False
        self._set_state(PROCESSING)
        tracked = rule_names is None  # a lifecycle sweep reruns on its own when missed
        # the engine's clock for age filters and `after:` (it is made once per rule load)
        self.engine.facts.now = datetime.now().astimezone()
        try:
            # this batch's moves out of a root need not come back as events, and the
            # watch threads read what is new after the batch (see watch.BUSY_PAUSE)
            self.watchers.leaving.expect(c.path for c in batch)
            self.watchers.worker_idle.clear()
            summary = self.engine.process(batch, trigger, seen_ids=seen_ids, rule_names=rule_names)
            if self._behind is not None:
                self._recent = {c.path for c in batch}
                self._recent.update(r.dst for o in summary.outcomes for r in o.ops if r.dst)
            if tracked:
                self.inflight.unmark(batch)
                self.follow_ups.after_batch(batch, trigger, summary)
        except Exception as exc:  # the store or a plugin blew up: report, keep serving
            log.exception("processing %d file(s) failed", len(batch))
            self.record_error("process", f"{type(exc).__name__}: {exc}")
            totals.failed += len(batch)
            totals.errors.append(f"{type(exc).__name__}: {exc}")
            return True
        finally:
            if not self._holding:
                self.watchers.worker_idle.set()
            # A daemon run never ends and inode numbers are reused: each batch is a run.
            self.engine.reset_run()
            self._set_state()
        self._account(summary)
        totals.add(summary)
        self._ping()
        return True

    def _account(self, summary: Summary) -> None:
        now = time.monotonic()
        done = sum(summary.done.values())
        self.processed += summary.seen
        if done:
            self._ops.append((time.time(), done))
            self._ops_total += done
        for outcome in summary.outcomes:
            for result in outcome.ops:
                if result.status == "done" and result.dst:
                    self._remember_placed(result, now)
        self.follow_ups.follow_chains(summary)
        for error in summary.errors:  # the engine's message per file: logged here, once
            self.record_error("rule", error)
            log.warning("%s", error)
        if done or summary.failed:
            log.info(
                "%d file(s): %s; %d failed",
                summary.seen,
                ", ".join(f"{n} {k}" for k, n in sorted(summary.done.items())) or "nothing done",
                summary.failed,
            )
        self._expire_placed(now)

    def _remember_placed(self, result: OpResult, now: float) -> None:
        path = result.dst
        assert path is not None
        if result.dst_inode is not None and result.dst_dev is not None:
            identity = (result.dst_dev, result.dst_inode)  # fileops knows: no lstat
        else:
            try:
                st = os.lstat(path)
            except OSError:
                return
            identity = (st.st_dev, st.st_ino)
        # re-inserted at the end: the dict stays in expiry order (one TTL for all)
        self._placed.pop(path, None)
        self._placed[path] = (identity, now + PLACED_TTL)

    def _expire_placed(self, now: float) -> None:
        # oldest first: stop at the first one still valid (no full scan per batch)
        while self._placed:
            path, (_, expires) = next(iter(self._placed.items()))
            if expires >= now:
                return
            del self._placed[path]

    # --- health -------------------------------------------------------------------------------
    def check_health(self) -> None:
        reason = self.health.check()
        if reason is not None:
            self.reconciler.want(reason)  # events were lost meanwhile
        down = self.runs.revive()
        if down is not None:
            self.record_error("runs", f"workflow runner restarted: {down}")
            log.error("workflow runner restarted: %s", down)
        self._set_state()

    def _ping(self) -> None:
        if not self._ping_every:
            return
        now = time.monotonic()
        if now < self._next_ping:
            return
        self._next_ping = now + self._ping_every
        # WATCHDOG=1 only while every watcher runs: the loop itself is the store writer
        if self.health.watching():
            self.notifier.watchdog()

    # --- lifecycle jobs -------------------------------------------------------------------------
    def run_job(self, name: str, why: str) -> dict[str, Any]:
        """One sweep of a lifecycle rule over its roots, through the engine; or a run of
        a scheduled workflow (`workflow:NAME`, or NAME when no rule has that name)."""
        assert self.ruleset is not None
        rule = self.ruleset.rule(name)
        if rule is None or not rule.is_lifecycle or not rule.enabled:
            workflow = name.removeprefix(WORKFLOW_PREFIX)
            if self.schedules is not None and WORKFLOW_PREFIX + workflow in self.schedules.jobs:
                return self.start_workflow(workflow, why)
            return {"ok": False, "error": f"no lifecycle job or scheduled workflow named {name!r}"}
        self._write_now()  # a sweep reads the catalog: all of it
        started = time.time()
        totals = Totals()
        for root_name in rule.roots:
            root = self.ruleset.roots.get(root_name)
            if root is None or not self.health.sweepable(root):
                totals.errors.append(f"root {root_name} unavailable: skipped")
                continue
            errors: list[str] = totals.errors
            candidates = list(walk_root(root, self.ruleset.roots, on_error=_collect(errors)))
            if rule.keep_newest and self.engine is not None:
                candidates = self.engine.spare_newest(rule, candidates)
            totals.merge(self.run_rules(candidates, "schedule", rule_names={name}))
        status = "failed" if totals.failed or totals.errors else "ok"
        result = {"ok": status == "ok", "job": name, "why": why, **totals.as_dict(),
                  "elapsed": round(time.time() - started, 3)}  # fmt: skip
        if self.schedules is not None:
            self.schedules.record(name, status, result, started)
        log.info("job %s (%s): %s", name, why, totals.describe())
        return result

    def start_workflow(self, name: str, why: str) -> dict[str, Any]:
        """A run of a scheduled workflow, handed to the daemon's runner at once."""
        from clerk.engine.queue import RunRequest

        started = time.time()
        trigger = "schedule" if why in ("schedule", "missed") else why
        run_id = self.runs.submit(RunRequest(name, {}, trigger=f"{trigger}:{name}"))
        result = {"ok": True, "job": name, "kind": "workflow", "why": why, "run": run_id}
        if self.schedules is not None:
            self.schedules.record(WORKFLOW_PREFIX + name, "started", result, started)
        log.info("job workflow:%s (%s): run %d started", name, why, run_id)
        return result

    # --- reload -------------------------------------------------------------------------------
    def reload(self) -> dict[str, Any]:
        """Re-read the rules; invalid rules keep the running ones (and say why)."""
        assert self.ruleset is not None
        self.notifier.reloading()
        log.info("reloading rules")
        try:
            ruleset, problems = self.app.check()
        except Exception as exc:  # e.g. a rule file unreadable
            problems = [Problem(_where(), f"{type(exc).__name__}: {exc}")]
            ruleset = None
        errors = [p for p in problems if p.severity == "error"]
        if errors or ruleset is None:
            for problem in errors:
                log.error("reload: %s", problem)
            message = f"reload refused: {len(errors)} problem(s); keeping the running rules"
            self.record_error("reload", message + ": " + "; ".join(str(p) for p in errors[:3]))
            log.error("%s", message)
            self.notifier.ready(self.status_line())
            return {"ok": False, "error": message, "problems": [str(p) for p in errors]}
        old_roots = {r.name: r for r in self.watched_roots()}
        self._use(ruleset)
        new_roots = {r.name: r for r in self.watched_roots()}
        if old_roots != new_roots:
            self.health.restart_watchers()
        self.reloads += 1
        self.reconciler.reconcile("reload")
        self._sync_schedules()
        self._set_state()
        self.notifier.ready(self.status_line())
        log.info("reloaded: %d rules, %d roots", len(ruleset.rules), len(ruleset.roots))
        return {"ok": True, "rules": len(ruleset.rules), "roots": len(ruleset.roots)}

    # --- commands (control socket) -------------------------------------------------------------
    def command(self, cmd: Command) -> dict[str, Any]:
        try:
            if cmd.name == "reload":
                return self.reload()
            if cmd.name == "pause":
                self.paused = True
                self._set_state()
                return {"ok": True, "paused": True}
            if cmd.name == "resume":
                self.paused = False
                self._set_state()
                return {"ok": True, "paused": False}
            if cmd.name == "reconcile":
                self.reconciler.reconcile("requested")
                return {"ok": True}
            if cmd.name == "run_job":
                return self.run_job(str(cmd.args.get("name")), str(cmd.args.get("why", "manual")))
            return {"ok": False, "error": f"unknown command {cmd.name!r}"}
        except Exception as exc:
            log.exception("command %s failed", cmd.name)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    # --- status -------------------------------------------------------------------------------
    def _set_state(self, state: str | None = None) -> None:
        if self.state == STOPPING or self._stop:
            self.state = STOPPING
            return
        old = self.state
        if state is None:
            state = DEGRADED if self.health.problems else READY
        self.state = state
        if old != state and state != PROCESSING and old != INITIALIZING:
            now = time.monotonic()
            # back to READY after each batch: at most one STATUS= a second, so a steady
            # trickle of files does not become a datagram per file to systemd
            if old != PROCESSING or now - self._status_sent >= STATUS_EVERY:
                self._status_sent = now
                self.notifier.status(self.status_line())

    def record_error(self, where: str, message: str) -> None:
        self.last_errors.append({"ts": time.time(), "where": where, "error": message})

    def ops_per_minute(self) -> int:
        cutoff = time.time() - 60
        while self._ops and self._ops[0][0] < cutoff:
            self._ops_total -= self._ops.popleft()[1]
        return self._ops_total

    def status_line(self) -> str:
        state = self.state
        if state == DEGRADED:
            state += f" ({'; '.join(self.health.problems.values())})"
        if self.paused:
            state += " paused"
        return f"{state}; {len(self.settler)} settling; {self.ops_per_minute()} ops/min"

    def status(self) -> dict[str, Any]:
        """A snapshot for `clerk status` (read from the control thread: plain values)."""
        ruleset = self.ruleset
        roots = self.health.report(ruleset.roots if ruleset is not None else [])
        return {
            "state": self.state,
            "reason": "; ".join(list(self.health.problems.values())) or None,
            "paused": self.paused,
            "pid": os.getpid(),
            "uptime": round(time.time() - self.started, 1),
            "roots": roots,
            "queue": len(self.settler) + self.intake.qsize(),
            "ops_per_minute": self.ops_per_minute(),
            "processed": self.processed,
            "overflows": self.overflows,
            "waiting": self.follow_ups.waiting,
            "hop_limited": self.follow_ups.hop_limited,
            "watcher_restarts": self.watchers.restarts,
            "reconciles": self.reconciler.reconciles,
            "last_reconcile": self.reconciler.last,
            "reloads": self.reloads,
            "last_errors": list(self.last_errors),
            "jobs": self.jobs(),
            "runs": self.runs.status(),
        }

    def jobs(self) -> list[dict[str, Any]]:
        return self.schedules.listing() if self.schedules is not None else []


@dataclass
class Totals:
    """What a series of engine batches did (a reconcile, a job run)."""

    seen: int = 0
    matched: int = 0
    done: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, summary: Summary) -> None:
        self.seen += summary.seen
        self.matched += summary.matched
        for kind, count in summary.done.items():
            self.done[kind] = self.done.get(kind, 0) + count
        self.skipped += summary.skipped
        self.failed += summary.failed
        self.errors.extend(summary.errors[: max(0, LAST_ERRORS - len(self.errors))])

    def merge(self, other: Totals) -> None:
        self.seen += other.seen
        self.matched += other.matched
        for kind, count in other.done.items():
            self.done[kind] = self.done.get(kind, 0) + count
        self.skipped += other.skipped
        self.failed += other.failed
        self.errors.extend(other.errors)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "matched": self.matched,
            "done": dict(self.done),
            "skipped": self.skipped,
            "failed": self.failed,
            "errors": self.errors[:LAST_ERRORS],
        }

    def describe(self) -> str:
        acted = ", ".join(f"{n} {k}" for k, n in sorted(self.done.items())) or "nothing done"
        return f"{self.seen} seen, {self.matched} matched; {acted}; {self.failed} failed"


def _collect(errors: list[str]) -> Callable[[str, OSError], None]:
    def on_error(path: str, exc: OSError) -> None:
        errors.append(unreadable(path, exc))

    return on_error


def _where() -> Any:
    from clerk.errors import Location

    return Location("<reload>")
