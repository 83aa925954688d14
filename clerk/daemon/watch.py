"""Watchers: one watchdog observer per watched root, feeding the daemon's intake queue.

inotify roots use watchdog's inotify machinery (`InotifyFD` reads the kernel queue and
keeps the watch descriptors, `InotifyWatchGroup` adds watches below new directories and
follows renamed ones, `InotifyMoveEventGrouper` pairs IN_MOVED_FROM with IN_MOVED_TO),
tuned for a daemon that moves files out of its roots all day:

- the kernel is asked only for what the daemon acts on (`schedule(event_filter=...)`):
  no IN_OPEN / IN_CLOSE_NOWRITE (our own libmagic and hash reads make those), no
  IN_MODIFY (one per write(); the IN_CLOSE_WRITE that follows says more) or IN_ATTRIB;
- a file made here (IN_CREATE) is reported as "new": its creator has it open, so the
  settler waits for its IN_CLOSE_WRITE (a slow writer is not moved mid-file);
- watchdog's grouper holds every event queued behind an IN_MOVED_FROM for 0.5 s, to
  find its IN_MOVED_TO: each of the daemon's own moves out of a root would stall the
  events behind it. `_MoveGrouper` lets it go as soon as any later event is queued
  (the kernel queues a rename's two halves one after the other) or after
  MOVE_PAIRING_DELAY when nothing follows;
- the emitter thread turns watchdog's grouped inotify events straight into `FsEvent`s
  on the intake queue: no FileSystemEvent objects, no DirModifiedEvents, no hop through
  the observer's queue and dispatch thread, and no synthetic events for the contents of
  a new directory (the daemon walks directories that arrive itself).

A kernel queue overflow becomes an `Overflow` item: the worker then reconciles, because
overflowed events are lost for good. `poll: true` roots (NFS, SMB) use watchdog's
polling observer and its handler API.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from watchdog import events as ev
from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver, EventQueue, ObservedWatch
from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup
from watchdog.observers.inotify_c import InotifyEvent, InotifyFD, Mask, WatchDescriptor
from watchdog.observers.inotify_move_event_grouper import (
    GroupedInotifyEvent,
    InotifyMoveEventGrouper,
    PathedInotifyEvent,
)
from watchdog.observers.polling import PollingObserver

from clerk.roots import Root

log = logging.getLogger("clerk.daemon.watch")

POLL_INTERVAL = 1.0
# How long an IN_MOVED_FROM with nothing queued after it waits for its IN_MOVED_TO. Only
# that lone event waits (events behind it release it at once), so this is not latency:
# it covers the reader thread losing the GIL between a rename's two halves.
MOVE_PAIRING_DELAY = 0.05

# After a read this big a burst is on: wait a little before the next read, so the next
# one takes many events at once (fewer reads, fewer thread wake-ups per event) instead
# of a few each time the kernel wakes the reader. Files arriving one at a time are read
# at once.
BURST_BYTES = 64 * 32  # about 64 events
BURST_PAUSE = 0.01
# While the worker is busy with a batch, the readers leave the kernel's queue alone (up
# to this long at a time): what they would read waits for the batch's end anyway, and
# each read would wake a thread that takes the interpreter lock from the worker between
# two of its moves (the worker's own moves make events, so every move would).
BUSY_PAUSE = 0.05
READ_SIZE = 1 << 18  # bytes per read()

# the events the daemon acts on; watchdog builds the inotify mask from them (plus
# IN_DELETE_SELF, and IN_CREATE on recursive roots to watch new directories)
INOTIFY_EVENTS: list[type[ev.FileSystemEvent]] = [
    ev.FileCreatedEvent,  # IN_CREATE, IN_MOVED_TO
    ev.FileClosedEvent,  # IN_CLOSE_WRITE: a writer is done (in-place rewrites too)
    ev.FileMovedEvent,  # IN_MOVED_FROM, IN_MOVED_TO
    ev.FileDeletedEvent,  # IN_DELETE
    ev.DirCreatedEvent,
    ev.DirMovedEvent,
    ev.DirDeletedEvent,
]


# inotify event bits (linux/inotify.h)
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_ISDIR = 0x40000000

RawEvent = tuple[int, int, int, bytes]  # wd, mask, cookie, name: as the kernel wrote it


class Leaving:
    """Names of the files the daemon is moving right now (this batch and the one before).

    Their IN_MOVED_FROM out of a root is the daemon's own doing: `fold_events` drops it
    before watchdog builds an event from it. Written by the worker, read by the readers;
    each generation is a new set, swapped in whole.
    """

    def __init__(self) -> None:
        self._current: frozenset[bytes] = frozenset()
        self._previous: frozenset[bytes] = frozenset()

    def expect(self, paths: Iterable[str]) -> None:
        names = frozenset(os.fsencode(p[p.rfind("/") + 1 :]) for p in paths)
        self._previous, self._current = self._current, names

    def __contains__(self, name: object) -> bool:
        return name in self._current or name in self._previous


def fold_events(raw: Sequence[RawEvent], leaving: Leaving | None = None) -> list[RawEvent]:
    """What a burst makes per file, folded into fewer events before watchdog sees them.

    watchdog spends tens of microseconds of Python per event, and a file written into a
    root makes three: IN_CREATE, IN_CLOSE_WRITE, and IN_MOVED_FROM when the daemon moves
    it out. Within one read:
    - a file's IN_CREATE followed by its IN_CLOSE_WRITE, with no other event for that
      name between, becomes one event with both bits, at the close's place (the file was
      made here and its writer is done: what the two events say in turn);
    - an IN_MOVED_FROM of a file the daemon is moving (`leaving`), whose IN_MOVED_TO is
      not in this read and which is not the read's last event (its other half could be
      in the next read), is dropped: it would only tell the daemon to forget a file it
      has just handled.
    Directories and events of the watched directory itself pass untouched (watchdog
    keeps its watches by them).
    """
    moved_to = {cookie for _, mask, cookie, _ in raw if mask & IN_MOVED_TO}
    out: list[RawEvent | None] = []
    created: dict[tuple[int, bytes], int] = {}
    last = len(raw) - 1
    for index, event in enumerate(raw):
        wd, mask, cookie, name = event
        if mask & IN_ISDIR or not name:
            out.append(event)
            continue
        key = (wd, name)
        if mask & IN_CREATE:
            created[key] = len(out)
            out.append(event)
            continue
        made_at = created.pop(key, None)
        if mask & IN_CLOSE_WRITE and made_at is not None:
            out[made_at] = None
            out.append((wd, mask | IN_CREATE, cookie, name))
        elif (
            mask & IN_MOVED_FROM
            and leaving is not None
            and index != last
            and cookie not in moved_to
            and name in leaving
        ):
            continue
        else:
            out.append(event)
    return [event for event in out if event is not None]


@dataclass(frozen=True, slots=True)
class FsEvent:
    # inotify roots: new (made here, its creator has it open), created (moved in from
    # outside the root), closed, moved, deleted; polling roots: created, modified, moved,
    # deleted
    kind: str
    path: str
    dest: str | None = None
    is_dir: bool = False


@dataclass(frozen=True, slots=True)
class Overflow:
    at: float


# --- inotify roots --------------------------------------------------------------------------


class _MoveGrouper(InotifyMoveEventGrouper):
    """watchdog's move pairing, without holding later events behind a lone IN_MOVED_FROM.

    The queue is the grouper's own (a deque under a condition, like watchdog's
    DelayedQueue): `put_event` and the pairing are watchdog's; what changes is when the
    head IN_MOVED_FROM may go: as soon as another event is queued behind it (its
    IN_MOVED_TO would have taken it out of the queue), or after MOVE_PAIRING_DELAY.
    """

    delay = MOVE_PAIRING_DELAY

    def __init__(self) -> None:  # no super().__init__(): its DelayedQueue sleeps blindly
        self._queue = _ReleasingQueue(self.delay)  # type: ignore[assignment]

    def read_events(self) -> list[GroupedInotifyEvent]:
        """Every event that may go now (at least one: waits for it); [] once closed."""
        queue_ = self._queue
        assert isinstance(queue_, _ReleasingQueue)
        return queue_.get_all()


class _ReleasingQueue:
    """The subset of watchdog's DelayedQueue the grouper uses (put/get/find/remove/clear/
    close); a delayed head waits only while nothing is queued behind it."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._items: deque[tuple[GroupedInotifyEvent, float, bool]] = deque()
        self._changed = threading.Condition()
        self._closed = False

    def put(self, element: GroupedInotifyEvent, *, delay: bool = False) -> None:
        with self._changed:
            self._items.append((element, time.monotonic(), delay))
            self._changed.notify()

    def get(self) -> GroupedInotifyEvent | None:
        items = self.get_all(limit=1)
        return items[0] if items else None

    def get_all(self, limit: int = 0) -> list[GroupedInotifyEvent]:
        """What may go now, up to `limit` (0: all), waiting for one; [] once closed."""
        with self._changed:
            while not self._closed:
                taken: list[GroupedInotifyEvent] = []
                while self._items and self._may_go() and (not limit or len(taken) < limit):
                    taken.append(self._items.popleft()[0])
                if taken:
                    return taken
                self._changed.wait(self._wait())  # woken by the next put (a pair, or not)
            return []

    def _may_go(self) -> bool:
        _, queued_at, delay = self._items[0]
        return not delay or len(self._items) > 1 or queued_at + self.delay <= time.monotonic()

    def _wait(self) -> float | None:
        if not self._items:
            return None
        return max(0.0, self._items[0][1] + self.delay - time.monotonic())

    def find(self, predicate: Callable[[GroupedInotifyEvent], bool]) -> GroupedInotifyEvent | None:
        with self._changed:
            return next((item for item, _, _ in self._items if predicate(item)), None)

    def remove(
        self, predicate: Callable[[GroupedInotifyEvent], bool]
    ) -> GroupedInotifyEvent | None:
        with self._changed:
            for index, (item, _, _) in enumerate(self._items):
                if predicate(item):
                    del self._items[index]
                    return item
        return None

    def clear(self) -> None:
        with self._changed:
            self._items.clear()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


