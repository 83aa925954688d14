"""Carry out journaled ops on the file system, one kind at a time.

Every placement is no-overwrite. A same-file-system move is one renameat2 call; across
file systems (and for copies) the data goes through `.clerk-tmp-<op id>` in the
destination directory: copy, fsync, verify, place, fsync the directory, re-check the
source, then remove it (set aside under the temp name, checked, unlinked). A conflict
that appears while acting changes the destination only after the new name is committed
to the journal (`retarget_op`), so recovery always knows where to look.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

from sqlite_utils import Database

from clerk.fileops.archive import extract_member, member_digest, write_archive
from clerk.fileops.beneath import Beneath
from clerk.fileops.op import Op, OpFailed, OpSkipped
from clerk.fileops.plan import free_sibling
from clerk.fileops.primitives import (
    At,
    Checkpoint,
    SourceChanged,
    copy_to_temp,
    describe_error,
    fsync_dir,
    identity,
    lstat_at,
    open_source,
    remove_quietly,
    rename_noreplace,
    temp_name,
)
from clerk.fileops.trash import TrashDir, TrashFinder, free_name, write_info
from clerk.store.journal import retarget_op


def anchor_trash(dirs: Beneath, op: Op) -> None:
    """Let `dirs` reach the trash an op writes to (trash) or restores from (undo)."""
    for path in (
        op.dst if op.kind == "trash" else None,
        op.src if op.extra.get("restore_info") else None,
    ):
        if path:
            trash = TrashDir.holding(path)
            dirs.add_anchor(trash.path, follow_last=not trash.is_volume_trash)


def is_same_file(st: os.stat_result, op: Op) -> bool:
    """Is `st` the op's source as planned: that inode, and still a file (or link)?"""
    ident = op.ident
    kind_ok = stat.S_ISLNK(st.st_mode) if op.is_link else stat.S_ISREG(st.st_mode)
    return kind_ok and ident is not None and (st.st_dev, st.st_ino) == (ident.dev, ident.ino)


def describe_kind(st: os.stat_result) -> str:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "another file"
    return "a special file"


