"""The file catalog: what clerk knows about every file it has seen.

A present file is found by (root, relpath), unique among present rows. A file clerk
removed (trashed, deleted, archived) keeps the place it had, so it is still found by the
name it was known by (`last_at`), and its place is free for a new file. A file that
vanished behind clerk's back (state gone) keeps its id and history with `relpath` NULL.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlite_utils import Database

from clerk.fileops.types import OpResult
from clerk.roots import RootSet
from clerk.store import execute_rows, from_db, open_store, to_db, write_txn

if TYPE_CHECKING:
    from concurrent.futures import Future

COLUMNS = "id, root, relpath, size, mtime_ns, dev, inode, mime, hash, tags, attrs, state"
_CHUNK = 500  # keeps every IN (...) well under SQLite's variable limit
ID_BLOCK = 4096  # file ids reserved per commit
_WRITTEN = ("root", "relpath", "size", "mtime_ns", "dev", "inode", "mime", "hash", "tags", "attrs",
            "state")  # fmt: skip
UPSERT_HEAD = f"INSERT INTO files (id, {', '.join(_WRITTEN)}, first_seen, last_seen)"
UPSERT_TAIL = (
    "ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in (*_WRITTEN, "last_seen"))
    + " ON CONFLICT DO NOTHING"
)
# the first of a block of file ids, taken from `sequences` (see reserve_ids)
RESERVE_IDS = "UPDATE sequences SET next = next + ? WHERE name = 'files' RETURNING next - ?"
# rows (root, relpath, id): whatever other present row holds one of these places gives
# it up (a removed file's row keeps its place: it claims nothing)
_RELEASE_HEAD = "UPDATE files SET relpath = NULL, state = 'gone' FROM ("
_RELEASE_TAIL = (
    ") AS claim WHERE files.root = claim.column1 AND files.relpath = claim.column2"
    " AND files.id != claim.column3 AND files.state = 'present'"
)
#: a content hash computed for a catalog row: (id, hash, inode, size, mtime_ns)
LearnedHash = tuple[int, str, int | None, int | None, int | None]
_STATE = 11  # index of `state` in a row's values (id, *_WRITTEN, ...)


@dataclass
class CatalogRow:
    id: int | None
    root: str
    relpath: str
    size: int | None = None
    mtime_ns: int | None = None
    dev: int | None = None
    inode: int | None = None
    mime: str | None = None
    hash: str | None = None
    tags: set[str] = field(default_factory=set)
    attrs: dict[str, Any] = field(default_factory=dict)
    state: str = "present"

    @classmethod
    def from_sql(cls, row: Sequence[Any]) -> CatalogRow:
        return cls(
            row[0], row[1], from_db(row[2]), row[3], row[4], row[5], row[6], row[7], row[8],
            set(json.loads(row[9])) if row[9] else set(),
            decode_attrs(row[10]),
            row[11],
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "root": self.root, "relpath": self.relpath, "size": self.size,
            "mtime_ns": self.mtime_ns, "dev": self.dev, "inode": self.inode,
            "mime": self.mime, "hash": self.hash, "tags": sorted(self.tags),
            "attrs": json.loads(encode_attrs(self.attrs) or "{}"), "state": self.state,
        }  # fmt: skip


def encode_attrs(attrs: dict[str, Any]) -> str | None:
    """JSON with datetimes kept as `{"$dt": iso}` so `{exif.taken:%Y}` works from cache."""
    if not attrs:
        return None

    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return {"$dt": value.isoformat()}
        if isinstance(value, set | tuple):
            return list(value)
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        return str(value)

    return json.dumps(attrs, default=default, sort_keys=True)


def decode_attrs(text: str | None) -> dict[str, Any]:
    if not text:
        return {}

    def hook(obj: dict[str, Any]) -> Any:
        if set(obj) == {"$dt"}:
            try:
                return datetime.fromisoformat(obj["$dt"])
            except (TypeError, ValueError):
                return obj["$dt"]
        return obj

    try:
        value = json.loads(text, object_hook=hook)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class _Identified(Protocol):
    dev: int | None
    inode: int | None
    size: int | None
    mtime_ns: int | None


def unchanged(row: _Identified, st: os.stat_result) -> bool:
    """Is the file `st` describes the one `row` catalogued, as it was then? The one test
    of "unchanged since catalogued": (dev, inode, size, mtime_ns) all equal. The daemon's
    events and reconcile skip such files; the engine reuses their cached facts."""
    return (
        row.mtime_ns == st.st_mtime_ns
        and row.size == st.st_size
        and row.inode == st.st_ino
        and row.dev == st.st_dev
    )


class Catalog:
    def __init__(self, db: Database):
        self.db = db
        self._next_id = self._block_end = 0  # ids reserved but not handed out yet

    # --- reads ---------------------------------------------------------------------------
    def rows_for(self, root: str, relpaths: Sequence[str]) -> dict[str, CatalogRow]:
        found: dict[str, CatalogRow] = {}
        for start in range(0, len(relpaths), _CHUNK):
            chunk = [to_db(p) for p in relpaths[start : start + _CHUNK]]
            marks = ",".join("?" * len(chunk))
            sql = (
                f"SELECT {COLUMNS} FROM files"
                f" WHERE root = ? AND relpath IN ({marks}) AND state = 'present'"
            )
            for row in self.db.execute(sql, [root, *chunk]).fetchall():
                record = CatalogRow.from_sql(row)
                found[record.relpath] = record
        return found

    def present_in(self, root: str) -> dict[str, CatalogRow]:
        """relpath -> row (its id and identity only) for every present file of `root`:
        what a reconcile walk compares the disk with."""
        sql = (
            "SELECT id, relpath, dev, inode, size, mtime_ns FROM files"
            " WHERE root = ? AND state = 'present' AND relpath IS NOT NULL"
        )
        return {
            from_db(relpath): CatalogRow(file_id, root, "", size, mtime, dev, inode)
            for file_id, relpath, dev, inode, size, mtime in self.db.execute(sql, [root])
        }

    def knows_root(self, root: str) -> bool:
        """Does any catalog row place a file in `root`?"""
        sql = "SELECT 1 FROM files WHERE root = ? AND state = 'present' LIMIT 1"
        return self.db.execute(sql, [root]).fetchone() is not None

    def get(self, root: str, relpath: str) -> CatalogRow | None:
        """The present file at (root, relpath)."""
        return self.rows_for(root, [relpath]).get(relpath)

    def last_at(self, root: str, relpath: str) -> CatalogRow | None:
        """The file known by (root, relpath): the present one, else the one clerk last
        removed from there (trashed, deleted, archived)."""
        present = self.get(root, relpath)
        if present is not None:
            return present
        sql = (
            f"SELECT {COLUMNS} FROM files WHERE root = ? AND relpath = ?"
            " AND state IN ('trashed', 'deleted', 'archived') ORDER BY last_seen DESC, id DESC"
        )
        row = self.db.execute(sql, [root, to_db(relpath)]).fetchone()
        return CatalogRow.from_sql(row) if row else None

    def by_id(self, file_id: int) -> CatalogRow | None:
        row = self.db.execute(f"SELECT {COLUMNS} FROM files WHERE id = ?", [file_id]).fetchone()
        return CatalogRow.from_sql(row) if row else None

    def present_of_size(self, size: int) -> list[CatalogRow]:
        """Every present file of this size (the copy index reads each size once a run)."""
        sql = f"SELECT {COLUMNS} FROM files WHERE size = ? AND state = 'present' ORDER BY id"
        return [CatalogRow.from_sql(r) for r in self.db.execute(sql, [size])]

    def query(
        self,
        *,
        root: str | None = None,
        mime: str | None = None,
        tag: str | None = None,
        glob: str | None = None,
        state: str | None = "present",
        limit: int | None = None,
    ) -> list[CatalogRow]:
        where, params = [], []
        if root:
            where.append("root = ?")
            params.append(root)
        if mime:
            where.append("mime GLOB ?")
            params.append(mime)
        if tag:
            where.append("EXISTS (SELECT 1 FROM json_each(files.tags) WHERE value = ?)")
            params.append(tag)
        if glob:
            where.append("relpath GLOB ?")
            params.append(glob)
        if state:
            where.append("state = ?")
            params.append(state)
        sql = f"SELECT {COLUMNS} FROM files"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY root, relpath"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [CatalogRow.from_sql(r) for r in self.db.execute(sql, params)]

    # --- writes (the caller owns the transaction) -----------------------------------------
    def reserve_ids(self, count: int) -> int:
        """Reserve `count` consecutive file ids; returns the first.

        Ids come from the `sequences` table, never from max(id): rows may be written
        after their id is handed out, and another process may be cataloguing too. They
        are taken from the table in blocks (one small commit per block); ids of a block
        this process never uses are simply never used.
        """
        if self._next_id + count > self._block_end:
            block = max(count, ID_BLOCK)
            with write_txn(self.db) as conn:
                (first,) = conn.execute(RESERVE_IDS, (block, block)).fetchone()
            self._next_id, self._block_end = int(first), int(first) + block
        first = self._next_id
        self._next_id += count
        return first

    def upsert(self, rows: Iterable[CatalogRow], now: float | None = None) -> None:
        """Write rows by id: new ones are inserted, known ones rewritten (location,
        facts, tags, state; `first_seen` kept).

        A row whose file is gone but still claims a place a written row takes loses it
        first (state gone), so the unique (root, relpath) index never blocks a move; of
        two written rows claiming one place, the later wins. Few statements for the
        whole lot (see `execute_rows`). The caller holds the write transaction, unless
        some row has no id yet: reserving ids takes its own commit, so then call this
        outside a transaction.
        """
        rows = list(rows)
        if not rows:
            return
        now = now or time.time()
        missing = [row for row in rows if row.id is None]
        if missing:
            first = self.reserve_ids(len(missing))
            for offset, row in enumerate(missing):
                row.id = first + offset
        values = _without_double_claims([(row.id, *self._values(row), now, now) for row in rows])
        conn = self.db.conn
        places = [(v[1], v[2], v[0]) for v in values if v[_STATE] == "present"]
        execute_rows(conn, _RELEASE_HEAD, places, tail=_RELEASE_TAIL)
        execute_rows(conn, UPSERT_HEAD, values, tail=UPSERT_TAIL)

    def insert_new(self, rows: Sequence[CatalogRow], now: float | None = None) -> None:
        """Catalogue first-seen files (see `upsert`)."""
        self.upsert(rows, now)

    def update(self, rows: Sequence[CatalogRow], now: float | None = None) -> None:
        """Rewrite known rows by id (see `upsert`)."""
        self.upsert(rows, now)

    @staticmethod
    def _values(row: CatalogRow) -> tuple[Any, ...]:
        placed = row.state != "gone"  # a removed file keeps the place it had (see above)
        return (
            row.root, to_db(row.relpath) if placed else None, row.size, row.mtime_ns,
            row.dev, row.inode, row.mime, row.hash,
            json.dumps(sorted(row.tags)) if row.tags else None, encode_attrs(row.attrs),
            row.state,
        )  # fmt: skip

    def set_hashes(self, hashes: Sequence[LearnedHash]) -> None:
        """Cache content hashes computed for rows, each only while the row still names
        the file as it was when hashed."""
        if hashes:
            self.db.conn.executemany(
                "UPDATE files SET hash = ?2 WHERE id = ?1 AND inode IS ?3 AND size IS ?4"
                " AND mtime_ns IS ?5",
                hashes,
            )

    def mark_gone(self, root: str, seen_ids: Iterable[int]) -> int:
        """After a full walk of `root`: rows not seen lose their location (state gone)."""
        cursor = self.db.conn.cursor()
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS seen_ids (id INTEGER PRIMARY KEY)")
        cursor.execute("DELETE FROM seen_ids")
        cursor.executemany("INSERT OR IGNORE INTO seen_ids VALUES (?)", ((i,) for i in seen_ids))
        cursor.execute(
            "UPDATE files SET state = 'gone', relpath = NULL WHERE root = ? AND state = 'present'"
            " AND id NOT IN (SELECT id FROM seen_ids)",
            (root,),
        )
        count = cursor.rowcount
        cursor.execute("DELETE FROM seen_ids")
        return count

    def write_batch(
        self,
        results: list[OpResult],
        rows: list[CatalogRow],
        roots: RootSet,
        hashes: Sequence[LearnedHash] = (),
    ) -> None:
        """A batch's catalog changes (the caller holds the write transaction)."""
        self.trash_displaced(results, roots)
        self.upsert(rows)
        self.set_hashes(hashes)

    def trash_displaced(self, results: Iterable[OpResult], roots: RootSet) -> None:
        """`on_conflict: overwrite` first trashed the file at the destination: say so."""
        for result in results:
            displaced = result.displaced
            if displaced is None or displaced.status != "done":
                continue
            located = roots.locate(os.path.normpath(displaced.src))
            row = self.get(located[0].name, located[1]) if located else None
            if row is not None:
                row.state = "trashed"
                self.update([row])

    def apply_results(self, results: Iterable[OpResult], roots: RootSet) -> None:
        """Follow files through done ops: moved rows get their new location.

        Copies and links create new files; they are catalogued when next seen.
        """
        results = list(results)
        self.trash_displaced(results, roots)
        for result in results:
            if result.status != "done" or result.file_id is None:
                continue
            row = self.by_id(result.file_id)
            if row is None:
                continue
            if result.kind in ("move", "rename") and result.dst:
                located = roots.locate(os.path.normpath(result.dst))
                if located is None:
                    continue
                row.root, row.relpath = located[0].name, located[1]
                row.state = "present"
                if result.dst_inode is not None:
                    row.dev, row.inode = result.dst_dev, result.dst_inode
                self.upsert([row])
            elif result.kind in ("trash", "delete", "archive"):
                if result.kind == "archive" and os.path.lexists(result.src):
                    continue  # keep_source
                row.state = "trashed" if result.kind == "trash" else "deleted"
                if result.kind == "archive":
                    row.state = "archived"
                self.upsert([row])