@dataclass
class _Group(InotifyWatchGroup):
    """watchdog's watch group with clerk's grouper, no synthetic events for the contents
    of new directories, and callbacks for an overflow and for the root's watch ending."""

    on_overflow: Callable[[], None] = field(default=lambda: None)
    on_root_gone: Callable[[], None] = field(default=lambda: None)
    _move_event_grouper: InotifyMoveEventGrouper = field(default_factory=_MoveGrouper, init=False)

    def read_events(self) -> list[GroupedInotifyEvent]:
        grouper = self._move_event_grouper
        assert isinstance(grouper, _MoveGrouper)
        return grouper.read_events()

    def _recursive_simulate(self, src_path: bytes) -> list[InotifyEvent]:
        return []  # the daemon walks a directory that arrives (Daemon._walk_into)

    def on_queue_overflow(self) -> None:
        super().on_queue_overflow()  # drops what is queued, watches new directories
        self.on_overflow()

    def on_watch_deleted(self, wd: WatchDescriptor) -> None:
        # the kernel dropped the root's watch: the root was deleted or unmounted
        gone = self.is_active and self._active_callbacks_by_path.get(self.path) == wd
        super().on_watch_deleted(wd)
        if gone:
            self.on_root_gone()


class _Emitter(InotifyEmitter):
    """watchdog's inotify emitter, handing `FsEvent`s straight to the daemon's intake."""

    def __init__(
        self,
        event_queue: EventQueue,
        watch: ObservedWatch,
        *,
        intake: queue.SimpleQueue[Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(event_queue, watch, **kwargs)
        self.intake = intake
        self.gone = False  # the root's own watch ended

    def on_thread_start(self) -> None:
        self._inotify = _Group(
            self._inotify_fd,
            os.fsencode(self.watch.path),
            is_recursive=self.watch.is_recursive,
            event_mask=self.get_event_mask_from_filter(),
            follow_symlink=self.watch.follow_symlink,
            on_overflow=self._overflowed,
            on_root_gone=self._root_gone,
        )

    def queue_events(self, timeout: float, *, full_events: bool = False) -> None:
        # watchdog's, taking every event ready at once instead of one per call
        with self._lock:
            inotify = self._inotify
        if not isinstance(inotify, _Group):
            return  # stopped
        events = inotify.read_events()
        with self._lock:
            if self._inotify is None:
                return
            for event in events:
                self.build_and_queue_event(event)

    def _overflowed(self) -> None:
        log.warning("root %s: inotify queue overflowed", self.watch.path)
        self.intake.put(Overflow(time.time()))

    def _root_gone(self) -> None:
        self.gone = True
        self.intake.put(FsEvent("deleted", self.watch.path, is_dir=True))
        self.stop()

    def build_and_queue_event(
        self, event: GroupedInotifyEvent, *, full_events: bool = False
    ) -> None:
        if not isinstance(event, PathedInotifyEvent):  # a rename inside the root
            src, dest = event
            self.intake.put(
                FsEvent("moved", os.fsdecode(src.path), os.fsdecode(dest.path), src.ev.is_directory)
            )
            return
        inotify, path = event.ev, os.fsdecode(event.path)
        is_dir = inotify.is_directory
        if inotify.is_close_write:  # with IN_CREATE too: made here, and already closed
            self.intake.put(FsEvent("new_closed" if inotify.is_create else "closed", path))
        elif inotify.is_create:
            self.intake.put(FsEvent("created" if is_dir else "new", path, is_dir=is_dir))
        elif inotify.is_moved_to:  # from outside the root: complete, it was renamed here
            self.intake.put(FsEvent("created", path, is_dir=is_dir))
        elif inotify.is_delete or inotify.is_moved_from:  # moved_from: out of the root
            self.intake.put(FsEvent("deleted", path, is_dir=is_dir))
        elif inotify.is_delete_self and path == self.watch.path and not self.gone:
            self._root_gone()


class _InotifyFD(InotifyFD):
    """watchdog's inotify reader, in two threads: a pump that only empties the kernel's
    queue into memory (pausing between the reads of a burst, BURST_BYTES), and watchdog's
    thread, which folds each read's events (`fold_events`) and builds watchdog events
    from them when the worker is between batches (BUSY_PAUSE).

    The kernel's queue holds fs.inotify.max_queued_events (16,384 by default): a second
    of a busy writer. While parsing shared one thread with reading, a burst beside a busy
    worker overflowed it (events lost, a reconcile walk); the pump keeps up (a read and a
    queue put per read, nothing per event).
    """

    def __init__(self, leaving: Leaving | None = None, idle: threading.Event | None = None) -> None:
        super().__init__()
        self._leaving = leaving
        self._idle = idle  # set while the worker is not in a batch
        self._chunks: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._pump = threading.Thread(target=self._pump_run, name="clerk-inotify", daemon=True)

    def start(self) -> None:
        self._pump.start()
        super().start()

    def _pump_run(self) -> None:
        while True:
            chunk = InotifyFD._read_event_buffer(self, READ_SIZE)  # b"": closed
            self._chunks.put(chunk)
            if not chunk:
                return
            if len(chunk) >= BURST_BYTES:
                self.stopped_event.wait(BURST_PAUSE)  # stop() ends the pause

    def _read_event_buffer(self, event_buffer_size: int) -> bytes:
        """What the pump has read: everything queued, waiting for the first chunk."""
        while True:
            try:
                chunk = self._chunks.get(timeout=0.5)
                break
            except queue.Empty:
                if not self.should_keep_running():
                    return b""
        chunks = [chunk]
        while chunk:
            try:
                chunk = self._chunks.get_nowait()
            except queue.Empty:
                break
            chunks.append(chunk)
        if not chunk:  # closed: the next call sees the pump's end too (not in a hot loop)
            self._chunks.put(b"")
            if len(chunks) == 1:
                self.stopped_event.wait(0.5)
        return b"".join(chunks)

    def read_events(self, *, event_buffer_size: int = READ_SIZE) -> list[InotifyEvent]:
        if self._idle is not None and not self._idle.is_set():
            self._idle.wait(BUSY_PAUSE)
        # watchdog's read_events, with the fold between parsing and building events
        raw = list(InotifyFD._parse_event_buffer(self._read_event_buffer(event_buffer_size)))
        return [
            InotifyEvent(WatchDescriptor(wd), Mask(mask), cookie, name)
            for wd, mask, cookie, name in fold_events(raw, self._leaving)
            if wd != -1 or mask & IN_Q_OVERFLOW  # IN_Q_OVERFLOW comes with wd -1
        ]


class _Observer(BaseObserver):
    """watchdog's InotifyObserver (one inotify instance per observer), with `_Emitter`."""

    def __init__(
        self,
        intake: queue.SimpleQueue[Any],
        leaving: Leaving | None = None,
        idle: threading.Event | None = None,
    ) -> None:
        self.inotify_fd = _InotifyFD(leaving, idle)
        self.inotify_fd.start()
        super().__init__(
            _Emitter, timeout=DEFAULT_OBSERVER_TIMEOUT, inotify_fd=self.inotify_fd, intake=intake
        )

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self.inotify_fd.stop()
        self.inotify_fd.join()


# --- polling roots ----------------------------------------------------------------------------

_KINDS: dict[type[ev.FileSystemEvent], str] = {
    ev.FileCreatedEvent: "created",
    ev.FileModifiedEvent: "modified",
    ev.FileDeletedEvent: "deleted",
    ev.FileMovedEvent: "moved",
    ev.DirCreatedEvent: "created",
    ev.DirDeletedEvent: "deleted",
    ev.DirMovedEvent: "moved",
}


class _Enqueue(ev.FileSystemEventHandler):
    def __init__(self, intake: queue.SimpleQueue[Any]):
        self.intake = intake

    def dispatch(self, event: ev.FileSystemEvent) -> None:
        kind = _KINDS.get(type(event))
        if kind is None:  # directory modified: nothing to act on
            return
        dest = os.fsdecode(event.dest_path) if event.dest_path else None
        self.intake.put(FsEvent(kind, os.fsdecode(event.src_path), dest, event.is_directory))


# --- all roots --------------------------------------------------------------------------------


class Watchers:
    """Starts, checks and restarts the observers of a set of roots."""

    def __init__(self, intake: queue.SimpleQueue[Any]):
        self.intake = intake
        self.leaving = Leaving()  # the worker says what it is moving (see fold_events)
        # cleared by the worker while it works a batch (see BUSY_PAUSE)
        self.worker_idle = threading.Event()
        self.worker_idle.set()
        self.observers: dict[str, BaseObserver] = {}
        self.roots: dict[str, Root] = {}
        self.errors: dict[str, str] = {}
        self.restarts = 0

    def start(self, roots: list[Root]) -> None:
        for root in roots:
            self.roots[root.name] = root
            self._start_one(root)

    def _start_one(self, root: Root) -> bool:
        observer: BaseObserver
        try:
            if root.poll:
                observer = PollingObserver(timeout=POLL_INTERVAL)
                handler: ev.FileSystemEventHandler = _Enqueue(self.intake)
                events = None
            else:
                observer = _Observer(self.intake, self.leaving, self.worker_idle)
                handler, events = ev.FileSystemEventHandler(), INOTIFY_EVENTS  # _Emitter feeds
        except OSError as exc:  # EMFILE: fs.inotify.max_user_instances reached
            return self._failed(root, exc, None)
        try:
            observer.schedule(
                handler,
                root.path,
                recursive=root.recursive,
                event_filter=events,
                follow_symlink=root.follow_symlinks,
            )
            observer.start()
        except OSError as exc:
            # e.g. ENOSPC: fs.inotify.max_user_watches reached (see docs/operations.md)
            return self._failed(root, exc, observer)
        self.observers[root.name] = observer
        self.errors.pop(root.name, None)
        log.info("watching root %s: %s%s", root.name, root.path, " (polling)" if root.poll else "")
        return True

    def _failed(self, root: Root, exc: OSError, observer: BaseObserver | None) -> bool:
        self.errors[root.name] = f"cannot watch {root.path}: {exc.strerror or exc}"
        log.error("root %s: %s", root.name, self.errors[root.name])
        if observer is not None:
            _stop(observer)
        return False

    def dead(self) -> list[str]:
        """Roots whose observer (or one of its threads) is not running."""
        names = []
        for name in list(self.roots):  # list(): the control thread asks during reloads
            observer = self.observers.get(name)
            if observer is None or not _alive(observer):
                names.append(name)
        return names

    def restart(self, root: Root) -> bool:
        self.roots[root.name] = root
        old = self.observers.pop(root.name, None)
        if old is not None:
            _stop(old)
        self.restarts += 1
        return self._start_one(root)

    def stop(self) -> None:
        for observer in self.observers.values():
            _stop(observer)
        self.observers.clear()
        self.roots.clear()

    def close(self) -> None:
        self.stop()


def _alive(observer: BaseObserver) -> bool:
    if isinstance(observer, _Observer) and not observer.inotify_fd.is_alive():
        return False
    return observer.is_alive() and all(e.is_alive() for e in observer.emitters)


def _stop(observer: BaseObserver) -> None:
    try:
        observer.stop()
        if observer.is_alive():
            observer.join(timeout=5)
    except Exception as exc:  # a half-started observer: nothing more to release
        log.debug("stopping observer: %s", exc)
