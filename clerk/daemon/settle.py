"""Settle: hand a path to the rules only once it is complete.

A path is complete when its writer closed it (inotify's IN_CLOSE_WRITE) and nobody else
has it open for writing as far as we saw, or when its size and mtime stayed the same for
the root's `settle` time (polling roots, writers whose open we missed).
A path we saw made (IN_CREATE: its creator has it open) or opened and not yet closed
waits, unless it has been still for `STUCK_OPEN_FACTOR` settle times (a close lost in an
inotify overflow must not hold a file forever; a hard link, made without an open, does
not count as open).
Every look that does not decide is followed by the next one no sooner than
`RECHECK_FLOOR` later, so any `settle`, `0s` included, ends: a look never reschedules a
path into the turn that made it (a still-open file under `settle: 0s` was looked at
again at once, forever). A file that stays open and unchanged is looked at less and less
often (the interval doubles up to `OPEN_RECHECK_MAX`): its close wakes it anyway, the
looks only notice a change or a lost close. One `due` call looks at most `limit` paths.
A path is judged by what the walk judges it by (`clerk.rules.walk.followed`): a symlink
in a root that follows them by the file it leads to, made without an open (nothing to
wait for but that file); what the walk skips is dropped, and a link it refuses (another
user's, a dangling one) is reported through `on_refused`, as the walk reports it.
Only the worker thread uses a `Settler`; it is not thread-safe.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from clerk.roots import Root
from clerk.rules.walk import followed

STUCK_OPEN_FACTOR = 12
STUCK_OPEN_MINIMUM = 60.0
RECHECK_FLOOR = 0.1  # seconds between two looks at one path, whatever its settle
OPEN_RECHECK_MAX = 2.0  # an open, unchanged file: looks back off to one per this (or settle)
DUE_LIMIT = 5000  # paths looked at per `due` call: the loop gets its turn between them


@dataclass
class Pending:
    root: Root
    trigger: str
    deadline: float
    observed: tuple[int, int] | None = None  # (size, mtime_ns) at `observed_at`
    observed_at: float = 0.0
    closed: bool = False
    st: os.stat_result | None = None  # what the last `_check` judged it by (walk.followed)
    open_wait: float = 0.0  # the interval between looks while open and unchanged (backoff)


@dataclass(frozen=True)
class Ready:
    path: str
    root: Root
    trigger: str
    st: os.stat_result | None = None  # the stat that found it complete (walk.followed)


class Settler:
    def __init__(self, on_refused: Callable[[str, OSError], None] | None = None) -> None:
        #: told of a symlink the walk would refuse, with the walk's reason
        self.on_refused = on_refused
        self.pending: dict[str, Pending] = {}
        self._open: dict[str, int] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        #: False after an inotify overflow, until its backlog is drained: the kernel drops
        #: queued events on overflow, so a close may be lost after its open was seen
        self.track_opens = True

    def __len__(self) -> int:
        return len(self.pending)

    def __contains__(self, path: object) -> bool:
        return path in self.pending

    # --- what the watchers saw -----------------------------------------------------------
    def touch(self, path: str, root: Root, trigger: str, now: float) -> None:
        """The path appeared or changed: wait until it is complete."""
        entry = self.pending.get(path)
        if entry is None:
            entry = self.pending[path] = Pending(root, trigger, now + root.settle)
        entry.closed = False
        self._schedule(path, entry, now + root.settle)

    def closed_after_write(self, path: str, root: Root, trigger: str, now: float) -> None:
        self._open_delta(path, -1)
        entry = self.pending.get(path)
        if entry is None:
            entry = self.pending[path] = Pending(root, trigger, now)
        entry.closed = True
        self._schedule(path, entry, now)

    def created_open(self, path: str, root: Root, now: float) -> None:
        """The path was made here (IN_CREATE): its creator holds it open, so it waits for
        that close (the watch does not ask for IN_OPEN: our own reads would make them)."""
        self._open_delta(path, +1)
        self.touch(path, root, "created", now)

    def created_closed(self, path: str, root: Root, now: float) -> None:
        """Made here and closed by its writer already (both events came in one read):
        `created_open` then `closed_after_write`, in one step."""
        entry = self.pending.get(path)
        if entry is None:
            entry = self.pending[path] = Pending(root, "created", now)
        entry.closed = True
        self._schedule(path, entry, now)

    def opened(self, path: str) -> None:
        self._open_delta(path, +1)

    def closed_without_write(self, path: str) -> None:
        self._open_delta(path, -1)

    def forget(self, path: str) -> None:
        """The path was deleted or moved away."""
        self.pending.pop(path, None)
        self._open.pop(path, None)

    def forget_under(self, directory: str) -> None:
        prefix = directory.rstrip("/") + "/"
        for path in [p for p in self.pending if p.startswith(prefix)]:
            self.forget(path)

    def events_lost(self) -> None:
        """An overflow dropped events: open counts are guesses; stability decides until
        `trust_opens()`."""
        self._open.clear()
        self.track_opens = False

    def trust_opens(self) -> None:
        self._open.clear()
        self.track_opens = True

    def is_open(self, path: str) -> bool:
        return self._open.get(path, 0) > 0

    # --- when to look again ----------------------------------------------------------------
    def next_deadline(self) -> float | None:
        while self._heap:
            deadline, _, path = self._heap[0]
            entry = self.pending.get(path)
            if entry is not None and entry.deadline == deadline:
                return deadline
            heapq.heappop(self._heap)  # stale: the path was rescheduled or forgotten
        return None

    def due(self, now: float, limit: int = DUE_LIMIT) -> list[Ready]:
        """Paths whose time came and that are complete; others are rescheduled, later
        than `now`. At most `limit` paths are looked at: the rest stay due."""
        ready: list[Ready] = []
        while self._heap and self._heap[0][0] <= now and limit > 0:
            deadline, _, path = heapq.heappop(self._heap)
            entry = self.pending.get(path)
            if entry is None or entry.deadline != deadline:
                continue
            limit -= 1
            verdict = self._check(path, entry, now)
            if verdict is None:
                continue  # rescheduled
            del self.pending[path]
            if verdict:
                ready.append(Ready(path, entry.root, entry.trigger, entry.st))
        return ready

    def _check(self, path: str, entry: Pending, now: float) -> bool | None:
        """True: complete; False: gone (drop it); None: look again later."""
        try:
            lst = os.lstat(path)
        except OSError:
            self._open.pop(path, None)
            return False
        try:
            st = followed(entry.root, path, lst)  # what the walk would judge it by
        except OSError as exc:  # a link the root follows but clerk does not: say so
            self._open.pop(path, None)
            if self.on_refused is not None:
                self.on_refused(path, exc)
            return False
        if st is None or not stat.S_ISREG(st.st_mode):
            self._open.pop(path, None)
            return False
        entry.st = st
        if stat.S_ISLNK(lst.st_mode) or lst.st_nlink > 1:
            # a symlink's or a hard link's IN_CREATE: made without an open, nothing to wait
            # for (a followed link's target settles by its size and mtime)
            self._open.pop(path, None)
        seen = (st.st_size, st.st_mtime_ns)
        settle = entry.root.settle
        if entry.observed != seen:
            # changed since we last looked (or first look): the clock starts again,
            # unless the writer said it is done
            entry.observed, entry.observed_at = seen, now
            entry.open_wait = 0.0
            if entry.closed and not self.is_open(path):
                return True
            if not self.is_open(path) and time.time() - st.st_mtime >= settle:
                # its mtime says it has been unchanged for `settle` already (files an
                # overflow's reconcile finds long after their close was lost): no need
                # to watch it that long again
                return True
            self._look_again(path, entry, now, now + settle)
            return None
        still_for = now - entry.observed_at
        if entry.closed and not self.is_open(path):
            return True
        if still_for + 1e-6 < settle:
            self._look_again(path, entry, now, entry.observed_at + settle)
            return None
        stuck_after = max(STUCK_OPEN_MINIMUM, STUCK_OPEN_FACTOR * settle)
        if self.is_open(path) and still_for < stuck_after:
            # unchanged and open: back off (its close reschedules it at once anyway),
            # but look when it would count as stuck
            wait = entry.open_wait * 2 or max(settle, RECHECK_FLOOR)
            entry.open_wait = min(wait, max(settle, OPEN_RECHECK_MAX))
            stuck_at = entry.observed_at + stuck_after
            self._look_again(path, entry, now, min(now + entry.open_wait, stuck_at))
            return None
        self._open.pop(path, None)
        return True

    # --- internals -----------------------------------------------------------------------------
    def _look_again(self, path: str, entry: Pending, now: float, deadline: float) -> None:
        """A look that did not decide: the next is no sooner than RECHECK_FLOOR from now."""
        self._schedule(path, entry, max(deadline, now + RECHECK_FLOOR))

    def _schedule(self, path: str, entry: Pending, deadline: float) -> None:
        entry.deadline = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), path))

    def _open_delta(self, path: str, delta: int) -> None:
        if not self.track_opens:
            return
        count = self._open.get(path, 0) + delta
        if count > 0:
            self._open[path] = count
        else:
            # a close whose open we never saw (the watch came later) counts as zero
            self._open.pop(path, None)


# A flood: more events per second than this, over a window of FLOOD_WINDOW seconds. The
# daemon's gauge counts only overflows (an infinite rate): holding complete files while
# a big copy goes on measured worse than moving them meanwhile (bench_daemon, 100,000
# files: 1.93x `clerk scan` held, 1.49x not; the writer is slowed by moves beside it,
# but the files moved meanwhile are done when it ends). After an overflow the hold
# stays: events were lost, and one reconcile walk when the flood is over finds them all.
# It is over when a window has fewer than FLOOD_CALM events.
FLOOD_EVENTS = math.inf
FLOOD_CALM = 400.0
FLOOD_WINDOW = 0.25
FLOOD_HOLD_MAX = 30.0  # never hold complete files longer than this
# An inotify overflow is a flood too, though the events stop for a while after it (the
# kernel drops them, the watch re-checks its directories): hold at least this long after one.
FLOOD_AFTER_OVERFLOW = 1.0


class FloodGauge:
    """Tells a flood of events from ordinary traffic: `rate` events a second, or an
    inotify overflow (the daemon's gauge: overflows only, see FLOOD_EVENTS).

    While a flood is on, the daemon holds the files that are complete and moves them
    when it ends, in full batches, like `clerk scan`, after one reconcile walk. A flood
    that does not end gets a turn every FLOOD_HOLD_MAX seconds. Only the worker thread
    uses it.
    """

    def __init__(
        self,
        rate: float = FLOOD_EVENTS,
        window: float = FLOOD_WINDOW,
        hold_max: float = FLOOD_HOLD_MAX,
        calm: float = FLOOD_CALM,
    ):
        self.rate, self.window, self.hold_max, self.calm = rate, window, hold_max, calm
        self._count = 0
        self._window_start = time.monotonic()
        self._since: float | None = None  # when the current hold began
        self._until = 0.0  # held at least until then (after an overflow)
        self.floods = 0  # floods seen (for status)

    def saw(self, events: int = 1) -> None:
        self._count += events

    def overflowed(self, now: float) -> None:
        """The kernel dropped events: a flood, whatever the count says for a while."""
        self._until = now + FLOOD_AFTER_OVERFLOW
        if self._since is None:
            self._since = now
            self.floods += 1

    def holding(self, now: float) -> bool:
        """Whether complete files should wait now (the window is judged when it is full)."""
        elapsed = now - self._window_start
        if elapsed >= self.window:
            threshold = self.rate if self._since is None else self.calm
            flooding = self._count >= threshold * elapsed or now < self._until
            self._window_start, self._count = now, 0
            if not flooding:
                self._since = None
            elif self._since is None:
                self._since = now
                self.floods += 1
        if self._since is None:
            return False
        if now - self._since >= self.hold_max:
            self._since = now  # this turn goes; a flood still on holds again after it
            return False
        return True

    def next_look(self) -> float:
        """When `holding` can change its mind: the end of the current window."""
        return self._window_start + self.window
