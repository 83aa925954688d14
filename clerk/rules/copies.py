"""The copy index: which files share their content, and which copy is the original.

One decision, in one place (`CopyIndex.check`): a file is a duplicate when another
present copy of the same content comes before it in the order the rule picks originals
by (`duplicate: {original: first_seen | oldest | shortest_name}`). The first copy in
that order is the original, and the original is never a duplicate, so `duplicate: true`
with `trash` never removes every copy. Ties are broken by first seen, so the order is
total and a dry run, a scan and `clerk explain` pick the same original.

The copies of a size are

- the present catalog rows of that size, read once per size per run (the catalog a
  dry run reads is the one a scan starts from);
- the files this run has met, in walk order, whether or not a row was written for
  them yet (a dry run writes none, a scan writes them a batch later);
- with `expect`, the files the walk is about to meet: `oldest` and `shortest_name`
  must know every copy before judging the first one.

First seen means catalogued first (lowest catalog id), then, for files new to this run,
the order the run met them in. A copy stops counting for the rest of the run when a plan
of this run removes it (trash, delete, archive: `leaving`), and a catalogued copy the
run has not met counts only while the file is still there as catalogued (checked with
one lstat, when it would be chosen): the remaining copy is never a duplicate of one
that is gone. Hashes are computed only for files that have a same-size copy, each at
most once per run; those computed for catalog rows are handed to the engine (`learned`)
to be written with its batch. Nothing here writes.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clerk.roots import RootSet
    from clerk.rules.fileinfo import FileInfo
    from clerk.rules.walk import Candidate
    from clerk.store.catalog import Catalog, CatalogRow, LearnedHash

ORIGINAL_BY = ("first_seen", "oldest", "shortest_name")
DEFAULT_ORIGINAL_BY = "first_seen"
#: orders that need every copy known before the first is judged (see `expect`)
NEEDS_EVERY_COPY = frozenset({"oldest", "shortest_name"})
_EXPECT_CHUNK = 500


@dataclass(slots=True)
class CopyCheck:
    """The index's answer for one file."""

    original: str | None  # where the original is, when the file is a duplicate
    copied: bool  # other files with the same content are known (met or catalogued)


class _Copy:
    """One file with a given size: a catalog row, a file met, or one expected."""

    __slots__ = ("catalogued", "file", "hash", "id", "ident", "left", "mtime_ns", "name",
                 "path", "seq", "size", "there")  # fmt: skip

    def __init__(self, size: int, name: str, mtime_ns: int, path: str) -> None:
        self.id: int | None = None
        self.catalogued = False  # had a catalog row before this run
        self.seq = 0  # order met in this run (files new to it)
        self.size, self.name, self.mtime_ns, self.path = size, name, mtime_ns, path
        self.hash: str | None = None
        self.file: FileInfo | None = None  # while its batch is being planned
        # a catalog row's (inode, size, mtime_ns), checked before it is trusted; None
        # for files this run met (the walk just saw them)
        self.ident: tuple[int | None, int | None, int | None] | None = None
        self.there: bool | None = None  # a catalogued copy checked on disk
        self.left = False  # a plan of this run removes it


def _first_seen(c: _Copy) -> tuple[int, int]:
    return (0, c.id or 0) if c.catalogued else (1, c.seq)


_ORDERS: dict[str, Callable[[_Copy], tuple[Any, ...]]] = {
    "first_seen": _first_seen,
    "oldest": lambda c: (c.mtime_ns, *_first_seen(c)),
    "shortest_name": lambda c: (len(c.name), c.name, *_first_seen(c)),
}


class _Group:
    """The copies of one size: all of them, those hashed by hash, and per hash and order
    a heap of them (first in the order on top), so a file is judged in O(log n)."""

    __slots__ = ("_heaps", "by_hash", "copies", "loaded", "unhashed")

    def __init__(self) -> None:
        self.copies: list[_Copy] = []
        self.unhashed: list[_Copy] = []
        self.by_hash: dict[str, list[_Copy]] = {}
        self.loaded = False  # the catalog's rows of this size are in
        # (hash, order) -> [heap of (key, tiebreak, copy), how many of the bucket it has]
        self._heaps: dict[tuple[str, str], tuple[list[Any], list[int]]] = {}

    def add(self, copy: _Copy) -> None:
        self.copies.append(copy)
        self.unhashed.append(copy)

    def remove(self, copy: _Copy) -> None:
        """Take a copy out (its size or content changed): the heaps are rebuilt."""
        self.copies.remove(copy)
        if copy in self.unhashed:
            self.unhashed.remove(copy)
        elif copy.hash is not None and copy in self.by_hash.get(copy.hash, ()):
            self.by_hash[copy.hash].remove(copy)
        self._heaps.clear()

    def heap(self, digest: str, by: str) -> list[Any]:
        """The copies with this hash, first in order `by` on top (up to date)."""
        heap, pushed = self._heaps.setdefault((digest, by), ([], [0]))
        bucket = self.by_hash.get(digest, [])
        order = _ORDERS[by]
        for copy in bucket[pushed[0] :]:
            heapq.heappush(heap, (order(copy), id(copy), copy))
        pushed[0] = len(bucket)
        return heap


