"""Roots: the directories clerk may read and write, and the lookup from a path to its root.

A leaf module: the rules, fileops, the store and the daemon all need roots, and none of
them should import the rule language to get them. (`clerk.rules.model` re-exports
these names for plugins written against it.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from clerk.errors import Location

DEFAULT_IGNORE: tuple[str, ...] = ("*.part", "*.crdownload", ".~lock*", "*.tmp", ".clerk-tmp-*")


@dataclass(frozen=True)
class Root:
    """A directory clerk may read and write; every path it touches is inside one."""

    name: str
    path: str  # absolute, user-expanded, normalized; no trailing slash
    recursive: bool = True
    watch: bool = True
    poll: bool = False
    settle: float = 5.0
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    follow_symlinks: bool = False
    where: Location | None = field(default=None, compare=False)

    def contains(self, path: str) -> bool:
        return path == self.path or path.startswith(self.path.rstrip("/") + "/")


class RootSet:
    """Named roots, with the lookup from an absolute path to (root, relpath)."""

    def __init__(self, roots: Iterable[Root] = ()):
        self._by_name: dict[str, Root] = {r.name: r for r in roots}
        # most specific first, so a root nested in another claims its own files
        self._by_depth = sorted(self._by_name.values(), key=lambda r: len(r.path), reverse=True)

    def __getitem__(self, name: str) -> Root:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Root]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Root | None:
        return self._by_name.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def locate(self, path: str) -> tuple[Root, str] | None:
        """The most specific root holding `path` (absolute, normalized) and the relpath."""
        for root in self._by_depth:
            base = root.path
            if path.startswith(base):
                if len(path) == len(base):
                    return root, "."
                if path[len(base)] == "/":
                    return root, path[len(base) + 1 :]
                if base == "/":
                    return root, path[1:]
        return None
