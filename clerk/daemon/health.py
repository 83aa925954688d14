"""Root health: which watched roots are there, and whether their watchers run.

A root is available while its directory is on the device it was on when the rules were
loaded: a root that is missing, or whose file system was unmounted (the directory is
then on the parent's device), gets no actions until it is back. A root that comes back,
or whose watcher died and was restarted, lost events meanwhile: `check` says why a
reconcile is due. What is wrong is kept in `problems` (the daemon is DEGRADED while it
is non-empty).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from clerk.daemon.reconcile import root_device

if TYPE_CHECKING:
    from clerk.daemon.watch import Watchers
    from clerk.roots import Root

log = logging.getLogger("clerk.daemon")

_ROOT, _WATCH = "root:", "watch:"


class RootHealth:
    """The availability of the watched roots and the state of their watchers."""

    def __init__(self, watchers: Watchers, record_error: Callable[[str, str], None]):
        self._watchers = watchers
        self._record_error = record_error
        self._roots: dict[str, Root] = {}
        self._devices: dict[str, int | None] = {}
        self._unavailable: set[str] = set()
        self._back: set[str] = set()  # roots back after being unavailable: watch anew
        # what is wrong -> why (`clerk status` reads it from the control thread)
        self.problems: dict[str, str] = {}

    def use(self, roots: Iterable[Root]) -> None:
        """The watched roots of a (re)loaded rule set: their devices as they are now."""
        self._roots = {r.name: r for r in roots}
        self._devices = {name: root_device(r) for name, r in self._roots.items()}
        self._unavailable = {n for n, dev in self._devices.items() if dev is None}

    def up(self, name: str) -> bool:
        """Whether root `name` was available when last looked at (no system call)."""
        return name not in self._unavailable

    def available(self, root: Root) -> bool:
        """Look now: a root is there while its directory is on the device it was on."""
        expected = self._devices.get(root.name)
        device = root_device(root)
        ok = device is not None and device == expected
        key = _ROOT + root.name
        if ok and root.name in self._unavailable:
            self._unavailable.discard(root.name)
            self.problems.pop(key, None)
            self._back.add(root.name)
            log.warning("root %s is available again", root.name)
        elif not ok and root.name not in self._unavailable:
            self._unavailable.add(root.name)
            why = "missing" if device is None else "on another device (unmounted?)"
            self.problems[key] = f"root {root.name} unavailable: {root.path} {why}"
            self._record_error("root", self.problems[key])
            log.error("%s; no actions there until it is back", self.problems[key])
        elif not ok:
            self.problems.setdefault(key, f"root {root.name} unavailable: {root.path}")
        return ok

    def sweepable(self, root: Root) -> bool:
        """Whether a lifecycle sweep may act in `root` (watched or not)."""
        if root.watch:
            return self.available(root)
        return root_device(root) is not None

    def start_watchers(self) -> None:
        """Watch every available root (at start)."""
        self._watchers.start([r for r in self._roots.values() if self.up(r.name)])

    def restart_watchers(self) -> None:
        """The watched roots changed (a reload): new watchers, old watcher problems gone."""
        self._watchers.stop()
        self.problems = {k: v for k, v in self.problems.items() if not k.startswith(_WATCH)}
        self.start_watchers()

    def check(self) -> str | None:
        """Look at every root and watcher; restart what died and watch roots that came
        back. Returns why a reconcile is due now (events were lost), or None."""
        reconcile: str | None = None
        for root in self._roots.values():
            self.available(root)
        for name in sorted(self._back):
            # its old watch (if any) saw a directory that went away: watch the new one
            self._back.discard(name)
            back = self._roots.get(name)
            if back is not None and self.up(name):
                self._watchers.restart(back)
                reconcile = f"root {name} back"
        for name in self._watchers.dead():
            if not self.up(name):
                continue
            key = _WATCH + name
            if key not in self.problems:
                self.problems[key] = f"watcher for root {name} died; restarting"
                self._record_error("watch", self.problems[key])
                log.error("%s", self.problems[key])
            if self._watchers.restart(self._watchers.roots[name]):
                self.problems.pop(key, None)
                log.warning("watcher for root %s restarted", name)
                reconcile = f"watcher {name} restarted"
        for key in list(self.problems):
            if key.startswith(_WATCH) and key[len(_WATCH) :] not in self._watchers.roots:
                self.problems.pop(key)
        return reconcile

    def watching(self) -> bool:
        """Whether every watcher runs (the systemd watchdog is fed only then)."""
        return not any(k.startswith(_WATCH) for k in self.problems)

    def report(self, roots: Iterable[Root]) -> list[dict[str, Any]]:
        """Each root's watch state for `clerk status` (asked from the control thread)."""
        dead = set(self._watchers.dead())
        listed = []
        for root in roots:
            if not root.watch:
                health = "not watched"
            elif not self.up(root.name):
                health = "unavailable"
            elif root.name in dead:
                health = "watcher down"
            else:
                health = "polling" if root.poll else "watching"
            listed.append({"name": root.name, "path": root.path, "watch": health})
        return listed