def _without_double_claims(values: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Of present rows (id, root, relpath, ...) claiming one place, all but the last lose it."""
    last: dict[tuple[Any, Any], int] = {}
    claims = 0
    for index, row in enumerate(values):
        if row[_STATE] == "present":
            last[row[1], row[2]] = index
            claims += 1
    if len(last) == claims:
        return values  # the common case: every place claimed once
    keep = set(last.values())
    return [
        row
        if row[_STATE] != "present" or index in keep
        else (*row[:2], None, *row[3:_STATE], "gone", *row[_STATE + 1 :])
        for index, row in enumerate(values)
    ]


class CatalogWriter:
    """Writes catalog rows on its own connection, in a thread, one batch at a time.

    The rules engine hands it the rows of a finished batch and goes on with the next
    batch while SQLite writes (it lets go of the interpreter lock meanwhile). The catalog
    is a cache of what is on disk, the journal the record of what clerk did, so the
    catalog may trail the journal by one batch; `close()` waits for the last write. A
    failed write raises from the next `write()` or from `close()`.
    """

    def __init__(self, path: str, roots: RootSet):
        from concurrent.futures import ThreadPoolExecutor

        self._path = path
        self._roots = roots
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="clerk-catalog")
        self._catalog: Catalog | None = None  # opened by the writer thread
        self._pending: Future[None] | None = None

    def write(
        self,
        results: list[OpResult],
        rows: list[CatalogRow],
        hashes: Sequence[LearnedHash] = (),
    ) -> None:
        """Queue one batch: after the previous one is written (so at most one waits)."""
        self.wait()
        self._pending = self._executor.submit(self._write, results, rows, hashes)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._executor.shutdown(wait=True)
            if self._catalog is not None:
                self._catalog.db.close()

    def _write(
        self,
        results: list[OpResult],
        rows: list[CatalogRow],
        hashes: Sequence[LearnedHash],
    ) -> None:
        if self._catalog is None:
            self._catalog = Catalog(open_store(self._path, migrate=False))
        catalog = self._catalog
        with write_txn(catalog.db):
            catalog.write_batch(results, rows, self._roots, hashes)
