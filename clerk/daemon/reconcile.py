"""Reconcile: compare a root on disk with the catalog by (dev, inode, size, mtime).

inotify drops events silently when its queue overflows, and nothing watches while the
daemon is down: this walk is what guarantees no file is missed. Only files that are new
or changed since the catalog last saw them go to the rules.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from sqlite_utils import Database

from clerk.roots import Root, RootSet
from clerk.rules.walk import Candidate, unreadable, walk_root
from clerk.store.catalog import Catalog, unchanged
from clerk.store.inflight import clear_inflight, drop_inflight, inflight, mark_inflight


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


def root_device(root: Root) -> int | None:
    """The device of the root's directory, or None when it is not there."""
    try:
        st = os.stat(root.path)
    except OSError:
        return None
    return st.st_dev if stat.S_ISDIR(st.st_mode) else None
