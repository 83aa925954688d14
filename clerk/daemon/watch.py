"""Watchers: one watchdog observer per watched root, feeding the daemon's intake queue.

clerk meets watchdog at its public seam only: an observer is a plain `BaseObserver`
built with `emitter_class=InotifyEmitter`, the emitter is an `EventEmitter` whose
`queue_events(timeout)` hands what it read to `queue_event`, and watchdog's dispatch
thread gives it to `Enqueue`, the handler that puts clerk's events on the intake.
Everything below `queue_events` is clerk's own (`Inotify`): its inotify instance
(inotify_init1, inotify_add_watch, inotify_rm_watch through libc), the reads and the
parsing of `struct inotify_event`, the map of watch descriptors to directories, the
watches of new and renamed directories on recursive roots, and the pairing of renames.
No private watchdog name is used (tests/test_watchdog_seam.py fails on one), so a
watchdog release that reworks its own inotify code does not touch clerk.

Tuned for a daemon that moves files out of its roots all day:

- the kernel is asked only for what the daemon acts on (`WATCH_MASK`): no IN_OPEN /
  IN_CLOSE_NOWRITE (our own libmagic and hash reads make those), no IN_MODIFY (one per
  write(); the IN_CLOSE_WRITE that follows says more) or IN_ATTRIB;
- a file made here (IN_CREATE) is reported as "new": its creator has it open, so the
  settler waits for its IN_CLOSE_WRITE (a slow writer is not moved mid-file);
- a rename's two halves are paired by cookie within one read (the kernel queues them one
  after the other); nothing waits behind an IN_MOVED_FROM, only a lone one that ends a
  read waits up to MOVE_PAIRING_DELAY for the next read (watchdog's own grouper holds
  every event behind an IN_MOVED_FROM for 0.5 s: each of the daemon's moves out of a root
  would stall the events behind it);
- a pump thread only empties the kernel's queue (BURST_BYTES, BURST_PAUSE), so a burst
  beside a busy worker does not overflow it; the emitter thread parses what the pump read
  while the worker is between batches (BUSY_PAUSE), folds each read (`fold_events`,
  `Leaving`: the daemon's own moves out of a root are dropped early) and hands the whole
  read to watchdog as one `Batch`: one trip through watchdog's queue and dispatch thread
  per read, not per event, and no FileSystemEvent per file, no DirModifiedEvents, and no
  synthetic events for the contents of a new directory (the daemon walks directories
  that arrive itself).

A kernel queue overflow (IN_Q_OVERFLOW) becomes an `Overflow` item, after the watches of
a recursive root are checked against its tree again: the worker then reconciles, because
overflowed events are lost for good. The end of the root's own watch (IN_DELETE_SELF,
IN_IGNORED: deleted or unmounted) is a "deleted" event for the root, and its emitter
stops (`Watchers.dead` reports it, the daemon restarts it when the root is back).
`poll: true` roots (NFS, SMB) use watchdog's `PollingObserver` and the same handler.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import queue
import select
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from watchdog import events as ev
from watchdog.observers.api import (
    DEFAULT_EMITTER_TIMEOUT,
    DEFAULT_OBSERVER_TIMEOUT,
    BaseObserver,
    EventEmitter,
    EventQueue,
    ObservedWatch,
)
from watchdog.observers.polling import PollingObserver

from clerk.roots import Root

log = logging.getLogger("clerk.daemon.watch")

POLL_INTERVAL = 1.0
# How long an IN_MOVED_FROM that ends a read waits for its IN_MOVED_TO in the next read.
# Only that lone event waits (a rename's IN_MOVED_TO follows it at once in the kernel's
# queue, so events behind it in the same read show it was not a rename), so this is not
# latency: it covers a read that ended between a rename's two halves.
MOVE_PAIRING_DELAY = 0.05

# After a read this big a burst is on: wait a little before the next read, so the next
# one takes many events at once (fewer reads, fewer thread wake-ups per event) instead
# of a few each time the kernel wakes the reader. Files arriving one at a time are read
# at once.
BURST_BYTES = 64 * 32  # about 64 events
BURST_PAUSE = 0.01
# While the worker is busy with a batch, the emitter leaves what the pump read alone (up
# to this long at a time): what it would parse waits for the batch's end anyway, and each
# parse takes the interpreter lock from the worker between two of its moves (the worker's
# own moves make events, so every move would).
BUSY_PAUSE = 0.05
READ_SIZE = 1 << 18  # bytes per read()

# inotify event bits (linux/inotify.h)
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK  # inotify_init1 flags
IN_CLOEXEC = os.O_CLOEXEC

# what a watched directory reports: the events the daemon acts on (IN_CREATE also makes
# the watches of new directories on recursive roots) and the end of the directory itself
WATCH_MASK = (
    IN_CREATE
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_ONLYDIR
)

RawEvent = tuple[int, int, int, bytes]  # wd, mask, cookie, name: as the kernel wrote it
_HEADER = struct.Struct("iIII")  # struct inotify_event without its name: wd, mask, cookie, len


class Leaving:
    """Names of the files the daemon is moving right now (this batch and the one before).

    Their IN_MOVED_FROM out of a root is the daemon's own doing: `fold_events` drops it
    before it becomes an event. Written by the worker, read by the emitters; each
    generation is a new set, swapped in whole.
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
    """What a burst makes per file, folded into fewer events.

    A file written into a root makes three: IN_CREATE, IN_CLOSE_WRITE, and IN_MOVED_FROM
    when the daemon moves it out. Within one read:
    - a file's IN_CREATE followed by its IN_CLOSE_WRITE, with no other event for that
      name between, becomes one event with both bits, at the close's place (the file was
      made here and its writer is done: what the two events say in turn);
    - an IN_MOVED_FROM of a file the daemon is moving (`leaving`), whose IN_MOVED_TO is
      not in this read and which is not the read's last event (its other half could be
      in the next read), is dropped: it would only tell the daemon to forget a file it
      has just handled.
    Directories and events of the watched directory itself pass untouched (the watches
    are kept by them).
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


def parse_events(buffer: bytes) -> list[RawEvent]:
    """The `struct inotify_event`s of one read: (wd, mask, cookie, name) each, the name
    without its NUL padding (b"" for an event of the watched directory itself)."""
    out: list[RawEvent] = []
    unpack, at, end = _HEADER.unpack_from, 0, len(buffer) - _HEADER.size
    while at <= end:
        wd, mask, cookie, length = unpack(buffer, at)
        at += 16
        out.append((wd, mask, cookie, buffer[at : at + length].rstrip(b"\0") if length else b""))
        at += length
    return out


@dataclass(frozen=True, slots=True)
class FsEvent:
    # inotify roots: new (made here, its creator has it open), new_closed (made here and
    # already closed), created (a directory made here), moved_in (renamed here from outside
    # the root: a `moved` arrival), closed, moved, deleted; polling roots (which cannot
    # tell what was renamed in from outside): created, modified, moved, deleted
    kind: str
    path: str
    dest: str | None = None
    is_dir: bool = False


@dataclass(frozen=True, slots=True)
class Overflow:
    at: float


Item = FsEvent | Overflow


# --- inotify roots: the kernel side, clerk's own -------------------------------------------


_libc = ctypes.CDLL(None, use_errno=True)
_inotify_init1 = _libc.inotify_init1
_inotify_init1.argtypes, _inotify_init1.restype = [ctypes.c_int], ctypes.c_int
_inotify_add_watch = _libc.inotify_add_watch
_inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_inotify_add_watch.restype = ctypes.c_int
_inotify_rm_watch = _libc.inotify_rm_watch
_inotify_rm_watch.argtypes, _inotify_rm_watch.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int

# what the limits are called, for the message of a root that cannot be watched
_LIMITS = {
    errno.ENOSPC: "inotify watch limit reached (fs.inotify.max_user_watches)",
    errno.EMFILE: "inotify instance limit reached (fs.inotify.max_user_instances)",
}


def _join(directory: bytes, name: bytes) -> bytes:
    return directory + name if directory.endswith(b"/") else directory + b"/" + name


def _error(path: bytes | None = None) -> OSError:
    code = ctypes.get_errno()
    message = _LIMITS.get(code) or os.strerror(code)
    return OSError(code, message) if path is None else OSError(code, message, os.fsdecode(path))


class Inotify:
    """One root's inotify instance, and what its events mean (no watchdog code below here).

    Two threads: the pump (`clerk-inotify`) only reads the kernel's queue into memory
    (pausing between the reads of a burst, BURST_BYTES); the emitter's thread calls
    `read`, which parses, folds and translates everything read so far. The kernel's queue
    holds fs.inotify.max_queued_events (16,384 by default): a second of a busy writer.
    While parsing shared one thread with reading, a burst beside a busy worker overflowed
    it (events lost, a reconcile walk); the pump keeps up (a read and a queue put per
    read, nothing per event).

    The watch map (`paths`: watch descriptor -> directory, and back) is the emitter
    thread's alone; so are a held IN_MOVED_FROM and `gone` (the root's own watch ended).
    """

    def __init__(
        self,
        root: str,
        *,
        recursive: bool,
        follow_symlinks: bool,
        leaving: Leaving | None = None,
    ) -> None:
        self.root = os.fsencode(root)
        self.root_str = root
        self.recursive = recursive
        self.follow_symlinks = follow_symlinks
        self.leaving = leaving
        self.mask = WATCH_MASK if follow_symlinks else WATCH_MASK | IN_DONT_FOLLOW
        self.paths: dict[int, bytes] = {}  # watch descriptor -> watched directory
        self.prefixes: dict[int, str] = {}  # watch descriptor -> its directory + "/", decoded
        self.wds: dict[bytes, int] = {}  # watched directory -> watch descriptor
        self.gone = False  # the root's own watch ended
        self.chunks: queue.SimpleQueue[bytes] = queue.SimpleQueue()  # b"": the pump ended
        self._held: RawEvent | None = None  # an IN_MOVED_FROM that ended a read
        self._held_until = 0.0
        self._closing = threading.Event()
        self._lock = threading.Lock()  # the fds' end against the pump's wake-up
        self._closed = False
        fd = _inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise _error()
        self.fd = fd
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            # the root's own path is followed when it is a symlink (as the walk does);
            # symlinks below it only on a root that says so
            self.root_wd = self._watch(self.root, self.mask & ~IN_DONT_FOLLOW)
            if recursive:
                self._watch_below(self.root)
        except BaseException:
            self._close_fds()
            raise
        self._pump = threading.Thread(target=self._pump_run, name="clerk-inotify", daemon=True)
        self._pump.start()

    # --- the pump ---------------------------------------------------------------------------
    def _pump_run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while not self._closing.is_set():
                try:
                    poller.poll()
                    if self._closing.is_set():
                        return
                    chunk = os.read(self.fd, READ_SIZE)
                except (BlockingIOError, InterruptedError):
                    continue
                if not chunk:
                    return
                self.chunks.put(chunk)
                if len(chunk) >= BURST_BYTES:
                    self._closing.wait(BURST_PAUSE)  # stop() ends the pause
        except OSError as exc:
            log.error("root %s: reading inotify failed: %s", self.root_str, exc)
        finally:
            self.chunks.put(b"")  # the emitter stops on it

    def stop(self) -> None:
        """Ask the pump to end (any thread; `close` releases the fds afterwards)."""
        self._closing.set()
        with self._lock:
            if not self._closed:
                with contextlib.suppress(BlockingIOError):  # woken already
                    os.write(self._wake_w, b"!")

    def close(self) -> None:
        """End the pump and release the instance (its watches go with it)."""
        self.stop()
        if self._pump is not threading.current_thread():
            self._pump.join()
        self._close_fds()

    def _close_fds(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                for fd in (self.fd, self._wake_r, self._wake_w):
                    os.close(fd)

    # --- the emitter's side -----------------------------------------------------------------
    def read(self, timeout: float) -> tuple[list[Item], bool]:
        """Everything the pump has read, as clerk's events, waiting up to `timeout` for the
        first read (less while an IN_MOVED_FROM waits for its pair); and whether the pump
        still runs."""
        held = self._held
        wait = timeout if held is None else max(0.0, self._held_until - time.monotonic())
        try:
            chunk = self.chunks.get(timeout=wait)
        except queue.Empty:
            if held is None:
                return [], True
            self._held = None  # no IN_MOVED_TO came: moved out of the root
            return self._translate([held], hold_last=False), True
        chunks = [chunk]
        while chunk:
            try:
                chunk = self.chunks.get_nowait()
            except queue.Empty:
                break
            chunks.append(chunk)
        running = bool(chunk)
        raw = parse_events(b"".join(chunks))
        if held is not None:
            self._held = None
            raw.insert(0, held)
        return self._translate(fold_events(raw, self.leaving), hold_last=running), running

    def _translate(self, raw: list[RawEvent], *, hold_last: bool) -> list[Item]:
        """What one read's events mean, in order; keeps the watch map up to date as it
        goes (an event's directory is where it was when the kernel queued the event)."""
        out: list[Item] = []
        # the IN_MOVED_FROMs of this read whose IN_MOVED_TO is in it too: cookie -> path
        paired = {cookie for _, mask, cookie, _ in raw if mask & IN_MOVED_TO}
        moving: dict[int, tuple[bytes, str]] = {}
        last = len(raw) - 1
        for index, event in enumerate(raw):
            wd, mask, cookie, name = event
            prefix = self.prefixes.get(wd)
            if prefix is None:
                if mask & IN_Q_OVERFLOW:  # wd -1
                    out += self._unpaired(moving)
                    out.append(self._overflowed())
                continue  # a watch removed already (its last events), or wd -1
            if mask & IN_IGNORED or (mask & IN_DELETE_SELF and wd == self.root_wd):
                if wd == self.root_wd:  # the root was deleted or unmounted
                    self.gone = True
                    out += self._unpaired(moving)
                    out.append(FsEvent("deleted", self.root_str, is_dir=True))
                    return out
                self._forget(wd)
                continue
            if not name:
                continue  # IN_DELETE_SELF of a subdirectory: its IN_IGNORED follows
            path = prefix + os.fsdecode(name)
            is_dir = bool(mask & IN_ISDIR)
            if mask & IN_CLOSE_WRITE:  # with IN_CREATE too: made here, and already closed
                out.append(FsEvent("new_closed" if mask & IN_CREATE else "closed", path))
            elif mask & IN_CREATE:
                if is_dir and self.recursive:
                    self._watch_tree(_join(self.paths[wd], name))
                out.append(FsEvent("created" if is_dir else "new", path, is_dir=is_dir))
            elif mask & IN_MOVED_FROM:
                if cookie in paired:
                    moving[cookie] = (_join(self.paths[wd], name), path)
                elif hold_last and index == last:
                    self._held = event  # its IN_MOVED_TO may be the next read's first event
                    self._held_until = time.monotonic() + MOVE_PAIRING_DELAY
                else:  # out of the root
                    if is_dir:
                        self._unwatch_tree(_join(self.paths[wd], name))
                    out.append(FsEvent("deleted", path, is_dir=is_dir))
            elif mask & IN_MOVED_TO:
                source = moving.pop(cookie, None)
                full = _join(self.paths[wd], name)
                if source is not None:  # a rename inside the root
                    if is_dir and not self._move_tree(source[0], full) and self.recursive:
                        self._watch_tree(full)
                    out.append(FsEvent("moved", source[1], path, is_dir))
                else:  # from outside the root: complete, it was renamed here
                    if is_dir and self.recursive:
                        self._watch_tree(full)
                    out.append(FsEvent("moved_in", path, is_dir=is_dir))
            elif mask & IN_DELETE:
                out.append(FsEvent("deleted", path, is_dir=is_dir))
        out += self._unpaired(moving)
        return out

    def _unpaired(self, moving: dict[int, tuple[bytes, str]]) -> list[Item]:
        """IN_MOVED_FROMs whose IN_MOVED_TO never came (an overflow, a watch removed
        between): moved out of the root, as far as anyone can tell."""
        out: list[Item] = []
        for full, path in moving.values():
            is_dir = full in self.wds
            if is_dir:
                self._unwatch_tree(full)
            out.append(FsEvent("deleted", path, is_dir=is_dir))
        moving.clear()
        return out

    def _overflowed(self) -> Overflow:
        log.warning("root %s: inotify queue overflowed", self.root_str)
        if self.recursive:  # directories made or renamed in the events lost
            seen = self._watch_tree(self.root)
            for wd in [wd for wd in self.paths if wd not in seen]:
                self._unwatch(wd)
        return Overflow(time.time())

    # --- the watch map ----------------------------------------------------------------------
    def _watch(self, directory: bytes, mask: int | None = None) -> int:
        wd = _inotify_add_watch(self.fd, directory, self.mask if mask is None else mask)
        if wd < 0:
            raise _error(directory)
        old = self.paths.get(wd)
        if old is not None and old != directory:
            if os.path.lexists(old):
                return wd  # one directory, two names (a symlink followed): the first stays
            del self.wds[old]  # renamed while events were lost
        self.paths[wd] = directory
        self.prefixes[wd] = os.fsdecode(_join(directory, b""))
        self.wds[directory] = wd
        return wd

    def _watch_tree(self, top: bytes) -> set[int]:
        """Watch `top` and every directory below it; the watch descriptors."""
        try:
            seen = {self._watch(top)}
        except OSError as exc:  # gone again, or not ours to read
            if exc.errno == errno.ENOSPC:
                log.warning("root %s: cannot watch %s: %s", self.root_str, exc.filename, exc)
            return set()
        return seen | self._watch_below(top)

    def _watch_below(self, top: bytes) -> set[int]:
        seen: set[int] = set()
        todo = [top]
        while todo:
            directory = todo.pop()
            try:
                with os.scandir(directory) as entries:
                    below = [
                        e.path for e in entries if e.is_dir(follow_symlinks=self.follow_symlinks)
                    ]
            except OSError:
                continue  # gone, or not ours to read
            for path in below:
                try:
                    wd = self._watch(path)
                except OSError as exc:
                    if exc.errno == errno.ENOSPC:
                        log.warning("root %s: cannot watch %s: %s", self.root_str, path, exc)
                    continue
                if wd not in seen and wd != self.root_wd:  # a symlink loop ends here
                    seen.add(wd)
                    todo.append(path)
        return seen

    def _move_tree(self, source: bytes, dest: bytes) -> bool:
        """A watched directory was renamed inside the root: its watches (and those below
        it) are kept by the kernel, under the new name. False if it was not watched."""
        if source not in self.wds:
            return False
        below = _join(source, b"")
        for wd, path in list(self.paths.items()):
            if path == source or path.startswith(below):
                del self.wds[path]
                moved = dest + path[len(source) :]
                self.paths[wd], self.prefixes[wd] = moved, os.fsdecode(_join(moved, b""))
                self.wds[moved] = wd
        return True

    def _unwatch_tree(self, top: bytes) -> None:
        """A directory left the root: its watches (and those below it) would report
        events under a name it no longer has."""
        below = _join(top, b"")
        for wd in [wd for wd, path in self.paths.items() if path == top or path.startswith(below)]:
            if wd != self.root_wd:
                self._unwatch(wd)

    def _unwatch(self, wd: int) -> None:
        _inotify_rm_watch(self.fd, wd)  # EINVAL when the kernel removed it already
        self._forget(wd)

    def _forget(self, wd: int) -> None:
        path = self.paths.pop(wd, None)
        self.prefixes.pop(wd, None)
        if path is not None and self.wds.get(path) == wd:
            del self.wds[path]


# --- inotify roots: the seam with watchdog ----------------------------------------------------


class Batch(ev.FileSystemEvent):
    """What one read of a root's inotify queue meant, in order: clerk's events handed
    through watchdog's queue and dispatch thread as one item (the root is its src_path).
    Compared by identity: watchdog's queue drops an item equal to the one queued before
    it, and two reads may well mean the same."""

    event_type = "clerk_batch"

    def __init__(self, root: str, items: list[Item]) -> None:
        super().__init__(root)
        self.items = items

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


class InotifyEmitter(EventEmitter):
    """watchdog's emitter for one inotify root: `queue_events` queues what `Inotify` read
    as one `Batch`. Built by `BaseObserver(InotifyEmitter, leaving=..., idle=...)`."""

    def __init__(
        self,
        event_queue: EventQueue,
        watch: ObservedWatch,
        *,
        timeout: float = DEFAULT_EMITTER_TIMEOUT,
        event_filter: list[type[ev.FileSystemEvent]] | None = None,
        leaving: Leaving | None = None,
        idle: threading.Event | None = None,
    ) -> None:
        super().__init__(event_queue, watch, timeout=timeout, event_filter=event_filter)
        self.leaving = leaving
        self.idle = idle  # set while the worker is not in a batch (see BUSY_PAUSE)
        self.inotify: Inotify | None = None

    def on_thread_start(self) -> None:
        # raises OSError for a root that cannot be watched (observer.start() says so)
        self.inotify = Inotify(
            self.watch.path,
            recursive=self.watch.is_recursive,
            follow_symlinks=self.watch.follow_symlink,
            leaving=self.leaving,
        )

    def on_thread_stop(self) -> None:
        if self.inotify is not None:
            self.inotify.stop()

    def run(self) -> None:
        try:
            super().run()
        finally:
            if self.inotify is not None:
                self.inotify.close()

    def queue_events(self, timeout: float) -> None:
        inotify = self.inotify
        assert inotify is not None
        if self.idle is not None and not self.idle.is_set():
            self.idle.wait(BUSY_PAUSE)
        items, running = inotify.read(timeout)
        if items:
            self.queue_event(Batch(self.watch.path, items))
        if inotify.gone or not running:
            self.stop()


# --- all roots --------------------------------------------------------------------------------

_KINDS: dict[type[ev.FileSystemEvent], str] = {  # polling roots
    ev.FileCreatedEvent: "created",
    ev.FileModifiedEvent: "modified",
    ev.FileDeletedEvent: "deleted",
    ev.FileMovedEvent: "moved",
    ev.DirCreatedEvent: "created",
    ev.DirDeletedEvent: "deleted",
    ev.DirMovedEvent: "moved",
}


class Enqueue(ev.FileSystemEventHandler):
    """The handler of every root: puts clerk's events on the daemon's intake, on
    watchdog's dispatch thread."""

    def __init__(self, intake: queue.SimpleQueue[Any]):
        self.intake = intake

    def dispatch(self, event: ev.FileSystemEvent) -> None:
        if isinstance(event, Batch):  # an inotify root's read
            for item in event.items:
                self.intake.put(item)
            return
        kind = _KINDS.get(type(event))
        if kind is None:  # directory modified: nothing to act on
            return
        dest = os.fsdecode(event.dest_path) if event.dest_path else None
        self.intake.put(FsEvent(kind, os.fsdecode(event.src_path), dest, event.is_directory))


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
        if root.poll:
            observer = PollingObserver(timeout=POLL_INTERVAL)
        else:  # one inotify instance per root, made when the observer starts
            observer = BaseObserver(
                InotifyEmitter,
                timeout=DEFAULT_OBSERVER_TIMEOUT,
                leaving=self.leaving,
                idle=self.worker_idle,
            )
        try:
            observer.schedule(
                Enqueue(self.intake),
                root.path,
                recursive=root.recursive,
                follow_symlink=root.follow_symlinks,
            )
            observer.start()
        except OSError as exc:
            # ENOSPC: fs.inotify.max_user_watches reached, EMFILE: max_user_instances
            # (see docs/operations.md)
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
        """Roots whose observer (or its emitter) is not running."""
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
    return observer.is_alive() and all(e.is_alive() for e in observer.emitters)


def _stop(observer: BaseObserver) -> None:
    try:
        observer.stop()
        if observer.is_alive():
            observer.join(timeout=5)
    except Exception as exc:  # a half-started observer: nothing more to release
        log.debug("stopping observer: %s", exc)
