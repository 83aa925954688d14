"""Journaled, crash-safe file operations: execute, recover, undo (see docs/safety.md).

`FileOps` is imported lazily: `clerk.fileops.types` is imported by the plugin API,
and that must not pull in the store and the whole machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clerk.fileops.types import CONFLICT_POLICIES, OpRequest, OpResult

if TYPE_CHECKING:
    from clerk.fileops.execute import FileOps

__all__ = ["CONFLICT_POLICIES", "FileOps", "OpRequest", "OpResult"]


def __getattr__(name: str) -> Any:
    if name == "FileOps":
        from clerk.fileops.execute import FileOps

        return FileOps
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
