"""`FileOps`: journal intents, act, record outcomes; recover and undo.

One `execute()` call is one round trip to the journal on each side of the work: all
intents in one transaction (committed before anything is touched), then the file
system work, then all outcomes in one transaction. A same-file-system move costs one
lstat at planning, one existence check and one renameat2; the journal commit is its
durability point (no per-op fsync). Chained requests (`chain=i`) need the actual
result of request i, so they are journaled in a following round of the same call.

A call does what its files' chains would do one file after the other: the rounds
interleave files only where they cannot meet (`waves`), and a dry run plans every op
on the disk the ops planned before it would leave (`clerk.fileops.projection`).
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlite_utils import Database

from clerk.fileops.beneath import Beneath
from clerk.fileops.op import Op
from clerk.fileops.perform import Performer
from clerk.fileops.plan import Planner
from clerk.fileops.primitives import crash_now, crash_step_from_env, parent_dir
from clerk.fileops.projection import Projection
from clerk.fileops.recovery import op_from_row, recover_op
from clerk.fileops.trash import TrashFinder
from clerk.fileops.types import RELOCATING, OpRequest, OpResult
from clerk.fileops.undo import plan_undo
from clerk.private import open_private
from clerk.roots import RootSet
from clerk.store import write_txn
from clerk.store.journal import (
    finish_ops,
    finish_renamed,
    insert_ops,
    pending_ops,
    settle_reversals,
)


def new_batch_id(prefix: str = "") -> str:
    """A batch id that sorts by time: `20261125T065500.123-1a2b3c4d`.

    Time-ordered so the journal's batch index grows at its end (a random id costs an
    insert at a random place of the index for every op); the random part keeps ids
    from two processes in the same millisecond apart.
    """
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now))
    return f"{prefix}{stamp}.{int(now * 1000) % 1000:03d}-{secrets.token_hex(4)}"


class JournalLock:
    """Keeps recovery away from ops another process is performing right now.

    Every journaled round holds a shared flock on `<store>-fileops.lock`; recovery
    takes it exclusively, so it only ever sees 'pending' rows whose process is gone.
    """

    def __init__(self, db: Database):
        rows = db.execute("PRAGMA database_list").fetchall()
        store = next((row[2] for row in rows if row[1] == "main"), "")
        self.path = f"{store}-fileops.lock" if store else None

    @contextmanager
    def hold(self, *, exclusive: bool) -> Iterator[None]:
        if self.path is None:
            yield
            return
        # opened per hold: once per batch is cheap, and nothing stays open between
        fd = open_private(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock


def chain_rounds(requests: Sequence[OpRequest], indexes: Sequence[int] = ()) -> list[list[int]]:
    """Request indexes (all, or `indexes` with every request their chains need) grouped
    so every chained request comes after the one it needs."""
    depth: dict[int, int] = {}
    for index in indexes or range(len(requests)):
        chain = requests[index].chain
        valid = chain is not None and 0 <= chain < index and chain in depth
        depth[index] = depth[chain] + 1 if valid and chain is not None else 0
    rounds: list[list[int]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for index, level in depth.items():
        rounds[level].append(index)
    return rounds


_NUMBERED = re.compile(r" \(\d+\)")


def _meeting_names(path: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """Where ops on `path` may meet ops of another file: its name in its directory and
    in a trash, without the numbers a conflict adds (`a (1).txt` meets `a.txt`)."""
    name = _NUMBERED.sub("", path[path.rfind("/") + 1 :])
    return (parent_dir(path), name), ("", name)


def waves(requests: Sequence[OpRequest]) -> list[list[int]]:
    """Request indexes grouped so that a batch does what its files' requests would do
    one file after the other, in order, while most of it still goes in one wave.

    A file's requests are a chain. Two files meet when their requests name the same
    name in one directory (or a name a conflict makes of it, or the same name in a
    trash): then the later file's chain waits until the earlier one's is done, in a
    later wave. Files that meet nothing go in the first wave, whatever their order:
    theirs does not change what happens to them.
    """
    file_of: list[int] = []
    names: dict[int, set[tuple[str, str]]] = {}
    for index, req in enumerate(requests):
        chain = req.chain
        first = file_of[chain] if chain is not None and 0 <= chain < index else index
        file_of.append(first)
        meets = names.setdefault(first, set())
        if first == index:
            meets.update(_meeting_names(req.src))
        if req.dst:
            meets.update(_meeting_names(req.dst))
    wave_of_name: dict[tuple[str, str], int] = {}
    wave_of_file: dict[int, int] = {}
    for first, meets in names.items():  # in request order
        wave = max((wave_of_name[n] + 1 for n in meets if n in wave_of_name), default=0)
        wave_of_file[first] = wave
        for name in meets:
            wave_of_name[name] = wave
    grouped: list[list[int]] = [[] for _ in range(max(wave_of_file.values(), default=-1) + 1)]
    for index, first in enumerate(file_of):
        grouped[wave_of_file[first]].append(index)
    return grouped


def _split_plain(ops: list[Op]) -> tuple[list[tuple[int, int]], list[Op]]:
    """Runs of consecutive ids of plain moves (one UPDATE each), and the rest."""
    ranges: list[tuple[int, int]] = []
    others: list[Op] = []
    for op in ops:
        if not op.plainly_moved:
            others.append(op)
        elif ranges and ranges[-1][1] == op.id - 1:
            ranges[-1] = (ranges[-1][0], op.id)
        else:
            ranges.append((op.id, op.id))
    return ranges, others


class FileOps:
    """Journaled, crash-safe file operations inside a set of roots."""

    def __init__(
        self,
        db: Database,
        roots: RootSet,
        *,
        trash_dir: str | None = None,
        dry_run: bool = False,
    ):
        self.db = db
        self.roots = roots
        self.dry_run = dry_run
        # read once: checking the environment per op would cost on the hot path
        self._crash_at = crash_step_from_env()
        self._finder = TrashFinder(trash_dir)
        # directories are opened beneath the roots, and the descriptors kept only for
        # the length of one call: see clerk.fileops.beneath
        self._dirs = Beneath(roots)
        # a dry run plans each op on the disk the ops before it would leave
        self._planner = Planner(roots, self._finder, self._dirs, Projection() if dry_run else None)
        self._performer = Performer(
            db, self._finder, self._checkpoint, self._planner.claimed, self._dirs
        )
        self._lock = JournalLock(db)

    def _checkpoint(self, step: str) -> None:
        if step == self._crash_at:
            crash_now()

    # --- execute -----------------------------------------------------------------------
    def execute(self, requests: Sequence[OpRequest], *, batch: str | None = None) -> list[OpResult]:
        """Perform `requests`; one `OpResult` per request, in the same order."""
        batch = batch or new_batch_id()
        self._planner.reset()
        ops_by_index: dict[int, Op] = {}
        try:
            for wave in waves(requests):
                for round_indexes in chain_rounds(requests, wave):
                    ops: list[Op] = []
                    for index in round_indexes:
                        planned = self._plan_request(requests, index, ops_by_index)
                        ops_by_index[index] = planned[-1]
                        ops.extend(planned)
                    self._run(ops, batch, dry_run=self.dry_run)
                    self._planner.round_done(ops)
        finally:
            self._dirs.close()
        return [ops_by_index[index].result() for index in range(len(requests))]

    def _plan_request(
        self, requests: Sequence[OpRequest], index: int, done: dict[int, Op]
    ) -> list[Op]:
        req = requests[index]
        predict = self.dry_run
        if req.chain is None:
            return self._planner.plan(req, index, predict=predict)
        previous = done.get(req.chain) if 0 <= req.chain < index else None
        if previous is None:
            op = Op(kind=req.kind, src=req.src, dst=req.dst, index=index, rule=req.rule)
            return [op.fail(f"chain={req.chain} must name an earlier request of the same call")]
        if previous.state not in ("done", "planned") or previous.kind in ("trash", "delete"):
            op = Op(kind=req.kind, src=req.src, dst=req.dst, index=index, rule=req.rule,
                    file_id=req.file_id)  # fmt: skip
            return [op.skip("previous action did not complete")]
        assume = previous if previous.state == "planned" else None
        src = previous.dst if previous.kind in RELOCATING else previous.src
        return self._planner.plan(req, index, src=src, assume=assume, predict=predict)

    def _run(self, ops: list[Op], batch: str, *, dry_run: bool) -> None:
        """Journal the intents, act, journal the outcomes (or only predict: dry run)."""
        if dry_run:
            for op in ops:
                if op.state == "pending":
                    op.state = "planned"
            return
        if not ops:
            return
        with self._lock.hold(exclusive=False):
            now = time.time()
            with write_txn(self.db) as conn:
                first = insert_ops(conn, [op.intent_row(batch, now) for op in ops])
            for offset, op in enumerate(ops):
                op.id = first + offset
            self._checkpoint("after_intent")
            self._act_and_record(ops)

    def _act_and_record(self, ops: list[Op]) -> None:
        attempted: list[Op] = []
        try:
            for op in ops:
                if op.state == "pending":
                    attempted.append(op)
                    self._performer.perform(op)
        except BaseException as exc:
            # the op that raised stays pending for recovery; the ones never started
            # were not touched and can be closed now
            started = ops.index(attempted[-1]) + 1 if attempted else 0
            for op in ops[started:]:
                if op.state == "pending":
                    op.fail(f"not attempted: an earlier op raised {type(exc).__name__}")
                    attempted.append(op)
            raise
        finally:
            self._checkpoint("before_done_commit")
            self._record(attempted)

    def _record(self, ops: list[Op]) -> None:
        finished = [op for op in ops if op.state != "pending"]
        if not finished:
            return
        now = time.time()
        ranges, others = _split_plain(finished)
        with write_txn(self.db) as conn:
            if ranges:
                finish_renamed(conn, ranges, now)
            finish_ops(conn, [op.outcome_row(now) for op in others])
            reversals = [op.id for op in finished if op.undoes is not None and op.state == "done"]
            if reversals:
                settle_reversals(conn, reversals)

    # --- recover -----------------------------------------------------------------------
    def recover(self) -> list[OpResult]:
        """Finish or roll back every op left 'pending' by an interrupted process.

        In a dry run nothing is touched: the pending ops are reported as 'planned'.
        """
        if self.dry_run:
            ops = [op_from_row(row) for row in pending_ops(self.db)]
            for op in ops:
                op.state, op.note = "planned", "interrupted; recovery would settle it"
            return [op.result() for op in ops]
        with self._lock.hold(exclusive=True):
            try:
                ops = [recover_op(op_from_row(row), self._dirs) for row in pending_ops(self.db)]
            finally:
                self._dirs.close()
            self._record(ops)
        results = []
        for op in ops:
            result = op.result()
            if op.state == "pending":  # recovery itself hit an error; retried next time
                result.status = "failed"
            results.append(result)
        return results

    # --- undo --------------------------------------------------------------------------
    def undo(self, op_ids: Sequence[int], *, dry_run: bool = False) -> list[OpResult]:
        """Reverse ops, newest first; each reverse is a journaled op (`undoes` set)."""
        batch = new_batch_id("undo-")
        results = []
        try:
            for op_id in sorted(set(op_ids), reverse=True):
                self._planner.reset()
                op = plan_undo(self.db, self._planner, op_id)
                if op.state == "pending":
                    self._run([op], batch, dry_run=dry_run or self.dry_run)
                results.append(op.result())
        finally:
            self._dirs.close()
        return results
