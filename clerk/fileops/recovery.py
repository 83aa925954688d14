"""Finish or roll back the ops a crash left 'pending'.

Recovery looks at the world, not at how far the process claimed to get: is the source
still the journaled file, is the destination there with the source's identity or with
verified content, is the op's temp file there? A verified destination rolls the op
forward (the source is unlinked if the op is a move); anything less rolls it back (the
temp is removed, the source stays). Only temp files of pending ops are touched.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

from clerk.fileops.archive import member_digest
from clerk.fileops.beneath import Beneath
from clerk.fileops.op import Op
from clerk.fileops.perform import anchor_trash
from clerk.fileops.plan import source_identity
from clerk.fileops.primitives import (
    At,
    describe_error,
    fsync_dir,
    hash_file,
    identity,
    lstat_at,
    remove_quietly,
    rename_noreplace,
    temp_name,
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


def recover_op(op: Op, dirs: Beneath) -> Op:
    """Settle one pending op. On an OSError it stays pending (retried next start).

    Every file is reached through `dirs`, as when the op was performed: a directory
    swapped for a symlink since is not followed out of the roots (the op stays pending).
    """
    handler = _HANDLERS.get(op.kind)
    if handler is None or op.ident is None:
        return op.fail(f"interrupted; cannot recover a {op.kind!r} op without its intent data")
    try:
        anchor_trash(dirs, op)
        handler(_World(op, dirs))
    except OSError as exc:
        op.error = f"interrupted; recovery failed, will retry: {describe_error(exc)}"
    return op


def _at(dirs: Beneath, path: str | None) -> At | None:
    """`path` by its opened directory; None if that directory is not there (any more)."""
    if not path:
        return None
    try:
        return dirs.parent(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _lstat(at: At | None) -> os.stat_result | None:
    return lstat_at(at) if at is not None else None


class _World:
    """The op, and its source, destination and temp as they are now."""

    def __init__(self, op: Op, dirs: Beneath):
        self.op, self.dirs = op, dirs
        self.src_at = _at(dirs, op.src)
        self.src = _lstat(self.src_at)
        if self.src is None and self.src_at is not None:
            self._put_back_set_aside_source(self.src_at)
        self.src_ok = self.src is not None and identity(self.src) == op.ident
        self.dst_at = _at(dirs, op.dst)
        self.dst = _lstat(self.dst_at)
        self.tmp = At(self.dst_at.dir_fd, temp_name(op.id)) if self.dst_at else None

    def _put_back_set_aside_source(self, src: At) -> None:
        """A source is renamed to the op's temp name right before it is removed (see
        `Performer._remove_checked`): if the crash came in between, it is the source."""
        aside = At(src.dir_fd, temp_name(self.op.id))
        st = lstat_at(aside)
        if st is not None and identity(st) == self.op.ident:
            rename_noreplace(aside, src)
            self.src = lstat_at(src)

    def remove(self, path: str | None) -> None:
        """Remove a file of ours (a trashinfo) if it is there."""
        at = _at(self.dirs, path)
        if at is not None:
            remove_quietly(at)

    def exists(self, path: str | None) -> bool:
        return _lstat(_at(self.dirs, path)) is not None


def _complete(world: _World, note: str = COMPLETED) -> None:
    op = world.op
    _remove_temp(world)
    if world.dst is not None:
        op.dst_dev, op.dst_inode = world.dst.st_dev, world.dst.st_ino
    op.state, op.error = "done", note


def _roll_back(world: _World, note: str = ROLLED_BACK) -> None:
    _remove_temp(world)
    world.op.fail(note)


def _lost(world: _World) -> None:
    # the source is gone and nothing verified was placed: never delete what may be
    # the only copy left
    op = world.op
    if world.tmp and lstat_at(world.tmp) is not None:
        op.fail(
            f"interrupted; source missing, partial copy kept at {temp_path(op.dst or '', op.id)}"
        )
    else:
        op.fail("interrupted; source and destination both missing, nothing to do")


def _remove_temp(world: _World) -> None:
    if world.tmp:
        remove_quietly(world.tmp)


def _unlink_source(world: _World) -> None:
    assert world.src_at is not None
    os.unlink(world.src_at.name, dir_fd=world.src_at.dir_fd)
    fsync_dir(world.src_at.dir_fd)


def _readlink(at: At) -> str:
    return os.readlink(at.name, dir_fd=at.dir_fd)


def _is_placed(world: _World) -> bool:
    """Is the destination the journaled source (same inode) or a verified copy of it?"""
    op, dst, ident = world.op, world.dst, world.op.ident
    assert ident is not None
    if dst is None or world.dst_at is None:
        return False
    if (dst.st_dev, dst.st_ino) == (ident.dev, ident.ino):
        return True
    if op.is_link:
        return stat.S_ISLNK(dst.st_mode) and _readlink(world.dst_at) == op.extra.get("link")
    if not stat.S_ISREG(dst.st_mode) or dst.st_size != ident.size:
        return False
    if dst.st_mtime_ns != ident.mtime_ns:
        return False
    if world.src_ok and world.src_at is not None:
        return hash_file(world.dst_at) == hash_file(world.src_at)
    # the source is gone: size and mtime (copied to the temp) are what is left to compare
    return world.src is None


def _recover_transfer(world: _World, *, remove_source: bool) -> None:
    op = world.op
    if _is_placed(world):
        if remove_source and world.src_ok:
            _unlink_source(world)  # a verified copy, or a second name of the same inode
        world.remove(op.extra.get("restore_info"))
        _complete(world)
    elif world.src is not None:
        _drop_unused_trashinfo(world)
        _roll_back(world)
    else:
        _lost(world)


def _drop_unused_trashinfo(world: _World) -> None:
    op = world.op
    info = op.extra.get("trashinfo") if op.kind == "trash" else None
    # the trashinfo is ours only while no file sits under its name
    if info and op.dst and world.dst is None:
        world.remove(info)


def _recover_move(world: _World) -> None:
    _recover_transfer(world, remove_source=True)


def _recover_copy(world: _World) -> None:
    _recover_transfer(world, remove_source=False)


def _recover_symlink(world: _World) -> None:
    target = world.op.extra.get("target")
    dst, at = world.dst, world.dst_at
    if dst is not None and at is not None and stat.S_ISLNK(dst.st_mode) and _readlink(at) == target:
        _complete(world)
    else:
        _roll_back(world)


def _recover_hardlink(world: _World) -> None:
    ident = world.op.ident
    assert ident is not None
    dst = world.dst
    if dst is not None and (dst.st_dev, dst.st_ino) == (ident.dev, ident.ino):
        _complete(world)
    else:
        _roll_back(world)


def _recover_delete(world: _World) -> None:
    if world.src is not None:
        world.op.fail(f"{ROLLED_BACK} (file kept)")
    else:
        world.op.state, world.op.error = "done", COMPLETED


def _recover_archive(world: _World) -> None:
    op = world.op
    if op.extra.get("extract"):
        _recover_extract(world)
        return
    fmt, member = op.extra.get("format", ""), op.extra.get("member", "")
    if world.dst_at is not None and world.dst is not None and stat.S_ISREG(world.dst.st_mode):
        digest = member_digest(world.dst_at, fmt, member)
        src_ok = world.src_ok and world.src_at is not None
        expected = hash_file(world.src_at) if src_ok and world.src_at else op.hash
        if digest is not None and (expected is None or digest == expected):
            if world.src_ok and not op.extra.get("keep_source"):
                _unlink_source(world)
            op.hash = digest
            _complete(world)
            return
        if world.src is not None and not world.src_ok:
            _roll_back(world, f"{ROLLED_BACK}; the source changed, {op.dst} kept")
            return
    if world.src is not None:
        _roll_back(world)
    else:
        _lost(world)


def _recover_extract(world: _World) -> None:
    op, dst, at = world.op, world.dst, world.dst_at
    restored = at is not None and dst is not None and stat.S_ISREG(dst.st_mode)
    if restored and at is not None and (op.hash is None or hash_file(at) == op.hash):
        if world.src_ok:
            _unlink_source(world)
        _complete(world)
        return
    if world.src is not None:
        _roll_back(world)
    else:
        _lost(world)


_HANDLERS: dict[str, Callable[[_World], None]] = {
    "move": _recover_move, "rename": _recover_move, "trash": _recover_move,
    "copy": _recover_copy, "symlink": _recover_symlink, "hardlink": _recover_hardlink,
    "delete": _recover_delete, "archive": _recover_archive,
}  # fmt: skip
