"""The floors clerk is measured against: the least code that sorts the same tree.

    python raw_loops.py ext       TREE OUT CATEGORIES_JSON
    python raw_loops.py mime      TREE OUT CATEGORIES_JSON
    python raw_loops.py journaled TREE OUT CATEGORIES_JSON STORE

`ext`: `os.walk` + `os.rename` by lower-cased extension. `mime`: the same walk with
`magic.Magic(mime=True).from_file` per file and the first category whose glob matches.
No journal, no catalog, no conflict handling: what is left is the unavoidable cost
(walking, renaming, and for `mime` reading and sniffing each file).

`journaled`: the `ext` sort plus the bookkeeping clerk cannot skip, done the cheapest
way: one `os.scandir` walk, an lstat per file, a rename that never overwrites
(renameat2 RENAME_NOREPLACE), and clerk's own journal and catalog rows written to a
clerk store (STORE, created with clerk's schema) by a second thread, so that the
intents of batch k commit while batch k-1 is renamed. No rules engine, no conflict
planning, no root checks, no catalog lookups. It checks nothing; the benchmark does.

Every mode prints the number of files it moved. Each runs as its own process so that
its wall time and peak RSS are measured like clerk's and organize's.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite3
    from concurrent.futures import Future

    from sqlite_utils import Database

    Job = Callable[[sqlite3.Connection], Any]


def ext_classifier(categories: dict[str, list[str]]) -> Callable[[str, str], str | None]:
    by_ext = {ext.lower(): name for name, exts in categories.items() for ext in exts}

    def classify(path: str, filename: str) -> str | None:
        _, dot, ext = filename.rpartition(".")
        return by_ext.get(ext.lower()) if dot else None

    return classify


def mime_classifier(categories: dict[str, list[str]]) -> Callable[[str, str], str | None]:
    import magic

    sniffer = magic.Magic(mime=True)
    globs = [(glob, name) for name, patterns in categories.items() for glob in patterns]

    def classify(path: str, filename: str) -> str | None:
        mime = sniffer.from_file(path)
        for glob, name in globs:
            if fnmatch.fnmatchcase(mime, glob):
                return name
        return None

    return classify


def sort_tree(
    tree: str, out: str, categories: list[str], classify: Callable[[str, str], str | None]
) -> int:
    moved = 0
    for name in categories:
        os.makedirs(os.path.join(out, name), exist_ok=True)
    for dirpath, _dirnames, filenames in os.walk(tree):
        for filename in filenames:
            src = os.path.join(dirpath, filename)
            category = classify(src, filename)
            if category is not None:
                os.rename(src, os.path.join(out, category, filename))
                moved += 1
    return moved


# --- journaled: the raw loop plus clerk's journal and catalog writes ---------------------
# Its imports are made inside the functions below, so `ext` and `mime` do not pay for them.

BATCH = 500  # clerk's default `journal_batch`: files walked per journaled round
INBOX_ROOT, OUT_ROOT = "inbox", "out"  # the root names of bench_scan.py's clerk rules
ON_CONFLICT = "rename"  # what clerk journals for a move without `on_conflict`
AT_FDCWD = -100
RENAME_NOREPLACE = 1


def catalog_sql() -> tuple[str, str, str, int]:
    """clerk's own catalog statements (upsert head and tail, id reservation) and id
    block: imported when the journaled floor runs, so the other floors do not pay for
    importing clerk."""
    from clerk.store.catalog import ID_BLOCK, RESERVE_IDS, UPSERT_HEAD, UPSERT_TAIL

    return UPSERT_HEAD, UPSERT_TAIL, RESERVE_IDS, ID_BLOCK


# a walked file: (path, relpath in the tree, lstat result, category or None)
Entry = tuple[str, str, os.stat_result, str | None]


class StoreWriter:
    """Owns the store on a thread of its own and runs jobs on it, in order.

    Each job runs in its own write transaction (clerk's `write_txn`); its future is
    resolved only after the commit, so whoever waits on an intent job knows the rows
    are durable before touching a file. After a failure every later job fails too.
    """

    def __init__(self, db: Database):
        import queue
        import threading

        self._db = db
        self._jobs: queue.SimpleQueue[tuple[Job, Future[Any]] | None] = queue.SimpleQueue()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="store-writer")
        self._thread.start()

    def submit(self, job: Job) -> Future[Any]:
        from concurrent.futures import Future

        future: Future[Any] = Future()
        self._jobs.put((job, future))
        return future

    def close(self) -> None:
        """Wait for every job; raise the first failure."""
        self._jobs.put(None)
        self._thread.join()
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        from clerk.store import write_txn

        while (item := self._jobs.get()) is not None:
            job, future = item
            if self._failure is not None:
                future.set_exception(self._failure)
                continue
            try:
                with write_txn(self._db) as conn:
                    result = job(conn)
            except BaseException as exc:  # handed to whoever waits, and to close()
                self._failure = exc
                future.set_exception(exc)
            else:
                future.set_result(result)


class FileIds:
    """Catalog ids reserved in blocks like clerk's catalog does, one block ahead."""

    def __init__(self, writer: StoreWriter):
        self._writer = writer
        self._next = self._end = 0
        self._ahead = writer.submit(_reserve_block)

    def take(self, count: int) -> int:
        """`count` (at most one id block) consecutive ids; returns the first."""
        if self._next + count > self._end:
            first = int(self._ahead.result())
            self._next, self._end = first, first + catalog_sql()[3]
            self._ahead = self._writer.submit(_reserve_block)
        first = self._next
        self._next += count
        return first


def _reserve_block(conn: sqlite3.Connection) -> int:
    _, _, reserve, block = catalog_sql()
    (first,) = conn.execute(reserve, (block, block)).fetchone()
    return int(first)


def noreplace_rename() -> Callable[[str, str], int]:
    """rename(src, dst) -> 0, or the errno; never replaces dst (as clerk's fileops)."""
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                              ctypes.c_uint]  # fmt: skip
        renameat2.restype = ctypes.c_int
    except (OSError, AttributeError):
        renameat2 = None
    encode = os.fsencode

    def rename(src: str, dst: str) -> int:
        if renameat2 is not None:
            if not renameat2(AT_FDCWD, encode(src), AT_FDCWD, encode(dst), RENAME_NOREPLACE):
                return 0
            err = ctypes.get_errno()
            # EINVAL/ENOSYS: no RENAME_NOREPLACE in this kernel or file system
            if err not in (errno.EINVAL, errno.ENOSYS):
                return err
        try:
            os.link(src, dst)  # fails if dst exists
            os.unlink(src)
        except OSError as exc:
            return exc.errno or errno.EIO
        return 0

    return rename


