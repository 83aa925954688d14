"""Walk roots for candidate files: one pass, lstat once, skip what clerk never touches.

Skipped: names matching the root's ignore globs, clerk's own temp files, symlinks
(unless the root says `follow_symlinks: true`), FIFOs, sockets and devices, directories
that are other roots (they are walked as themselves), and trash directories.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from clerk.rules.model import Root, RootSet
from clerk.rules.patterns import globs_pattern

ALWAYS_IGNORED = (".clerk-tmp-*",)
SKIPPED_DIRS = (".Trash-*", ".Trash")


@dataclass(slots=True)
class Candidate:
    root: Root
    path: str
    relpath: str
    st: os.stat_result


@lru_cache(maxsize=256)
def ignore_matcher(globs: tuple[str, ...]) -> Callable[[str], bool]:
    """One compiled pattern for all of a root's ignore globs."""
    pattern = globs_pattern((*globs, *ALWAYS_IGNORED))
    return lambda name: pattern.fullmatch(name) is not None


def walk_root(
    root: Root,
    roots: RootSet,
    *,
    start: str | None = None,
    on_error: Callable[[str, OSError], None] | None = None,
) -> Iterator[Candidate]:
    """Yield every candidate file under `root` (or under `start`, a dir inside it)."""
    ignored = ignore_matcher(root.ignore)
    other_roots = {r.path for r in roots if r.name != root.name and root.contains(r.path)}
    skip_dir = ignore_matcher(SKIPPED_DIRS)
    stack = [start or root.path]
    base_len = len(root.path.rstrip("/")) + 1
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as exc:
            if on_error is not None:
                on_error(directory, exc)
            continue
        subdirs = []
        for entry in entries:
            name = entry.name
            if ignored(name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    if not root.follow_symlinks:
                        continue
                    st = entry.stat(follow_symlinks=True)
            except OSError as exc:
                if on_error is not None:
                    on_error(entry.path, exc)
                continue
            mode = st.st_mode
            if stat.S_ISREG(mode):
                yield Candidate(root, entry.path, entry.path[base_len:], st)
            elif (
                stat.S_ISDIR(mode)
                and root.recursive
                and entry.path not in other_roots
                and not skip_dir(name)
            ):
                subdirs.append(entry.path)
        # reversed so that directories are visited in listing order
        stack.extend(reversed(subdirs))


def candidate_for(path: str, roots: RootSet) -> Candidate | None:
    """The candidate for one explicit path, or None if it is not a file inside a root."""
    path = os.path.normpath(os.path.abspath(path))
    located = roots.locate(path)
    if located is None:
        return None
    root, relpath = located
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) and root.follow_symlinks:
            st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return Candidate(root, path, relpath, st)
