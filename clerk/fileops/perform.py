"""Carry out journaled ops on the file system, one kind at a time.

Every placement is no-overwrite. A same-file-system move is one renameat2 call; across
file systems (and for copies) the data goes through `.clerk-tmp-<op id>` in the
destination directory: copy, fsync, verify, place, fsync the directory, re-check the
source, then unlink the source. A conflict that appears while acting changes the
destination only after the new name is committed to the journal (`retarget_op`), so
recovery always knows where to look.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable

from sqlite_utils import Database

from clerk.fileops.archive import extract_member, member_digest, write_archive
from clerk.fileops.op import Op, OpFailed, OpSkipped
from clerk.fileops.plan import free_sibling
from clerk.fileops.primitives import (
    Checkpoint,
    SourceChanged,
    copy_to_temp,
    describe_error,
    fsync_dir,
    identity,
    lstat_or_none,
    open_source,
    parent_dir,
    rename_noreplace,
    temp_path,
)
from clerk.fileops.trash import TrashDir, TrashFinder, free_name, write_info
from clerk.store.journal import retarget_op


def remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def trash_of(op: Op) -> TrashDir:
    """The trash an op's destination (`TRASH/files/NAME`) lives in."""
    assert op.dst is not None
    path = os.path.dirname(os.path.dirname(op.dst))
    topdir = os.path.dirname(path) if os.path.basename(path).startswith(".Trash") else None
    return TrashDir(path, topdir)


