"""`FileOps`: journal intents, act, record outcomes; recover and undo.

One `execute()` call is one round trip to the journal on each side of the work: all
intents in one transaction (committed before anything is touched), then the file
system work, then all outcomes in one transaction. A same-file-system move costs one
lstat at planning, one existence check and one renameat2; the journal commit is its
durability point (no per-op fsync). Chained requests (`chain=i`) need the actual
result of request i, so they are journaled in a following round of the same call.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlite_utils import Database

from clerk.fileops.beneath import Beneath
from clerk.fileops.op import Op
from clerk.fileops.perform import Performer
from clerk.fileops.plan import Planner
from clerk.fileops.primitives import crash_now, crash_step_from_env
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


def chain_rounds(requests: Sequence[OpRequest]) -> list[list[int]]:
    """Request indexes grouped so every chained request comes after the one it needs."""
    depth: list[int] = []
    for index, req in enumerate(requests):
        chain = req.chain
        valid = chain is not None and 0 <= chain < index
        depth.append(depth[chain] + 1 if valid and chain is not None else 0)
    rounds: list[list[int]] = [[] for _ in range(max(depth, default=-1) + 1)]
    for index, level in enumerate(depth):
        rounds[level].append(index)
    return rounds


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
        self._planner = Planner(roots, self._finder, self._dirs)
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
            for round_indexes in chain_rounds(requests):
                ops: list[Op] = []
                for index in round_indexes:
                    planned = self._plan_request(requests, index, ops_by_index)
                    ops_by_index[index] = planned[-1]
                    ops.extend(planned)
                self._run(ops, batch, dry_run=self.dry_run)
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
