"""Watchers: one watchdog observer per watched root, feeding the daemon's intake queue.

The handler runs on watchdog's threads and only enqueues `FsEvent`s: everything else
(settle, rules, the store) happens on the worker thread. inotify reports a kernel queue
overflow only through watchdog's log, so a log handler turns that line into an
`Overflow` item (the worker then reconciles: overflowed events are lost for good).
"""

from __future__ import annotations

import logging
import os
import queue
import time
from dataclasses import dataclass
from typing import Any

from watchdog import events as ev
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from clerk.rules.model import Root

log = logging.getLogger("clerk.daemon.watch")

POLL_INTERVAL = 1.0
_WATCHDOG_LOGGER = "watchdog.observers.inotify_c"


@dataclass(frozen=True, slots=True)
class FsEvent:
    kind: str  # created modified attrib opened closed closed_nowrite deleted moved
    path: str
    dest: str | None = None
    is_dir: bool = False


@dataclass(frozen=True, slots=True)
class Overflow:
    at: float


_KINDS: dict[type[ev.FileSystemEvent], str] = {
    ev.FileCreatedEvent: "created",
    ev.FileModifiedEvent: "modified",
    ev.FileAttribEvent: "attrib",
    ev.FileOpenedEvent: "opened",
    ev.FileClosedEvent: "closed",
    ev.FileClosedNoWriteEvent: "closed_nowrite",
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
        if kind is None:  # directory modified/attrib: nothing to act on
            return
        dest = os.fsdecode(event.dest_path) if event.dest_path else None
        self.intake.put(FsEvent(kind, os.fsdecode(event.src_path), dest, event.is_directory))


class _OverflowLog(logging.Handler):
    def __init__(self, intake: queue.SimpleQueue[Any]):
        super().__init__(logging.WARNING)
        self.intake = intake

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.intake.put(Overflow(time.time()))


class Watchers:
    """Starts, checks and restarts the observers of a set of roots."""

    def __init__(self, intake: queue.SimpleQueue[Any]):
        self.intake = intake
        self.observers: dict[str, BaseObserver] = {}
        self.roots: dict[str, Root] = {}
        self.errors: dict[str, str] = {}
        self.restarts = 0
        self._overflow_log = _OverflowLog(intake)
        watchdog_log = logging.getLogger(_WATCHDOG_LOGGER)
        watchdog_log.addHandler(self._overflow_log)
        # the overflow line must be created even when clerk logs only errors
        if watchdog_log.getEffectiveLevel() > logging.WARNING:
            watchdog_log.setLevel(logging.WARNING)

    def start(self, roots: list[Root]) -> None:
        for root in roots:
            self.roots[root.name] = root
            self._start_one(root)

    def _start_one(self, root: Root) -> bool:
        observer: BaseObserver = PollingObserver(timeout=POLL_INTERVAL) if root.poll else Observer()
        try:
            observer.schedule(_Enqueue(self.intake), root.path, recursive=root.recursive)
            observer.start()
        except OSError as exc:
            # e.g. ENOSPC: fs.inotify.max_user_watches reached (see docs/operations.md)
            self.errors[root.name] = f"cannot watch {root.path}: {exc.strerror or exc}"
            log.error("root %s: %s", root.name, self.errors[root.name])
            _stop(observer)
            return False
        self.observers[root.name] = observer
        self.errors.pop(root.name, None)
        log.info("watching root %s: %s%s", root.name, root.path, " (polling)" if root.poll else "")
        return True

    def dead(self) -> list[str]:
        """Roots whose observer (or one of its emitters) is not running."""
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
            observer.stop()
        for observer in self.observers.values():
            observer.join(timeout=5)
        self.observers.clear()
        self.roots.clear()

    def close(self) -> None:
        # watchdog logs an ERROR when an emitter is stopped mid-read: expected here
        logging.getLogger("watchdog.observers.inotify").setLevel(logging.CRITICAL)
        self.stop()
        logging.getLogger(_WATCHDOG_LOGGER).removeHandler(self._overflow_log)


def _alive(observer: BaseObserver) -> bool:
    return observer.is_alive() and all(e.is_alive() for e in observer.emitters)


def _stop(observer: BaseObserver) -> None:
    try:
        observer.stop()
        if observer.is_alive():
            observer.join(timeout=5)
    except Exception as exc:  # a half-started observer: nothing more to release
        log.debug("stopping observer: %s", exc)
