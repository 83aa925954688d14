"""What a dry run's disk would look like: the names its planned ops take and free.

A dry run changes nothing, yet each op it plans must meet the world the ops before it
would have left, as a real run's op does: a name an earlier op freed (a file moved on,
trashed) is free, a name it took is taken, and a file a planned move or copy would put
somewhere has the content of the file it comes from, which is still where it was.
`Projection` keeps that picture for one dry run (every batch of it), and the planner
asks it instead of the disk when it predicts.
"""

from __future__ import annotations

import os

from clerk.fileops.op import Op

#: the content of a file the dry run would make but cannot read (an archive)
UNKNOWN = ""


class Projection:
    def __init__(self) -> None:
        self._placed: dict[str, str] = {}  # path -> the path on disk holding its content
        self._gone: set[str] = set()  # paths on disk the planned ops took away

    def exists(self, path: str) -> bool:
        if path in self._placed:
            return True
        return path not in self._gone and os.path.lexists(path)

    def content(self, path: str) -> str | None:
        """Where, on disk, what `path` would hold is now; None when it would not exist
        (or its content cannot be read, `UNKNOWN`)."""
        found = self._placed.get(path)
        if found is not None:
            return found or None
        return path if self.exists(path) else None

    def apply(self, op: Op) -> None:
        """`op` (planned) is done, as far as later ops can tell."""
        kind, src, dst = op.kind, op.src, op.dst
        if dst is not None:
            # what was on disk there stays gone (an overwrite trashed it) when this leaves
            self._placed[dst] = UNKNOWN if kind == "archive" else self._placed.get(src, src)
        keeps_source = kind in ("copy", "hardlink", "symlink") or (
            kind == "archive" and op.extra.get("keep_source")
        )
        if not keeps_source:
            self._vacate(src)

    def _vacate(self, path: str) -> None:
        if self._placed.pop(path, None) is None:
            self._gone.add(path)
