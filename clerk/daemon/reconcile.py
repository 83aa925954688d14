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
from clerk.rules.walk import Candidate, walk_root
from clerk.store import from_db, to_db


@dataclass
class Walked:
    """One root's walk: what to process, and which catalog rows are still there."""

    new: list[Candidate] = field(default_factory=list)
    changed: list[Candidate] = field(default_factory=list)
    forced: list[tuple[Candidate, str]] = field(default_factory=list)  # (file, trigger)
    seen_ids: set[int] = field(default_factory=set)
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)


def known_files(db: Database, root: str) -> dict[str, tuple[int, tuple[int, int, int, int]]]:
    """relpath -> (id, (dev, inode, size, mtime_ns)) for the root's present files."""
    sql = (
        "SELECT id, relpath, dev, inode, size, mtime_ns FROM files"
        " WHERE root = ? AND state = 'present' AND relpath IS NOT NULL"
    )
    return {
        from_db(relpath): (file_id, (dev, inode, size, mtime))
        for file_id, relpath, dev, inode, size, mtime in db.execute(sql, [root])
    }


def walk_changes(db: Database, root: Root, roots: RootSet) -> Walked:
    known = known_files(db, root.name)
    pending = inflight(db, root.name)
    walked = Walked()

    def on_error(path: str, exc: OSError) -> None:
        walked.errors.append(f"{path}: {exc.strerror or exc}")

    for candidate in walk_root(root, roots, on_error=on_error):
        st = candidate.st
        row = known.get(candidate.relpath)
        if row is None:
            walked.new.append(candidate)
            continue
        walked.seen_ids.add(row[0])
        trigger = pending.get(candidate.relpath)
        if trigger is not None:  # catalogued, but the run that took it never finished
            walked.forced.append((candidate, trigger))
        elif row[1] == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns):
            walked.unchanged += 1
        else:
            walked.changed.append(candidate)
    return walked


def root_device(root: Root) -> int | None:
    """The device of the root's directory, or None when it is not there."""
    try:
        st = os.stat(root.path)
    except OSError:
        return None
    return st.st_dev if stat.S_ISDIR(st.st_mode) else None


# --- files in flight ---------------------------------------------------------------------
# A catalog row whose identity matches the file normally means "handled": the daemon
# skips such files. The engine writes a batch's rows only after its ops are done, so a
# crash before that leaves the files unknown or changed to the catalog: handled again.
# Files the daemon must look at again although the catalog knows them as they are (an
# `after:` wait, a file a rule moved into another root) are listed here, so a restart's
# reconcile looks at them again; each leaves the list when a batch has handled it.


def mark_inflight(db: Database, batch: list[Candidate], trigger: str, now: float) -> None:
    rows = [(c.root.name, to_db(c.relpath), trigger, now) for c in batch]
    with db.atomic():
        db.conn.executemany(
            "INSERT OR REPLACE INTO daemon_inflight (root, relpath, trigger, since)"
            " VALUES (?, ?, ?, ?)",
            rows,
        )


def clear_inflight(db: Database, batch: list[Candidate]) -> None:
    rows = [(c.root.name, to_db(c.relpath)) for c in batch]
    with db.atomic():
        db.conn.executemany("DELETE FROM daemon_inflight WHERE root = ? AND relpath = ?", rows)


def inflight(db: Database, root: str) -> dict[str, str]:
    sql = "SELECT relpath, trigger FROM daemon_inflight WHERE root = ?"
    return {from_db(relpath): trigger for relpath, trigger in db.execute(sql, [root])}


def drop_inflight(db: Database, root: str, before: float) -> None:
    """After a clean walk that began at `before`: what was listed before it and is still
    listed is no longer there (files listed since, e.g. `after:` waits, stay)."""
    with db.atomic():
        db.execute("DELETE FROM daemon_inflight WHERE root = ? AND since < ?", [root, before])
