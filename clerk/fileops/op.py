"""`Op`: one operation as fileops plans, journals and performs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clerk.fileops.primitives import Identity
from clerk.fileops.types import OpResult
from clerk.store import to_db
from clerk.store.journal import encode_extra

# kinds whose data always travels through a temp file in the destination directory
TEMP_KINDS = frozenset({"copy", "archive"})


class OpFailed(Exception):
    """The op cannot be done; the message goes into the journal and the result."""


class OpSkipped(Exception):
    """The op is deliberately not done (a conflict policy said skip)."""


@dataclass(slots=True, eq=False)
class Op:
    """A planned operation: the journal row before acting, the result after."""

    kind: str
    src: str
    dst: str | None
    index: int = -1  # the request's position; -1 for a side op (overwrite's trash)
    on_conflict: str = "rename"
    rule: str | None = None
    file_id: int | None = None
    ident: Identity | None = None  # the source at intent time (lstat)
    is_link: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    undoes: int | None = None
    id: int = 0
    state: str = "pending"  # pending -> done | failed | skipped; or planned (dry run)
    error: str | None = None
    note: str | None = None
    dst_dev: int | None = None
    dst_inode: int | None = None
    hash: str | None = None
    displaced: Op | None = None  # overwrite: the trash op that moved the old dst away
    trusted: bool = False  # undo/redo: paths come from the journal, not from a template

    def fail(self, error: str) -> Op:
        self.state, self.error = "failed", error
        return self

    def skip(self, note: str) -> Op:
        self.state, self.note = "skipped", note
        return self

    def intent_row(self, batch: str, now: float) -> tuple[Any, ...]:
        """Values for journal.INTENT_COLUMNS, or the shorter PLAIN_COLUMNS when it can."""
        ident = self.ident
        final = self.state != "pending"
        if not final and not self.extra and self.undoes is None and ident and not self.hash:
            return (
                batch, self.kind, self.rule, self.file_id, to_db(self.src),
                None if self.dst is None else to_db(self.dst), self.on_conflict, ident.dev,
                ident.ino, ident.size, ident.mtime_ns, "pending", now,
            )  # fmt: skip
        return (
            batch, self.kind, self.rule, self.file_id, to_db(self.src),
            None if self.dst is None else to_db(self.dst), None, encode_extra(self.extra),
            self.on_conflict, ident and ident.dev, ident and ident.ino, ident and ident.size,
            ident and ident.mtime_ns, self.hash, self.state, self.error or self.note,
            self.undoes, now, now if final else None,
        )  # fmt: skip

    @property
    def plainly_moved(self) -> bool:
        """Done, same inode at the destination, nothing else to record."""
        ident = self.ident
        return (
            self.state == "done" and self.error is None and self.note is None
            and self.hash is None and ident is not None and self.dst_inode == ident.ino
            and self.dst_dev == ident.dev and self.kind in ("move", "rename")
        )  # fmt: skip

    def outcome_row(self, now: float) -> tuple[Any, ...]:
        return (
            self.state, self.error or self.note, self.dst_dev, self.dst_inode, self.hash,
            now, self.id,
        )  # fmt: skip

    def result(self) -> OpResult:
        return OpResult(
            kind=self.kind,  # type: ignore[arg-type]
            src=self.src,
            dst=self.dst,
            status=self.state,  # type: ignore[arg-type]
            op_id=self.id or None,
            error=self.error,
            rule=self.rule,
            file_id=self.file_id,
            note=self.note,
            dst_dev=self.dst_dev,
            dst_inode=self.dst_inode,
            undoes=self.undoes,
            displaced=self.displaced.result() if self.displaced is not None else None,
        )