class CopyIndex:
    """The copies known to one run (a scan, a daemon batch). See the module docstring."""

    def __init__(
        self,
        catalog: Catalog | None,
        roots: RootSet | None,
        hasher: Callable[[str], str],
    ) -> None:
        self.catalog = catalog
        self.roots = roots
        self._hasher = hasher
        #: remember every file met (not only those judged): some rule asks for copies
        self.track = False
        #: waits for catalog rows still being written (see `CatalogWriter`)
        self.sync_catalog: Callable[[], None] | None = None
        #: (id, hash, inode, size, mtime_ns) computed for catalog rows, to be written
        self.learned: list[LearnedHash] = []
        self.reset()

    def reset(self) -> None:
        """Forget everything: a new run starts from the catalog."""
        self._groups: dict[int, _Group] = {}
        self._by_id: dict[int, _Copy] = {}
        self._by_place: dict[tuple[str, str], _Copy] = {}  # files met, by the walked place
        self._attached: list[_Copy] = []
        self._seq = 0
        self.learned = []

    # --- what the run tells the index ---------------------------------------------------
    def met(self, file: FileInfo) -> None:
        """The run met `file` (its plan is made): a copy for the rest of the run."""
        if self.track:
            self._copy_of(file)

    def leaving(self, file: FileInfo) -> None:
        """A plan of this run removes `file` from every root: it is no copy any more."""
        copy = self._find(file)
        if copy is not None:
            copy.left = True

    def end_batch(self) -> None:
        """The batch's ops are done: remember where its files are now, let them go."""
        for copy in self._attached:
            file = copy.file
            if file is None:
                continue
            copy.path = file.here.path
            if copy.hash is None:
                copy.hash = file.hash_if_known
            copy.file = None
        self._attached.clear()

    def expect(self, candidates: Iterable[Candidate]) -> None:
        """The walk will meet these files, in this order: copies from now on (for the
        orders that must know every copy before judging the first)."""
        by_root: dict[str, list[Candidate]] = {}
        for candidate in candidates:
            by_root.setdefault(candidate.root.name, []).append(candidate)
        for root_name, found in by_root.items():
            for start in range(0, len(found), _EXPECT_CHUNK):
                chunk = found[start : start + _EXPECT_CHUNK]
                rows: dict[str, CatalogRow] = {}
                if self.catalog is not None:
                    rows = self.catalog.rows_for(root_name, [c.relpath for c in chunk])
                for candidate in chunk:
                    self._expect(candidate, rows.get(candidate.relpath))

    # --- the decision -------------------------------------------------------------------
    def check(self, file: FileInfo, by: str = DEFAULT_ORIGINAL_BY) -> CopyCheck:
        """Is `file` a duplicate, and of which file? Raises if `file` cannot be read."""
        me = self._copy_of(file)
        group = self._loaded(file.size)
        if len(group.copies) < 2:
            return CopyCheck(None, False)  # no other file of this size: no need to hash
        me.hash = file.hash
        bucket = self._bucket(group, me.hash)
        mine = _ORDERS[by](me)
        heap = group.heap(me.hash, by)
        while heap:
            key, _, first = heap[0]
            if first.left or not self._still_there(first):
                heapq.heappop(heap)  # gone for the rest of the run
                continue
            if first is me or key > mine:
                break
            path = first.path if first.file is None else first.file.here.path
            return CopyCheck(path, True)
        return CopyCheck(None, len(bucket) > 1)

    # --- copies -------------------------------------------------------------------------
    def _find(self, file: FileInfo) -> _Copy | None:
        origin = file.origin
        if origin.file_id is not None and origin.file_id in self._by_id:
            return self._by_id[origin.file_id]
        return self._by_place.get((origin.root.name, origin.relpath))

    def _copy_of(self, file: FileInfo) -> _Copy:
        """The copy for a file this run met (made, or found and brought up to date)."""
        origin = file.origin
        copy = self._find(origin)
        if copy is None:
            copy = _Copy(origin.size, origin.name, origin.st.st_mtime_ns, origin.path)
            copy.catalogued = origin.file_id is not None and not origin.unsaved
            copy.seq = self._next_seq()
            self._group(copy.size).add(copy)
            self._by_place[(origin.root.name, origin.relpath)] = copy
        else:
            st = origin.st
            changed = copy.size != st.st_size or (
                copy.ident is not None and copy.ident != (st.st_ino, st.st_size, st.st_mtime_ns)
            )
            if changed:  # since it was catalogued or expected: judge it as it is now
                self._group(copy.size).remove(copy)
                copy.size, copy.mtime_ns, copy.hash = st.st_size, st.st_mtime_ns, None
                self._group(copy.size).add(copy)
            copy.ident, copy.there = None, True  # the walk just saw it
        if copy.id is None and origin.file_id is not None:
            copy.id = origin.file_id
        if copy.id is not None:
            self._by_id[copy.id] = copy
        if copy.file is not origin:
            if copy.hash is not None:
                origin.learn_hash(copy.hash)  # hashed while expected: not twice
            copy.file = origin
            self._attached.append(copy)
        return copy

    def _expect(self, candidate: Candidate, row: CatalogRow | None) -> None:
        if row is not None and row.id in self._by_id:
            return
        place = (candidate.root.name, candidate.relpath)
        if place in self._by_place:
            return
        st = candidate.st
        copy = _Copy(st.st_size, os.path.basename(candidate.relpath), st.st_mtime_ns,
                     candidate.path)  # fmt: skip
        copy.seq = self._next_seq()
        if row is not None:
            copy.id, copy.catalogued = row.id, True
            self._by_id[row.id] = copy  # type: ignore[index]
            if (row.inode, row.size, row.mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns):
                copy.hash = row.hash
        self._by_place[place] = copy
        self._group(copy.size).add(copy)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _group(self, size: int) -> _Group:
        group = self._groups.get(size)
        if group is None:
            group = self._groups[size] = _Group()
        return group

    def _loaded(self, size: int) -> _Group:
        """The copies of `size`, with the catalog's (read once per size per run)."""
        group = self._group(size)
        if group.loaded or self.catalog is None:
            return group
        group.loaded = True
        if self.sync_catalog is not None:
            self.sync_catalog()
        for row in self.catalog.present_of_size(size):
            if row.id in self._by_id:
                continue  # a file this run met or expects
            root = self.roots.get(row.root) if self.roots is not None else None
            if root is None or row.id is None:
                continue  # a root no longer configured: nothing to check it against
            copy = _Copy(size, os.path.basename(row.relpath), row.mtime_ns or 0,
                         os.path.join(root.path, row.relpath))  # fmt: skip
            copy.id, copy.catalogued, copy.hash = row.id, True, row.hash
            copy.ident = (row.inode, row.size, row.mtime_ns)
            self._by_id[row.id] = copy
            group.add(copy)
        return group

    def _bucket(self, group: _Group, digest: str) -> list[_Copy]:
        """The copies of the group with this hash (hashing the others first, once)."""
        for copy in group.unhashed:
            known = self._hash_of(copy)
            if known is not None:
                group.by_hash.setdefault(known, []).append(copy)
        group.unhashed = []
        return group.by_hash.get(digest, [])

    def _hash_of(self, copy: _Copy) -> str | None:
        if copy.hash is not None:
            return copy.hash
        try:
            if copy.file is not None:
                copy.hash = copy.file.hash
                return copy.hash
            if copy.ident is not None and not self._still_there(copy):
                return None
            copy.hash = self._hasher(copy.path)
        except OSError:  # gone or unreadable: it is nobody's original
            copy.left = True
            return None
        if copy.ident is not None and copy.id is not None:
            self.learned.append((copy.id, copy.hash, *copy.ident))
        return copy.hash

    def _still_there(self, copy: _Copy) -> bool:
        """A catalogued copy this run has not met: is the file still as catalogued?"""
        if copy.ident is None:
            return True
        if copy.there is None:
            try:
                st = os.lstat(copy.path)
            except OSError:
                copy.there = False
            else:
                copy.there = (st.st_ino, st.st_size, st.st_mtime_ns) == copy.ident
        return copy.there