class Performer:
    """Acts on planned ops. `claimed` is shared with the planner of the same call."""

    def __init__(
        self, db: Database, finder: TrashFinder, checkpoint: Checkpoint, claimed: set[str]
    ):
        self.db = db
        self.finder = finder
        self.checkpoint = checkpoint
        self.claimed = claimed
        self._known_dirs: set[str] = set()
        self._handlers: dict[str, Callable[[Op], None]] = {
            "move": self._move, "rename": self._move, "copy": self._copy,
            "symlink": self._symlink, "hardlink": self._hardlink, "trash": self._trash,
            "delete": self._delete, "archive": self._archive,
        }  # fmt: skip

    def reset(self) -> None:
        self._known_dirs.clear()

    def perform(self, op: Op) -> None:
        """Do `op`; sets its state. Unexpected errors propagate with the op pending."""
        displaced = op.displaced
        if displaced is not None and displaced.state != "done":
            op.fail(f"could not move the existing destination away: {displaced.error}")
            return
        try:
            self._handlers[op.kind](op)
        except OpSkipped as exc:
            op.skip(str(exc))
        except OpFailed as exc:
            op.fail(str(exc))
        except SourceChanged as exc:
            op.fail(str(exc))
        except OSError as exc:
            op.fail(describe_error(exc))

    # --- helpers -----------------------------------------------------------------------
    def ensure_parent(self, path: str) -> None:
        parent = parent_dir(path)
        if parent not in self._known_dirs:
            os.makedirs(parent, exist_ok=True)
            self._known_dirs.add(parent)

    def _conflict(self, op: Op) -> None:
        """The destination appeared after planning: apply the policy, never overwrite."""
        assert op.dst is not None
        policy = op.on_conflict
        if op.kind == "trash":
            self._next_trash_name(op)
            return
        if policy == "skip":
            raise OpSkipped(f"destination exists: {op.dst}")
        if policy == "fail":
            raise OpFailed(f"destination exists: {op.dst}")
        if policy == "overwrite":
            raise OpFailed(f"destination appeared while acting, not replaced: {op.dst}")
        wanted = op.dst
        new = free_sibling(wanted, self.claimed)
        retarget_op(self.db, op.id, new, op.extra)
        self.claimed.add(new)
        op.dst = new
        op.note = f"renamed to {os.path.basename(new)}: {os.path.basename(wanted)} exists"

    def _source_unchanged(self, op: Op) -> bool:
        st = lstat_or_none(op.src)
        return st is not None and identity(st) == op.ident

    def _place(self, op: Op, tmp: str) -> None:
        """Move a verified temp file to the op's destination, never replacing anything."""
        assert op.dst is not None
        try:
            while True:
                try:
                    rename_noreplace(tmp, op.dst)
                    return
                except FileExistsError:
                    self._conflict(op)
        except BaseException:
            remove_quietly(tmp)
            raise

    def _unlink_source(self, op: Op) -> None:
        self.checkpoint("before_unlink_src")
        os.unlink(op.src)
        fsync_dir(os.path.dirname(op.src))
        self.checkpoint("after_unlink_src")

    # --- move, copy --------------------------------------------------------------------
    def _move(self, op: Op) -> None:
        assert op.dst is not None and op.ident is not None
        self.ensure_parent(op.dst)
        retried = False
        while True:
            try:
                rename_noreplace(op.src, op.dst)
                break
            except FileExistsError:
                self._conflict(op)
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    self._transfer(op, remove_source=True)
                    return
                if exc.errno == errno.ENOENT and not os.path.lexists(op.src):
                    # someone else moved or deleted it since it was seen (another scan
                    # of the same root, a user): not clerk's failure, and nothing lost
                    raise OpSkipped(f"the source is gone since it was seen: {op.src}") from None
                if exc.errno != errno.ENOENT or retried:
                    raise
                # the destination directory vanished since we cached it: recreate once
                self._known_dirs.discard(os.path.dirname(op.dst))
                self.ensure_parent(op.dst)
                retried = True
        self.checkpoint("after_place")
        op.dst_dev, op.dst_inode = op.ident.dev, op.ident.ino
        self._finish_restore(op)
        op.state = "done"

    def _copy(self, op: Op) -> None:
        self._transfer(op, remove_source=False)

    def _transfer(self, op: Op, *, remove_source: bool) -> None:
        """The cross-file-system protocol (and every copy)."""
        assert op.dst is not None
        self.ensure_parent(op.dst)
        if op.is_link:
            self._transfer_link(op, remove_source=remove_source)
            return
        tmp = temp_path(op.dst, op.id)
        copied = copy_to_temp(op.src, tmp, op.ident, self.checkpoint)
        op.hash = copied.digest
        self._place(op, tmp)
        fsync_dir(os.path.dirname(op.dst))
        self.checkpoint("after_place")
        if not self._source_unchanged(op):
            self._remove_if_same(op.dst, copied.dev, copied.ino)
            raise OpFailed("source changed during copy; the copy was removed, source kept")
        op.dst_dev, op.dst_inode = copied.dev, copied.ino
        if remove_source:
            self._unlink_source_or_undo_copy(op, copied.dev, copied.ino)
        self._finish_restore(op)
        op.state = "done"

    def _transfer_link(self, op: Op, *, remove_source: bool) -> None:
        """Symlinks travel as links: a new link with the same target."""
        assert op.dst is not None
        target = os.readlink(op.src)
        while True:
            try:
                os.symlink(target, op.dst)
                break
            except FileExistsError:
                self._conflict(op)
        st = os.lstat(op.dst)
        fsync_dir(os.path.dirname(op.dst))
        self.checkpoint("after_place")
        op.dst_dev, op.dst_inode = st.st_dev, st.st_ino
        if remove_source:
            if not self._source_unchanged(op):
                self._remove_if_same(op.dst, st.st_dev, st.st_ino)
                raise OpFailed("source changed while moving; nothing moved")
            self._unlink_source_or_undo_copy(op, st.st_dev, st.st_ino)
        self._finish_restore(op)
        op.state = "done"

    def _unlink_source_or_undo_copy(self, op: Op, dev: int, ino: int) -> None:
        """A move whose source cannot be removed (read-only, permissions) is no move:
        take the copy back out rather than leave the file in two places."""
        assert op.dst is not None
        try:
            self._unlink_source(op)
        except OSError as exc:
            self._remove_if_same(op.dst, dev, ino)
            reason = describe_error(exc)
            raise OpFailed(f"cannot remove the source ({reason}); the copy was removed") from None

    def _remove_if_same(self, path: str, dev: int, ino: int) -> None:
        st = lstat_or_none(path)
        if st is not None and (st.st_dev, st.st_ino) == (dev, ino):
            os.unlink(path)
            fsync_dir(os.path.dirname(path))

    def _finish_restore(self, op: Op) -> None:
        """A restore from the trash drops its trashinfo once the file is back."""
        info = op.extra.get("restore_info")
        if info:
            remove_quietly(info)

    # --- links -------------------------------------------------------------------------
    def _symlink(self, op: Op) -> None:
        assert op.dst is not None
        self.ensure_parent(op.dst)
        while True:
            try:
                os.symlink(op.extra["target"], op.dst)
                break
            except FileExistsError:
                self._conflict(op)
        self.checkpoint("after_place")
        st = os.lstat(op.dst)
        op.dst_dev, op.dst_inode = st.st_dev, st.st_ino
        op.state = "done"

    def _hardlink(self, op: Op) -> None:
        assert op.dst is not None and op.ident is not None
        self.ensure_parent(op.dst)
        while True:
            try:
                os.link(op.src, op.dst, follow_symlinks=False)
                break
            except FileExistsError:
                self._conflict(op)
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    raise OpFailed("cannot hardlink across file systems") from None
                raise
        self.checkpoint("after_place")
        op.dst_dev, op.dst_inode = op.ident.dev, op.ident.ino
        op.state = "done"

    # --- trash, delete -----------------------------------------------------------------
    def _trash(self, op: Op) -> None:
        assert op.dst is not None and op.ident is not None
        trash = self._usable_trash(op)
        self._reserve_info(op, trash)
        try:
            while True:
                try:
                    rename_noreplace(op.src, op.dst)
                    break
                except FileExistsError:
                    self._next_trash_name(op)  # an orphan in files/: take another name
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    self._transfer(op, remove_source=True)
                    return
        except BaseException:
            if not os.path.lexists(op.dst) or not self._is_ours(op):
                remove_quietly(op.extra["trashinfo"])
            raise
        self.checkpoint("after_place")
        op.dst_dev, op.dst_inode = op.ident.dev, op.ident.ino
        op.state = "done"

    def _is_ours(self, op: Op) -> bool:
        st = lstat_or_none(op.dst or "")
        return st is not None and op.ident is not None and st.st_ino == op.ident.ino

    def _usable_trash(self, op: Op) -> TrashDir:
        """The planned trash, created if needed; else the home trash (by copy)."""
        trash = trash_of(op)
        try:
            self.finder.prepare(trash)
            return trash
        except OSError:
            if trash == self.finder.home:
                raise
        self.finder.forget(trash)
        home = self.finder.home
        self.finder.prepare(home)
        self._retarget_trash(op, home, free_name(home, os.path.basename(op.src), self.claimed))
        return home

    def _reserve_info(self, op: Op, trash: TrashDir) -> None:
        while True:
            try:
                write_info(op.extra["trashinfo"], op.src, trash)
                return
            except FileExistsError:
                name = free_name(trash, os.path.basename(op.src), self.claimed)
                self._retarget_trash(op, trash, name)

    def _next_trash_name(self, op: Op) -> None:
        """files/NAME is taken after all: give up our info there and reserve another."""
        trash = trash_of(op)
        remove_quietly(op.extra["trashinfo"])
        self._retarget_trash(op, trash, free_name(trash, os.path.basename(op.src), self.claimed))
        self._reserve_info(op, trash)

    def _retarget_trash(self, op: Op, trash: TrashDir, name: str) -> None:
        op.dst = trash.file_path(name)
        op.extra["trashinfo"] = trash.info_path(name)
        retarget_op(self.db, op.id, op.dst, op.extra)
        self.claimed.add(op.dst)

    def _delete(self, op: Op) -> None:
        st = lstat_or_none(op.src)
        if st is None:
            raise OpFailed(f"already gone: {op.src}")
        if identity(st) != op.ident:
            raise OpFailed(f"changed since it was checked, not removed: {op.src}")
        self._unlink_source(op)
        op.state = "done"

    # --- archive -----------------------------------------------------------------------
    def _archive(self, op: Op) -> None:
        assert op.dst is not None
        if op.extra.get("extract"):
            self._extract(op)
            return
        self.ensure_parent(op.dst)
        fmt, member = op.extra["format"], op.extra["member"]
        tmp = temp_path(op.dst, op.id)
        src_fd = open_source(op.src, op.ident)
        try:
            digest = write_archive(src_fd, tmp, fmt, member, self.checkpoint)
        except BaseException:
            remove_quietly(tmp)
            raise
        finally:
            os.close(src_fd)
        if member_digest(tmp, fmt, member) != digest:
            remove_quietly(tmp)
            raise OpFailed("archive verification failed: the member did not read back intact")
        op.hash = digest
        self._place(op, tmp)
        fsync_dir(os.path.dirname(op.dst))
        self.checkpoint("after_place")
        st = os.lstat(op.dst)
        if not self._source_unchanged(op):
            self._remove_if_same(op.dst, st.st_dev, st.st_ino)
            raise OpFailed("source changed while archiving; archive removed, source kept")
        op.dst_dev, op.dst_inode = st.st_dev, st.st_ino
        if not op.extra.get("keep_source"):
            self._unlink_source_or_undo_copy(op, st.st_dev, st.st_ino)
        op.state = "done"

    def _extract(self, op: Op) -> None:
        """Undo of an archive: the member back to its path, verified; then the archive goes."""
        assert op.dst is not None
        self.ensure_parent(op.dst)
        tmp = temp_path(op.dst, op.id)
        try:
            fmt, member = op.extra["format"], op.extra["member"]
            digest = extract_member(op.src, fmt, member, tmp, self.checkpoint)
        except BaseException:
            remove_quietly(tmp)
            raise
        if op.hash and digest != op.hash:
            remove_quietly(tmp)
            raise OpFailed("the archive member does not match the journaled hash; not restored")
        self._place(op, tmp)
        fsync_dir(os.path.dirname(op.dst))
        self.checkpoint("after_place")
        st = os.lstat(op.dst)
        op.dst_dev, op.dst_inode = st.st_dev, st.st_ino
        op.state = "done"
        if not self._source_unchanged(op):
            op.note = f"the archive changed since; kept {op.src}"
            return
        try:
            self._unlink_source(op)
        except OSError as exc:
            op.note = f"restored; the archive could not be removed ({describe_error(exc)})"