class Performer:
    """Acts on planned ops. `claimed` is shared with the planner of the same call.

    Every file is named by `At(directory descriptor, name)` from `dirs`, never by a
    path the kernel resolves: see `clerk.fileops.beneath`.
    """

    def __init__(
        self,
        db: Database,
        finder: TrashFinder,
        checkpoint: Checkpoint,
        claimed: set[str],
        dirs: Beneath,
    ):
        self.db = db
        self.finder = finder
        self.checkpoint = checkpoint
        self.claimed = claimed
        self.dirs = dirs
        self._handlers: dict[str, Callable[[Op], None]] = {
            "move": self._move, "rename": self._move, "copy": self._copy,
            "symlink": self._symlink, "hardlink": self._hardlink, "trash": self._trash,
            "delete": self._delete, "archive": self._archive,
        }  # fmt: skip

    def perform(self, op: Op) -> None:
        """Do `op`; sets its state. Unexpected errors propagate with the op pending."""
        displaced = op.displaced
        if displaced is not None and displaced.state != "done":
            op.fail(f"could not move the existing destination away: {displaced.error}")
            return
        self.dirs.trim()
        try:
            anchor_trash(self.dirs, op)
            self._handlers[op.kind](op)
        except OpSkipped as exc:
            op.skip(str(exc))
        except SourceChanged as exc:  # found on opening it, before anything was made
            op.skip(f"{exc}; not touched: {op.src}")
        except OpFailed as exc:
            op.fail(str(exc))
        except OSError as exc:
            op.fail(describe_error(exc))

    # --- helpers -----------------------------------------------------------------------
    def _at(self, path: str, *, create: bool = False) -> At:
        return self.dirs.parent(path, create=create)

    def _source(self, op: Op) -> At:
        """The source, reached through its opened directory and checked right before
        acting: still the file (or link) that was planned, not something put in its place."""
        src = self._at(op.src)
        st = lstat_at(src)
        if st is None:
            raise OpSkipped(f"the source is gone since it was seen: {op.src}")
        if not is_same_file(st, op):
            raise OpSkipped(
                f"the source was replaced since it was seen (now {describe_kind(st)}); "
                f"not touched: {op.src}"
            )
        return src

    def _check_placed(self, op: Op, src: At, dst: At) -> None:
        """After a rename: was it the planned file? If something replaced the source in
        the instant between the check and the rename, put it back and skip."""
        assert op.ident is not None
        st = lstat_at(dst)
        if st is None or is_same_file(st, op):  # gone already: someone moved it on
            op.dst_dev, op.dst_inode = op.ident.dev, op.ident.ino
            return
        try:
            rename_noreplace(dst, src)
        except OSError as exc:
            raise OpFailed(
                f"the source was replaced as it was moved; {describe_kind(st)} now at "
                f"{op.dst} could not be put back ({describe_error(exc)})"
            ) from None
        raise OpSkipped(f"the source was replaced as it was moved; put back: {op.src}")

    def _conflict(self, op: Op, dst: At | None = None) -> At | None:
        """The destination appeared after planning: apply the policy, never overwrite.

        Returns the new destination (same directory) when the policy picks another name.
        """
        assert op.dst is not None
        policy = op.on_conflict
        if op.kind == "trash":
            self._next_trash_name(op)
            return None
        if policy == "skip":
            raise OpSkipped(f"destination exists: {op.dst}")
        if policy == "fail":
            raise OpFailed(f"destination exists: {op.dst}")
        if policy == "overwrite":
            raise OpFailed(f"destination appeared while acting, not replaced: {op.dst}")
        wanted = op.dst
        exists = None
        if dst is not None:
            fd = dst.dir_fd
            exists = lambda path: lstat_at(At(fd, os.path.basename(path))) is not None  # noqa: E731
        new = free_sibling(wanted, self.claimed, exists)
        retarget_op(self.db, op.id, new, op.extra)
        self.claimed.add(new)
        op.dst = new
        op.note = f"renamed to {os.path.basename(new)}: {os.path.basename(wanted)} exists"
        return None if dst is None else At(dst.dir_fd, os.path.basename(new))

    def _source_unchanged(self, op: Op, src: At) -> bool:
        st = lstat_at(src)
        return st is not None and identity(st) == op.ident

    def _unchanged_or_drop(self, op: Op, src: At, tmp: At, message: str) -> None:
        """Before a temp copy is placed: if the source changed while it was read, the
        copy may be no version of it at all (half old, half new). It is removed and
        never appears under the destination's name, not even for an instant. A change
        after this look leaves the copy a faithful one of the source as it was; a move
        removes its source only if it is still this version (`_unlink_source`)."""
        if not self._source_unchanged(op, src):
            remove_quietly(tmp)
            raise OpFailed(f"{message}; source kept")

    def _place(self, op: Op, tmp: At, dst: At) -> At:
        """Move a verified temp file to the op's destination, never replacing anything."""
        try:
            while True:
                try:
                    rename_noreplace(tmp, dst)
                    return dst
                except FileExistsError:
                    dst = self._conflict(op, dst) or dst
        except BaseException:
            remove_quietly(tmp)
            raise

    def _remove_checked(
        self, op: Op, at: At, wanted: Callable[[os.stat_result], bool], step: str | None = None
    ) -> bool:
        """Remove `at` only if it is the file `wanted` accepts; False if nothing was removed.

        There is no "unlink if this inode": the file is first renamed to the op's temp
        name and checked there, so the file checked is the file removed. Something put
        at the name in between gets its name back. (Recovery knows the temp name.)
        `step` is the crash point just before the unlink.
        """
        aside = At(at.dir_fd, temp_name(op.id))
        try:
            rename_noreplace(at, aside)
        except FileNotFoundError:
            return False
        st = lstat_at(aside)
        if st is not None and wanted(st):
            if step is not None:
                self.checkpoint(step)
            os.unlink(aside.name, dir_fd=aside.dir_fd)
            fsync_dir(at.dir_fd)
            return True
        try:
            rename_noreplace(aside, at)
        except OSError as exc:
            raise OpFailed(
                f"a file put in place of {op.src} as it was removed was set aside as "
                f"{aside.name} and could not be given its name back ({describe_error(exc)})"
            ) from None
        return False

    def _unlink_source(self, op: Op, src: At) -> bool:
        """Remove the source if it is still the journaled file; False if it is not."""
        removed = self._remove_checked(
            op, src, lambda st: identity(st) == op.ident, step="before_unlink_src"
        )
        if removed:
            self.checkpoint("after_unlink_src")
        return removed

    # --- move, copy --------------------------------------------------------------------
    def _move(self, op: Op) -> None:
        assert op.dst is not None and op.ident is not None
        src = self._source(op)
        dst = self._at(op.dst, create=True)
        retried = False
        while True:
            try:
                rename_noreplace(src, dst)
                break
            except FileExistsError:
                dst = self._conflict(op, dst) or dst
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    self._transfer(op, src, remove_source=True)
                    return
                if exc.errno != errno.ENOENT or retried:
                    raise
                if lstat_at(src) is None:
                    # someone else moved or deleted it since it was checked (another scan
                    # of the same root, a user): not clerk's failure, and nothing lost
                    raise OpSkipped(f"the source is gone since it was seen: {op.src}") from None
                # the destination directory was removed since it was opened: open it afresh
                self.dirs.close()
                src, dst = self._source(op), self._at(op.dst, create=True)
                retried = True
        self.checkpoint("after_place")
        self._check_placed(op, src, dst)
        self._finish_restore(op)
        op.state = "done"

    def _copy(self, op: Op) -> None:
        self._transfer(op, self._source(op), remove_source=False)

    def _transfer(self, op: Op, src: At, *, remove_source: bool) -> None:
        """The cross-file-system protocol (and every copy)."""
        assert op.dst is not None
        dst = self._at(op.dst, create=True)
        if op.is_link:
            self._transfer_link(op, src, dst, remove_source=remove_source)
            return
        tmp = At(dst.dir_fd, temp_name(op.id))
        copied = copy_to_temp(src, tmp, op.ident, self.checkpoint)
        op.hash = copied.digest
        self._unchanged_or_drop(op, src, tmp, "source changed during copy; not copied")
        dst = self._place(op, tmp, dst)
        fsync_dir(dst.dir_fd)
        self.checkpoint("after_place")
        op.dst_dev, op.dst_inode = copied.dev, copied.ino
        if remove_source:
            self._unlink_source_or_undo_copy(op, src, dst, copied.dev, copied.ino)
        self._finish_restore(op)
        op.state = "done"

    def _transfer_link(self, op: Op, src: At, dst: At, *, remove_source: bool) -> None:
        """Symlinks travel as links: a new link with the same target."""
        target = os.readlink(src.name, dir_fd=src.dir_fd)
        while True:
            try:
                os.symlink(target, dst.name, dir_fd=dst.dir_fd)
                break
            except FileExistsError:
                dst = self._conflict(op, dst) or dst
        st = os.stat(dst.name, dir_fd=dst.dir_fd, follow_symlinks=False)
        fsync_dir(dst.dir_fd)
        self.checkpoint("after_place")
        op.dst_dev, op.dst_inode = st.st_dev, st.st_ino
        if remove_source:
            if not self._source_unchanged(op, src):
                self._remove_if_same(op, dst, st.st_dev, st.st_ino)
                raise OpFailed("source changed while moving; nothing moved")
            self._unlink_source_or_undo_copy(op, src, dst, st.st_dev, st.st_ino)
        self._finish_restore(op)
        op.state = "done"

    def _unlink_source_or_undo_copy(self, op: Op, src: At, dst: At, dev: int, ino: int) -> None:
        """A move whose source cannot be removed (read-only, permissions, or it is not the
        journaled file any more) is no move: take the copy back out rather than leave the
        file in two places."""
        try:
            removed = self._unlink_source(op, src)
        except (OSError, OpFailed) as exc:
            self._remove_if_same(op, dst, dev, ino)
            reason = describe_error(exc)
            raise OpFailed(f"cannot remove the source ({reason}); the copy was removed") from None
        if not removed:
            self._remove_if_same(op, dst, dev, ino)
            raise OpFailed(
                "the source changed as it was removed; the copy was removed, source kept"
            )

    def _remove_if_same(self, op: Op, at: At, dev: int, ino: int) -> None:
        self._remove_checked(op, at, lambda st: (st.st_dev, st.st_ino) == (dev, ino))

    def _finish_restore(self, op: Op) -> None:
        """A restore from the trash drops its trashinfo once the file is back."""
        info = op.extra.get("restore_info")
        if info:
            remove_quietly(self._at(info))

    # --- links -------------------------------------------------------------------------
    def _symlink(self, op: Op) -> None:
        assert op.dst is not None
        dst = self._at(op.dst, create=True)
        while True:
            try:
                os.symlink(op.extra["target"], dst.name, dir_fd=dst.dir_fd)
                break
            except FileExistsError:
                dst = self._conflict(op, dst) or dst
        self.checkpoint("after_place")
        st = os.stat(dst.name, dir_fd=dst.dir_fd, follow_symlinks=False)
        op.dst_dev, op.dst_inode = st.st_dev, st.st_ino
        op.state = "done"

    def _hardlink(self, op: Op) -> None:
        assert op.dst is not None and op.ident is not None
        src = self._source(op)
        dst = self._at(op.dst, create=True)
        while True:
            try:
                os.link(src.name, dst.name, src_dir_fd=src.dir_fd, dst_dir_fd=dst.dir_fd,
                        follow_symlinks=False)  # fmt: skip
                break
            except FileExistsError:
                dst = self._conflict(op, dst) or dst
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    raise OpFailed("cannot hardlink across file systems") from None
                raise
        self.checkpoint("after_place")
        st = lstat_at(dst)
        if st is not None and not is_same_file(st, op):  # linked what replaced the source
            os.unlink(dst.name, dir_fd=dst.dir_fd)
            raise OpSkipped(f"the source was replaced as it was linked; not linked: {op.src}")
        op.dst_dev, op.dst_inode = op.ident.dev, op.ident.ino
        op.state = "done"

    # --- trash, delete -----------------------------------------------------------------
    def _trash(self, op: Op) -> None:
        assert op.dst is not None and op.ident is not None
        trash = self._usable_trash(op)
        src = self._source(op)
        self._reserve_info(op, trash)
        dst: At | None = None
        try:
            dst = self._at(op.dst)
            while True:
                try:
                    rename_noreplace(src, dst)
                    break
                except FileExistsError:
                    self._next_trash_name(op)  # an orphan in files/: take another name
                    dst = self._at(op.dst)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    self._transfer(op, src, remove_source=True)
                    return
            self.checkpoint("after_place")
            self._check_placed(op, src, dst)
        except BaseException:
            if dst is None or not self._is_ours(op, dst):
                remove_quietly(self._at(op.extra["trashinfo"]))
            raise
        op.state = "done"

    def _is_ours(self, op: Op, dst: At) -> bool:
        st = lstat_at(dst)
        return st is not None and op.ident is not None and st.st_ino == op.ident.ino

    def _usable_trash(self, op: Op) -> TrashDir:
        """The planned trash, created if needed; else the home trash (by copy)."""
        trash = TrashDir.holding(op.dst or "")
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
        anchor_trash(self.dirs, op)
        return home

    def _reserve_info(self, op: Op, trash: TrashDir) -> None:
        while True:
            try:
                write_info(self._at(op.extra["trashinfo"]), op.src, trash)
                return
            except FileExistsError:
                name = free_name(trash, os.path.basename(op.src), self.claimed)
                self._retarget_trash(op, trash, name)

    def _next_trash_name(self, op: Op) -> None:
        """files/NAME is taken after all: give up our info there and reserve another."""
        trash = TrashDir.holding(op.dst or "")
        remove_quietly(self._at(op.extra["trashinfo"]))
        self._retarget_trash(op, trash, free_name(trash, os.path.basename(op.src), self.claimed))
        self._reserve_info(op, trash)

    def _retarget_trash(self, op: Op, trash: TrashDir, name: str) -> None:
        op.dst = trash.file_path(name)
        op.extra["trashinfo"] = trash.info_path(name)
        retarget_op(self.db, op.id, op.dst, op.extra)
        self.claimed.add(op.dst)

    def _delete(self, op: Op) -> None:
        src = self._at(op.src)
        st = lstat_at(src)
        if st is None:
            raise OpFailed(f"already gone: {op.src}")
        if identity(st) != op.ident or not self._unlink_source(op, src):
            raise OpFailed(f"changed since it was checked, not removed: {op.src}")
        op.state = "done"

    # --- archive -----------------------------------------------------------------------
    def _archive(self, op: Op) -> None:
        assert op.dst is not None
        if op.extra.get("extract"):
            self._extract(op)
            return
        src = self._source(op)
        dst = self._at(op.dst, create=True)
        fmt, member = op.extra["format"], op.extra["member"]
        tmp = At(dst.dir_fd, temp_name(op.id))
        src_fd = open_source(src, op.ident)
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
        self._unchanged_or_drop(op, src, tmp, "source changed while archiving; not archived")
        dst = self._place(op, tmp, dst)
        fsync_dir(dst.dir_fd)
        self.checkpoint("after_place")
        st = os.stat(dst.name, dir_fd=dst.dir_fd, follow_symlinks=False)
        op.dst_dev, op.dst_inode = st.st_dev, st.st_ino
        if not op.extra.get("keep_source"):
            self._unlink_source_or_undo_copy(op, src, dst, st.st_dev, st.st_ino)
        op.state = "done"

    def _extract(self, op: Op) -> None:
        """Undo of an archive: the member back to its path, verified; then the archive goes."""
        assert op.dst is not None
        src = self._source(op)
        dst = self._at(op.dst, create=True)
        tmp = At(dst.dir_fd, temp_name(op.id))
        try:
            fmt, member = op.extra["format"], op.extra["member"]
            digest = extract_member(src, fmt, member, tmp, self.checkpoint)
        except BaseException:
            remove_quietly(tmp)
            raise
        if op.hash and digest != op.hash:
            remove_quietly(tmp)
            raise OpFailed("the archive member does not match the journaled hash; not restored")
        dst = self._place(op, tmp, dst)
        fsync_dir(dst.dir_fd)
        self.checkpoint("after_place")
        st = os.stat(dst.name, dir_fd=dst.dir_fd, follow_symlinks=False)
        op.dst_dev, op.dst_inode = st.st_dev, st.st_ino
        op.state = "done"
        try:
            if not self._unlink_source(op, src):
                op.note = f"the archive changed since; kept {op.src}"
        except (OSError, OpFailed) as exc:
            op.note = f"restored; the archive could not be removed ({describe_error(exc)})"
