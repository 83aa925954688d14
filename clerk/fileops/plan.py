"""Turn an `OpRequest` into journal-ready `Op`s: validate, check roots, resolve conflicts.

Planning touches nothing: one lstat of the source, an existence check of the
destination, and a check per destination directory (cached for the call) that it does
not lead out of the roots, made by opening it the way placement will
(`clerk.fileops.beneath`). Conflicts are predicted here (and in dry runs, reported);
placement re-checks atomically later.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

from clerk.fileops.archive import archive_format, check_member_name, member_digest
from clerk.fileops.beneath import Beneath
from clerk.fileops.op import Op
from clerk.fileops.primitives import (
    At,
    Identity,
    hash_file,
    identity,
    lstat_at,
    lstat_or_none,
    needs_normpath,
    numbered_names,
    parent_dir,
    same_content,
)
from clerk.fileops.projection import Projection
from clerk.fileops.trash import TrashFinder, free_name
from clerk.fileops.types import CONFLICT_POLICIES, OpRequest
from clerk.roots import RootSet

KINDS = frozenset({"move", "copy", "rename", "symlink", "hardlink", "trash", "delete", "archive"})
_MISSING = object()


def free_sibling(path: str, claimed: set[str], exists: Callable[[str], bool] | None = None) -> str:
    """The first free "name (N).ext" next to `path` (not existing, not claimed)."""
    directory, name = os.path.split(path)
    exists = exists or os.path.lexists
    for candidate in numbered_names(name):
        option = os.path.join(directory, candidate)
        if option not in claimed and not exists(option):
            return option
    raise FileExistsError(f"no free name for {path}")


class Planner:
    """Plans one `execute()` call; `reset()` between calls (caches, claimed names).

    `projection`: a dry run's picture of the disk after the ops it planned, asked
    instead of the disk when predicting (see `clerk.fileops.projection`).
    """

    def __init__(
        self, roots: RootSet, finder: TrashFinder, dirs: Beneath, projection: Projection | None
    ):
        self.roots = roots
        self.finder = finder
        self.dirs = dirs
        self.projection = projection
        self._dir_verdict: dict[str, str | None] = {}
        self.claimed: set[str] = set()  # destinations taken by ops of this round

    def reset(self) -> None:
        # per call: a directory checked a minute ago may be a symlink by now
        self._dir_verdict.clear()
        self.claimed.clear()

    def round_done(self, ops: list[Op]) -> None:
        """A round of ops was performed (or, in a dry run, planned): the disk (or the
        projection) holds what they took and freed, so their claims are let go (a name
        an op took and the next op freed is free again for a later file)."""
        if self.projection is not None:
            for op in ops:
                if op.state == "planned":
                    self.projection.apply(op)
        self.claimed.clear()

    def _exists(self, path: str) -> bool:
        if self.projection is not None:
            return self.projection.exists(path)
        return os.path.lexists(path)

    def _content_at(self, path: str) -> At | None:
        """`path` for reading, as it would be when predicting: where its content is."""
        if self.projection is not None:
            where = self.projection.content(path)
            if where is None:
                return None
            path = where
        return self._at(path)

    def plan(
        self,
        req: OpRequest,
        index: int,
        *,
        src: str | None = None,
        assume: Op | None = None,
        trusted: bool = False,
        predict: bool = False,
    ) -> list[Op]:
        """Ops for one request: [op], or [trash-of-old-dst, op] for overwrite.

        `src` replaces the request's source (a chain), `assume` stands in for a source
        that does not exist yet (a chain in a dry run), `trusted` skips the root check
        (undo and redo: the paths come from the journal). `predict` checks conflicts
        now (dry runs); otherwise only overwrite and dedupe look at the destination
        here, and the no-replace placement finds the rest atomically, saving a stat.
        """
        op = Op(
            kind=req.kind, src=src or req.src, dst=req.dst, index=index,
            on_conflict=req.on_conflict, rule=req.rule, file_id=req.file_id,
            options=req.options, trusted=trusted,
        )  # fmt: skip
        problem = self._check_request(op)
        if problem is not None:
            return [op.fail(problem)]
        if not self._stat_source(op, assume, None if src else req.source_stat):
            return [op]
        if op.kind == "delete":
            if op.options.get("permanent") is not True:
                return [op.fail("delete needs permanent: true (use trash to keep it recoverable)")]
            return [op]
        if op.kind == "trash":
            return [self.plan_trash(op)]
        return self._plan_placement(op, predict)

    # --- checks ------------------------------------------------------------------------
    def _check_request(self, op: Op) -> str | None:
        if op.kind not in KINDS:
            return f"unknown operation kind {op.kind!r}"
        if op.on_conflict not in CONFLICT_POLICIES:
            return f"unknown on_conflict {op.on_conflict!r} (one of {', '.join(CONFLICT_POLICIES)})"
        if op.src[:1] != "/":
            return f"source must be an absolute path: {op.src}"
        if op.kind in ("trash", "delete"):
            op.dst = None
            return None
        if not op.dst:
            return f"{op.kind} needs a destination"
        if op.dst[:1] != "/":
            return f"destination must be an absolute path: {op.dst}"
        if needs_normpath(op.dst):
            op.dst = os.path.normpath(op.dst)
        return None

    def _stat_source(self, op: Op, assume: Op | None, known: os.stat_result | None) -> bool:
        if assume is not None:
            op.ident, op.is_link = assume.ident, assume.is_link
            if "link" in assume.extra:
                op.extra["link"] = assume.extra["link"]
            return True
        st = known if known is not None else lstat_or_none(op.src)
        if st is None:
            op.fail(f"source does not exist: {op.src}")
            return False
        is_link = stat.S_ISLNK(st.st_mode)
        if not (stat.S_ISREG(st.st_mode) or (is_link and op.kind != "archive")):
            op.skip(f"not a regular file: {op.src}")
            return False
        op.ident, op.is_link = identity(st), is_link
        if is_link:
            op.extra["link"] = os.readlink(op.src)
        return True

    def outside_roots(self, dst: str) -> str | None:
        """Why `dst` may not be written (outside every root, also after symlinks)."""
        parent = parent_dir(dst)
        verdict: Any = self._dir_verdict.get(parent, _MISSING)
        if verdict is _MISSING:
            verdict = self._check_dir(parent)
            self._dir_verdict[parent] = verdict
        return verdict

    def _check_dir(self, parent: str) -> str | None:
        if self.roots.locate(parent) is None:
            return f"destination {parent} is outside every root"
        escape = self.dirs.escape(parent)
        return None if escape is None else f"destination {escape}"

    def _at(self, path: str) -> At | None:
        """`path` by its opened directory, for reading; None if that cannot be opened."""
        try:
            return self.dirs.parent(path)
        except OSError:
            return None

    # --- placement kinds ---------------------------------------------------------------
    def _plan_placement(self, op: Op, predict: bool) -> list[Op]:
        assert op.dst is not None
        if op.kind in ("move", "rename"):
            op.kind = "rename" if parent_dir(op.dst) == parent_dir(op.src) else "move"
        problem = self._kind_details(op)
        if problem is None and not op.trusted:
            problem = self.outside_roots(op.dst)
        if problem is not None:
            return [op.fail(problem)]
        if op.dst == op.src:
            return [op.skip("already at the destination")]
        look = predict or op.on_conflict in ("overwrite", "dedupe")
        if op.dst in self.claimed or (look and self._exists(op.dst)):
            return self._resolve_conflict(op)
        self.claimed.add(op.dst)
        return [op]

    def _kind_details(self, op: Op) -> str | None:
        assert op.dst is not None
        if op.kind == "symlink":
            relative = bool(op.options.get("relative"))
            target = os.path.relpath(op.src, os.path.dirname(op.dst)) if relative else op.src
            op.extra["target"] = target
        elif op.kind == "archive":
            fmt = archive_format(op.dst)
            if fmt is None:
                return f"unknown archive format for {op.dst} (.zip .tar .tar.gz .tar.bz2 .tar.xz)"
            member = os.path.basename(op.src)
            op.extra.update(format=fmt, member=member)
            if op.options.get("keep_source"):
                op.extra["keep_source"] = True
            return check_member_name(fmt, member)
        return None

    # --- conflicts ---------------------------------------------------------------------
    def _resolve_conflict(self, op: Op) -> list[Op]:
        assert op.dst is not None
        policy = op.on_conflict
        if policy == "skip":
            return [op.skip(f"destination exists: {op.dst}")]
        if policy == "fail":
            return [op.fail(f"destination exists: {op.dst}")]
        if policy == "overwrite":
            return self._plan_overwrite(op)
        if policy == "dedupe" and op.dst not in self.claimed:
            duplicate = self._plan_dedupe(op)
            if duplicate is not None:
                return [duplicate]
        return [self.rename_away(op)]

    def rename_away(self, op: Op) -> Op:
        assert op.dst is not None
        wanted = op.dst
        op.dst = free_sibling(wanted, self.claimed, self._exists)
        self.claimed.add(op.dst)
        op.note = f"renamed to {os.path.basename(op.dst)}: {os.path.basename(wanted)} exists"
        return op

    def _plan_overwrite(self, op: Op) -> list[Op]:
        assert op.dst is not None
        dst = self._content_at(op.dst)
        st = lstat_at(dst) if dst is not None else None
        if dst is None or st is None:  # claimed by an earlier op of this call, not there yet
            return [op.fail(f"another operation of this batch writes {op.dst}")]
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            return [op.fail(f"destination is not a regular file, not overwritten: {op.dst}")]
        old = Op(
            kind="trash", src=op.dst, dst=None, rule=op.rule, ident=identity(st),
            is_link=stat.S_ISLNK(st.st_mode), note=f"replaced by {op.src}",
        )  # fmt: skip
        if old.is_link:
            old.extra["link"] = os.readlink(dst.name, dir_fd=dst.dir_fd)
        self.plan_trash(old)
        op.displaced = old
        op.note = "replaced the existing destination (moved to trash)"
        self.claimed.add(op.dst)
        return [old, op]

    def _plan_dedupe(self, op: Op) -> Op | None:
        """A duplicate source is trashed (move, archive) or left alone (copy, links)."""
        assert op.dst is not None
        src, dst = self._content_at(op.src), self._content_at(op.dst)
        if src is None or dst is None:
            return None
        if op.kind == "archive":
            fmt, member = op.extra["format"], op.extra["member"]
            digest = member_digest(dst, fmt, member)
            if digest is None or digest != hash_file(src):
                return None
            if op.extra.get("keep_source"):
                return op.skip(f"already archived in {op.dst}")
        elif op.kind == "symlink":
            target = op.extra["target"]
            st = lstat_at(dst)
            is_link = st is not None and stat.S_ISLNK(st.st_mode)
            if is_link and os.readlink(dst.name, dir_fd=dst.dir_fd) == target:
                return op.skip(f"link already exists: {op.dst}")
            return None
        elif op.is_link or not same_content(src, dst):
            return None
        if op.kind in ("copy", "hardlink"):
            return op.skip(f"identical file already at {op.dst}")
        duplicate_of = op.dst
        op.kind, op.dst, op.extra = "trash", None, {}
        self.plan_trash(op)
        op.note = f"duplicate of {duplicate_of}; moved to trash"
        return op

    # --- trash -------------------------------------------------------------------------
    def plan_trash(self, op: Op) -> Op:
        """Pick the trash and a free name there; the trashinfo reserves it when acting."""
        assert op.ident is not None
        trash = self.finder.for_file(op.src, op.ident.dev)
        name = free_name(trash, os.path.basename(op.src), self.claimed, self._exists)
        op.kind = "trash"
        op.dst = trash.file_path(name)
        op.extra["trashinfo"] = trash.info_path(name)
        self.claimed.add(op.dst)
        return op


def replay_request(row: dict[str, Any]) -> OpRequest:
    """The request that would do a journaled op again (for redo)."""
    extra = row["extra"]
    options: dict[str, Any] = {}
    if extra.get("keep_source"):
        options["keep_source"] = True
    if row["kind"] == "symlink" and extra.get("target") and not os.path.isabs(extra["target"]):
        options["relative"] = True
    if row["kind"] == "delete":
        options["permanent"] = True
    return OpRequest(
        kind=row["kind"], src=row["src"], dst=None if row["kind"] == "trash" else row["dst"],
        on_conflict="fail", rule=row["rule"], file_id=row["file_id"], options=options,
    )  # fmt: skip


def source_identity(row: dict[str, Any]) -> Identity | None:
    if row.get("src_dev") is None:
        return None
    return Identity(row["src_dev"], row["src_inode"], row["size"], row["mtime_ns"])
