"""What callers ask fileops to do, and what they get back."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

OpKind = Literal[
    "move", "copy", "rename", "symlink", "hardlink", "trash", "delete", "archive",
]  # fmt: skip
Conflict = Literal["skip", "rename", "overwrite", "dedupe", "fail"]

#: the kinds that take the file itself elsewhere: an op chained after one of them starts
#: from its destination; after any other kind (a copy, a link, an archive that keeps the
#: source) the file is still where that op found it
RELOCATING: frozenset[str] = frozenset({"move", "rename"})
CONFLICT_POLICIES: tuple[str, ...] = ("skip", "rename", "overwrite", "dedupe", "fail")
OpStatus = Literal["planned", "done", "skipped", "failed"]


@dataclass
class OpRequest:
    """One file operation to journal and perform.

    `src` and `dst` are absolute paths (str, surrogate-escaped for non-UTF-8 names).
    `chain` is the index, in the same `execute()` call, of an earlier request on the same
    file: this one is skipped if that one did not complete, and starts where that one
    left the file: its actual destination (which a conflict may have changed) after a
    move or rename (`RELOCATING`), its source after any other kind.
    `source_stat` is an lstat of `src` the caller just took (a walk's): planning uses
    it as the source's identity instead of taking another.
    """

    kind: OpKind
    src: str
    dst: str | None = None
    on_conflict: Conflict = "rename"
    rule: str | None = None
    file_id: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    chain: int | None = None
    source_stat: os.stat_result | None = None


@dataclass
class OpResult:
    """The outcome of one request (or of one undo step)."""

    kind: OpKind
    src: str
    dst: str | None
    status: OpStatus
    op_id: int | None = None
    error: str | None = None
    rule: str | None = None
    file_id: int | None = None
    note: str | None = None  # e.g. "renamed to avoid a conflict", "duplicate of ..."
    dst_dev: int | None = None
    dst_inode: int | None = None
    undoes: int | None = None
    # overwrite: the journaled trash op that moved the existing destination away first
    displaced: OpResult | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("done", "planned")