def walk(tree: str, classify: Callable[[str, str], str | None]) -> Iterator[Entry]:
    """Regular files under `tree` (symlinks not followed), one lstat each."""
    prefix = len(tree) + 1
    stack = [tree]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    path = entry.path
                    stat = entry.stat(follow_symlinks=False)
                    yield path, path[prefix:], stat, classify(path, entry.name)


def batch_id() -> str:
    """Time-ordered like clerk.fileops.execute.new_batch_id."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now))
    return f"{stamp}.{int(now * 1000) % 1000:03d}-{os.urandom(4).hex()}"


class Round:
    """One batch of walked files: its intents go to the journal before any is moved."""

    def __init__(self, entries: list[Entry], first_file_id: int, out: str):
        from clerk.store import to_db

        self.entries = entries
        self.first_file_id = first_file_id
        self.moves: list[tuple[int, str, str, str]] = []  # (entry index, src, dst, relpath)
        now = time.time()
        batch = batch_id()
        self.intents: list[tuple[Any, ...]] = []  # journal.PLAIN_COLUMNS
        for index, (path, _, stat, category) in enumerate(entries):
            if category is None:
                continue
            relpath = f"{category}/{os.path.basename(path)}"
            dst = f"{out}/{relpath}"
            self.moves.append((index, path, dst, relpath))
            self.intents.append((
                batch, "move", category, first_file_id + index, to_db(path), to_db(dst),
                ON_CONFLICT, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns,
                "pending", now,
            ))  # fmt: skip
        self.first_op: Future[Any] | None = None

    def journal(self, writer: StoreWriter) -> None:
        from clerk.store.journal import insert_ops

        if self.intents:
            self.first_op = writer.submit(lambda conn: insert_ops(conn, self.intents))

    def act(self, writer: StoreWriter, rename: Callable[[str, str], int]) -> int:
        """Move the files once their intents are committed; journal outcomes, catalog."""
        if self.first_op is None:  # nothing to move: only catalog rows
            writer.submit(lambda conn: self._record(conn, 0, [], {}))
            return 0
        first = int(self.first_op.result())
        errors: dict[int, int] = {}  # move index -> errno
        for number, (_, src, dst, _) in enumerate(self.moves):
            err = rename(src, dst)
            if err:
                errors[number] = err
        ranges = done_ranges(first, len(self.moves), errors)
        writer.submit(lambda conn: self._record(conn, first, ranges, errors))
        return len(self.moves) - len(errors)

    def _record(
        self,
        conn: sqlite3.Connection,
        first_op: int,
        ranges: list[tuple[int, int]],
        errors: dict[int, int],
    ) -> None:
        from clerk.store import execute_rows
        from clerk.store.journal import finish_ops, finish_renamed

        now = time.time()
        finish_renamed(conn, ranges, now)
        failed = [
            ("failed", os.strerror(err), None, None, None, now, first_op + number)
            for number, err in errors.items()
        ]
        finish_ops(conn, failed)
        head, tail, _, _ = catalog_sql()
        execute_rows(conn, head, self._catalog_rows(errors, now), tail=tail)

    def _catalog_rows(self, errors: dict[int, int], now: float) -> list[tuple[Any, ...]]:
        """Every walked file at the place it ended up, as clerk catalogs first-seen files."""
        from clerk.store import to_db

        places = {index: relpath for number, (index, _, _, relpath) in enumerate(self.moves)
                  if number not in errors}  # fmt: skip
        rows = []
        for index, (_, relpath, stat, _) in enumerate(self.entries):
            moved_to = places.get(index)
            root, place = (OUT_ROOT, moved_to) if moved_to else (INBOX_ROOT, relpath)
            rows.append((
                self.first_file_id + index, root, to_db(place), stat.st_size,
                stat.st_mtime_ns, stat.st_dev, stat.st_ino, None, None, None, None,
                "present", now, now,
            ))  # fmt: skip
        return rows


def done_ranges(first: int, count: int, errors: dict[int, int]) -> list[tuple[int, int]]:
    """Inclusive runs of op ids first..first+count-1 that skip the failed ones."""
    ranges, start = [], 0
    for number in sorted(errors):
        if number > start:
            ranges.append((first + start, first + number - 1))
        start = number + 1
    if count > start:
        ranges.append((first + start, first + count - 1))
    return ranges


def sort_journaled(
    tree: str,
    out: str,
    categories: dict[str, list[str]],
    store: str,
    classify: Callable[[str, str], str | None],
) -> int:
    """Sort like `ext`, journaling and cataloguing as clerk does; returns files moved."""
    from clerk.store import open_store

    tree, out = os.path.abspath(tree), os.path.abspath(out)
    for name in categories:
        os.makedirs(os.path.join(out, name), exist_ok=True)
    writer = StoreWriter(open_store(store))
    rename = noreplace_rename()
    moved = 0
    try:
        ids = FileIds(writer)
        previous: Round | None = None
        for entries in batched(walk(tree, classify), BATCH):
            current = Round(entries, ids.take(len(entries)), out)
            current.journal(writer)  # commits while the previous round is renamed
            if previous is not None:
                moved += previous.act(writer, rename)
            previous = current
        if previous is not None:
            moved += previous.act(writer, rename)
    finally:
        writer.close()
    return moved


def batched(entries: Iterator[Entry], size: int) -> Iterator[list[Entry]]:
    batch: list[Entry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


if __name__ == "__main__":
    mode, tree, out, spec = sys.argv[1:5]
    categories: dict[str, list[str]] = json.loads(spec)
    if mode == "journaled":
        print(sort_journaled(tree, out, categories, sys.argv[5], ext_classifier(categories)))
    else:
        make = ext_classifier if mode == "ext" else mime_classifier
        print(sort_tree(tree, out, list(categories), make(categories)))
