"""Plan the reverse of a journaled op, only while the world still matches the journal.

The reverse is an ordinary op (journaled, crash-safe) with `undoes` set:
move/rename back, restore from the trash, remove a copy or link that is still that
copy or link, extract an archive member back. Undoing an undo is a redo: the original
request is replayed (never onto an occupied path) and the original op is 'done' again.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from sqlite_utils import Database

from clerk.fileops.op import Op
from clerk.fileops.plan import Planner, replay_request
from clerk.fileops.primitives import identity, lstat_or_none
from clerk.store.journal import get_op


def plan_undo(db: Database, planner: Planner, op_id: int) -> Op:
    """The op that undoes `op_id`, pending; or a failed op saying why not."""
    row = get_op(db, op_id)
    if row is None:
        return Op(kind="move", src="", dst=None, undoes=op_id).fail(f"no op with id {op_id}")
    row = _original_of_redo(db, row)
    if row["state"] != "done":
        return _refuse(row, f"op {row['id']} is {row['state']}; only done ops can be undone")
    if row["undoes"] is not None:
        return _plan_redo(db, planner, row)
    return _plan_reverse(row)


def _original_of_redo(db: Database, row: dict[str, Any]) -> dict[str, Any]:
    # a redo row stands for the original op, which is 'done' again: undo that one
    if row["undoes"] is None:
        return row
    reversed_row = get_op(db, row["undoes"])
    if reversed_row is None or reversed_row["undoes"] is None:
        return row
    return get_op(db, reversed_row["undoes"]) or row


def _refuse(row: dict[str, Any], reason: str) -> Op:
    return Op(
        kind=row["kind"], src=row["src"], dst=row["dst"] or None, rule=row["rule"],
        file_id=row["file_id"], undoes=row["id"],
    ).fail(reason)  # fmt: skip


def _reverse_op(row: dict[str, Any], st: os.stat_result, **fields: Any) -> Op:
    op = Op(
        src=row["dst"], ident=identity(st), is_link=stat.S_ISLNK(st.st_mode),
        on_conflict="fail", rule=row["rule"], file_id=row["file_id"], undoes=row["id"],
        trusted=True, **fields,
    )  # fmt: skip
    if op.is_link:
        op.extra["link"] = os.readlink(op.src)
    return op


def _plan_reverse(row: dict[str, Any]) -> Op:
    kind, dst = row["kind"], row["dst"]
    if kind == "delete":
        return _refuse(row, "permanent deletes cannot be undone")
    st = lstat_or_none(dst) if dst else None
    if st is None:
        return _refuse(row, f"{dst} is gone")
    if (st.st_dev, st.st_ino) != (row["dst_dev"], row["dst_inode"]):
        return _refuse(row, f"{dst} is no longer the file op {row['id']} put there")
    if kind in ("move", "rename", "trash", "copy") and not _same_content_stamp(st, row):
        # also catches a new file that reused the inode number of a removed one
        return _refuse(row, f"{dst} was modified since op {row['id']}; not touched")
    if kind in ("move", "rename", "trash"):
        return _plan_move_back(row, st)
    if kind == "copy":
        return _plan_remove_copy(row, st)
    if kind == "symlink":
        if not stat.S_ISLNK(st.st_mode) or os.readlink(dst) != row["extra"].get("target"):
            return _refuse(row, f"{dst} no longer points to {row['src']}")
        return _remove(row, st)
    if kind == "hardlink":
        if st.st_nlink < 2:
            return _refuse(row, f"{dst} is the file's last name; not removed")
        return _remove(row, st)
    if kind == "archive":
        return _plan_unarchive(row, st)
    return _refuse(row, f"cannot undo a {kind!r} op")


def _same_content_stamp(st: os.stat_result, row: dict[str, Any]) -> bool:
    """Size and mtime still those journaled (symlinks: only their identity counts)."""
    if not stat.S_ISREG(st.st_mode):
        return True
    return (st.st_size, st.st_mtime_ns) == (row["size"], row["mtime_ns"])


def _plan_move_back(row: dict[str, Any], st: os.stat_result) -> Op:
    if os.path.lexists(row["src"]):
        return _refuse(row, f"the original path is taken: {row['src']}")
    kind = "move" if row["kind"] == "trash" else row["kind"]
    op = _reverse_op(row, st, kind=kind, dst=row["src"])
    if row["kind"] == "trash":
        op.extra["restore_info"] = row["extra"].get("trashinfo")
        op.note = "restored from the trash"
    return op


def _plan_remove_copy(row: dict[str, Any], st: os.stat_result) -> Op:
    dst = row["dst"]
    if stat.S_ISLNK(st.st_mode) and os.readlink(dst) != row["extra"].get("link"):
        return _refuse(row, f"the copy {dst} was changed since; not removed")
    if not os.path.lexists(row["src"]):
        return _refuse(row, f"the original {row['src']} is gone; the copy is the last one")
    return _remove(row, st)


def _plan_unarchive(row: dict[str, Any], st: os.stat_result) -> Op:
    extra = row["extra"]
    if extra.get("keep_source"):
        if not os.path.lexists(row["src"]):
            return _refuse(row, f"{row['src']} is gone; the archive is the last copy")
        return _remove(row, st)
    if os.path.lexists(row["src"]):
        return _refuse(row, f"the original path is taken: {row['src']}")
    op = _reverse_op(row, st, kind="archive", dst=row["src"], hash=row["hash"])
    op.extra.update(extract=True, format=extra.get("format", ""), member=extra.get("member"))
    op.note = "extracted from the archive"
    return op


def _remove(row: dict[str, Any], st: os.stat_result) -> Op:
    op = _reverse_op(row, st, kind="delete", dst=None, options={"permanent": True})
    op.extra["reverse"] = row["kind"]
    op.note = f"removed the {row['kind']} made by op {row['id']}"
    return op


def _plan_redo(db: Database, planner: Planner, undo_row: dict[str, Any]) -> Op:
    """Undo of an undo: replay the original request, if the undo's effect still holds."""
    original = get_op(db, undo_row["undoes"])
    if original is None:
        return _refuse(undo_row, f"op {undo_row['undoes']} is missing from the journal")
    placed = undo_row["dst"]
    if placed and undo_row["dst_dev"] is not None:
        st = lstat_or_none(placed)
        same = st is not None and (st.st_dev, st.st_ino) == (
            undo_row["dst_dev"],
            undo_row["dst_inode"],
        )
        if st is None or not same or not _same_content_stamp(st, undo_row):
            return _refuse(undo_row, f"{placed} is no longer the file op {undo_row['id']} put back")
    op = planner.plan(replay_request(original), -1, trusted=True, predict=True)[-1]
    op.undoes = undo_row["id"]
    if op.state == "pending":
        op.note = f"redo of op {original['id']}"
    return op
