"""Finish or roll back the ops a crash left 'pending'.

Recovery looks at the world, not at how far the process claimed to get: is the source
still the journaled file, is the destination there with the source's identity or with
verified content, is the op's temp file there? A verified destination rolls the op
forward (the source is unlinked if the op is a move); anything less rolls it back (the
temp is removed, the source stays). Only temp files of pending ops are touched.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from typing import Any

from clerk.fileops.archive import member_digest
from clerk.fileops.op import Op
from clerk.fileops.plan import source_identity
from clerk.fileops.primitives import (
    describe_error,
    fsync_dir,
    hash_file,
    identity,
    lstat_or_none,
    temp_path,
)

COMPLETED = "interrupted; completed"
ROLLED_BACK = "interrupted; rolled back"


def op_from_row(row: dict[str, Any]) -> Op:
    extra = row["extra"]
    return Op(
        kind=row["kind"], src=row["src"], dst=row["dst"] or None, rule=row["rule"],
        file_id=row["file_id"], ident=source_identity(row), is_link="link" in extra,
        extra=extra, undoes=row["undoes"], id=row["id"], hash=row["hash"],
        on_conflict=row["on_conflict"] or "fail",
    )  # fmt: skip


def recover_op(op: Op) -> Op:
    """Settle one pending op. On an OSError it stays pending (retried next start)."""
    handler = _HANDLERS.get(op.kind)
    if handler is None or op.ident is None:
        return op.fail(f"interrupted; cannot recover a {op.kind!r} op without its intent data")
    try:
        handler(op)
    except OSError as exc:
        op.error = f"interrupted; recovery failed, will retry: {describe_error(exc)}"
    return op


class _World:
    """The source, destination and temp of an op as they are now."""

    def __init__(self, op: Op):
        self.src = lstat_or_none(op.src)
        self.src_ok = self.src is not None and identity(self.src) == op.ident
        self.dst = lstat_or_none(op.dst) if op.dst else None
        self.tmp = temp_path(op.dst, op.id) if op.dst else None


def _complete(op: Op, world: _World, note: str = COMPLETED) -> None:
    _remove_temp(world)
    if world.dst is not None:
        op.dst_dev, op.dst_inode = world.dst.st_dev, world.dst.st_ino
    op.state, op.error = "done", note


def _roll_back(op: Op, world: _World, note: str = ROLLED_BACK) -> None:
    _remove_temp(world)
    op.fail(note)


def _lost(op: Op, world: _World) -> None:
    # the source is gone and nothing verified was placed: never delete what may be
    # the only copy left
    if world.tmp and os.path.lexists(world.tmp):
        op.fail(f"interrupted; source missing, partial copy kept at {world.tmp}")
    else:
        op.fail("interrupted; source and destination both missing, nothing to do")


def _remove_temp(world: _World) -> None:
    if world.tmp:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(world.tmp)


def _unlink_source(op: Op) -> None:
    os.unlink(op.src)
    fsync_dir(os.path.dirname(op.src))


def _is_placed(op: Op, world: _World) -> bool:
    """Is the destination the journaled source (same inode) or a verified copy of it?"""
    dst, ident = world.dst, op.ident
    assert ident is not None
    if dst is None or op.dst is None:
        return False
    if (dst.st_dev, dst.st_ino) == (ident.dev, ident.ino):
        return True
    if op.is_link:
        return stat.S_ISLNK(dst.st_mode) and os.readlink(op.dst) == op.extra.get("link")
    if not stat.S_ISREG(dst.st_mode) or dst.st_size != ident.size:
        return False
    if dst.st_mtime_ns != ident.mtime_ns:
        return False
    if world.src_ok:
        return hash_file(op.dst) == hash_file(op.src)
    # the source is gone: size and mtime (copied to the temp) are what is left to compare
    return world.src is None


def _recover_transfer(op: Op, *, remove_source: bool) -> None:
    world = _World(op)
    if _is_placed(op, world):
        if remove_source and world.src_ok:
            _unlink_source(op)  # a verified copy, or a second name of the same inode
        info = op.extra.get("restore_info")
        if info and os.path.lexists(info):
            os.unlink(info)
        _complete(op, world)
    elif world.src is not None:
        _drop_unused_trashinfo(op)
        _roll_back(op, world)
    else:
        _lost(op, world)


def _drop_unused_trashinfo(op: Op) -> None:
    info = op.extra.get("trashinfo") if op.kind == "trash" else None
    # the trashinfo is ours only while no file sits under its name
    if info and op.dst and not os.path.lexists(op.dst) and os.path.lexists(info):
        os.unlink(info)


def _recover_move(op: Op) -> None:
    _recover_transfer(op, remove_source=True)


def _recover_copy(op: Op) -> None:
    _recover_transfer(op, remove_source=False)


def _recover_symlink(op: Op) -> None:
    world = _World(op)
    target = op.extra.get("target")
    dst = world.dst
    if dst is not None and op.dst and stat.S_ISLNK(dst.st_mode) and os.readlink(op.dst) == target:
        _complete(op, world)
    else:
        _roll_back(op, world)


def _recover_hardlink(op: Op) -> None:
    world = _World(op)
    assert op.ident is not None
    dst = world.dst
    if dst is not None and (dst.st_dev, dst.st_ino) == (op.ident.dev, op.ident.ino):
        _complete(op, world)
    else:
        _roll_back(op, world)


def _recover_delete(op: Op) -> None:
    if os.path.lexists(op.src):
        op.fail(f"{ROLLED_BACK} (file kept)")
    else:
        op.state, op.error = "done", COMPLETED


def _recover_archive(op: Op) -> None:
    if op.extra.get("extract"):
        _recover_extract(op)
        return
    world = _World(op)
    fmt, member = op.extra.get("format", ""), op.extra.get("member", "")
    if op.dst and world.dst is not None and stat.S_ISREG(world.dst.st_mode):
        digest = member_digest(op.dst, fmt, member)
        expected = hash_file(op.src) if world.src_ok else op.hash
        if digest is not None and (expected is None or digest == expected):
            if world.src_ok and not op.extra.get("keep_source"):
                _unlink_source(op)
            op.hash = digest
            _complete(op, world)
            return
        if world.src is not None and not world.src_ok:
            _roll_back(op, world, f"{ROLLED_BACK}; the source changed, {op.dst} kept")
            return
    if world.src is not None:
        _roll_back(op, world)
    else:
        _lost(op, world)


def _recover_extract(op: Op) -> None:
    world = _World(op)
    dst = world.dst
    restored = op.dst and dst is not None and stat.S_ISREG(dst.st_mode)
    if restored and (op.hash is None or hash_file(op.dst or "") == op.hash):
        if world.src_ok:
            _unlink_source(op)
        _complete(op, world)
        return
    if world.src is not None:
        _roll_back(op, world)
    else:
        _lost(op, world)


_HANDLERS: dict[str, Callable[[Op], None]] = {
    "move": _recover_move, "rename": _recover_move, "trash": _recover_move,
    "copy": _recover_copy, "symlink": _recover_symlink, "hardlink": _recover_hardlink,
    "delete": _recover_delete, "archive": _recover_archive,
}  # fmt: skip
