"""Which files of a root clerk handles, and the walk that finds them.

One decision, `accepts(root, relpath)`, asked by everything that meets a path: the walk
(`clerk scan`, the daemon's reconcile, lifecycle sweeps), the daemon's watch events and
explicit paths (`clerk scan PATH`, `clerk explain PATH`). A path is handled when no part
of it matches the root's ignore globs (a file's name, or any directory's name above it:
an ignored directory's whole tree is skipped) or clerk's own temp files, no directory
above it is a trash directory, and, in a root that is not recursive, it is at the top.
The walk asks the same questions one name at a time as it goes down (`_Selection`).

What a path is decides the rest, from its lstat: symlinks are skipped (unless the root
says `follow_symlinks: true`, and then only links clerk's own user made are followed:
`foreign_link`; `followed` is the one answer, the walk's, the daemon's settler's and
explicit paths'), and so are FIFOs, sockets and devices; directories that are other
roots are walked as themselves.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from clerk.errors import ClerkError
from clerk.roots import Root, RootSet
from clerk.rules.patterns import glob_pattern, globs_pattern

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


class _Selection:
    """A root's `accepts`, one name at a time: the walk asks it per entry."""

    def __init__(self, ignore: tuple[str, ...], recursive: bool):
        self.ignore = ignore
        self.ignored = ignore_matcher(ignore)
        self.trash = ignore_matcher(SKIPPED_DIRS)
        self.recursive = recursive

    def keeps(self, name: str) -> bool:
        """A file or directory of this name is looked at (its name is not ignored)."""
        return not self.ignored(name)

    def enters(self, name: str) -> bool:
        """The walk goes down into a directory of this name."""
        return self.recursive and not self.ignored(name) and not self.trash(name)

    def rejection(self, relpath: str, is_dir: bool) -> str | None:
        """Why the path is not handled, or None when it is."""
        if relpath == ".":
            return None if is_dir else "a root is not a file"
        parts = relpath.split("/")
        above = parts if is_dir else parts[:-1]
        if above and not self.recursive:
            return "the root is not recursive: only its top level is handled"
        last = len(parts) - 1
        for index, part in enumerate(parts):
            if self.ignored(part):
                globs = (*self.ignore, *ALWAYS_IGNORED)
                glob = next((g for g in globs if glob_pattern(g).fullmatch(part)), "?")
                what = "directory" if index < last or is_dir else "name"
                return f"{what} {part!r} matches the ignore glob {glob!r}"
        for part in above:
            if self.trash(part):
                return f"{part!r} is a trash directory"
        return None


@lru_cache(maxsize=256)
def _selection(ignore: tuple[str, ...], recursive: bool) -> _Selection:
    return _Selection(ignore, recursive)


def selection(root: Root) -> _Selection:
    return _selection(root.ignore, root.recursive)


def rejection(root: Root, relpath: str, *, is_dir: bool = False) -> str | None:
    """Why clerk does not handle `relpath` (a file, or with `is_dir` a directory whose
    files would be walked) of `root`, or None when it does. By the path alone."""
    return selection(root).rejection(relpath, is_dir)


def refuse_ignored(path: str, root: Root, relpath: str, *, is_dir: bool = False) -> None:
    """For a path a person named (`clerk scan PATH`, `clerk explain PATH`): ClerkError
    saying why, when the root does not handle it."""
    why = rejection(root, relpath, is_dir=is_dir)
    if why is not None:
        raise ClerkError(f"{path} is ignored by root {root.name}: {why}")


def accepts(root: Root, relpath: str, *, is_dir: bool = False) -> bool:
    """Whether clerk handles the file `relpath` of `root` (with `is_dir`: walks into the
    directory `relpath`). The one answer for the walk, the daemon and explicit paths."""
    return selection(root).rejection(relpath, is_dir) is None


def walk_root(
    root: Root,
    roots: RootSet,
    *,
    start: str | None = None,
    on_error: Callable[[str, OSError], None] | None = None,
) -> Iterator[Candidate]:
    """Yield every candidate file under `root` (or under `start`, a dir inside it, if
    `accepts` walks into it)."""
    chosen = selection(root)
    other_roots = {r.path for r in roots if r.name != root.name and root.contains(r.path)}
    base_len = len(root.path.rstrip("/")) + 1
    if (
        start is not None
        and start != root.path
        and not (root.contains(start) and accepts(root, start[base_len:], is_dir=True))
    ):
        return  # a directory the walk of the whole root would not go into
    top = start or root.path
    stack = [top]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except FileNotFoundError as exc:
            # a directory gone since it was listed (another scan, the daemon or a user
            # moved it): nothing there to handle, and no error
            if on_error is not None and directory == top:
                on_error(directory, exc)
            continue
        except OSError as exc:
            if on_error is not None:
                on_error(directory, exc)
            continue
        subdirs = []
        for entry in entries:
            name = entry.name
            if not chosen.keeps(name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone since it was listed: someone else moved it; not an error
            except OSError as exc:
                if on_error is not None:
                    on_error(entry.path, exc)
                continue
            if stat.S_ISLNK(st.st_mode):
                try:
                    target = followed(root, entry.path, st)
                except OSError as exc:  # another user's link, a dangling one: worth saying
                    if on_error is not None:
                        on_error(entry.path, exc)
                    continue
                if target is None:
                    continue
                st = target
            mode = st.st_mode
            if stat.S_ISREG(mode):
                yield Candidate(root, entry.path, entry.path[base_len:], st)
            elif stat.S_ISDIR(mode) and chosen.enters(name) and entry.path not in other_roots:
                subdirs.append(entry.path)
        # reversed so that directories are visited in listing order
        stack.extend(reversed(subdirs))


def unreadable(path: str, exc: OSError) -> str:
    """What clerk says of an entry the walk could not look at (its `on_error`), or of a
    link it does not follow: one wording for `clerk scan`, reconcile, sweeps and the
    daemon's events."""
    return f"{path}: cannot read: {exc.strerror or exc}"


def foreign_link(st: os.stat_result) -> str | None:
    """Why a symlink (its lstat) is not followed, even in a root that follows symlinks:
    another user made it. Whoever may write a shared inbox could otherwise point clerk
    at any file clerk's user can read (its content would decide rules and fill
    templates: a private file's words in a destination name, a victim's file trashed as
    the "duplicate" of the attacker's copy) or lead the walk into their directory. Like
    the kernel's fs.protected_symlinks, but in every directory: only links of clerk's
    own user, or of root, are followed. None: followed."""
    if st.st_uid in (os.geteuid(), 0):
        return None
    return f"a symlink uid {st.st_uid} made: not followed (only clerk's own user's are)"


def followed(root: Root, path: str, st: os.stat_result) -> os.stat_result | None:
    """What clerk judges the entry at `path` of `root` by, given its lstat `st`: the lstat
    itself, or for a symlink the root follows, the stat of what it leads to. None: a
    symlink in a root that does not follow them (skipped without a word). OSError: a
    symlink the root follows but clerk does not, and why (another user made it:
    `foreign_link`; it leads nowhere). The one answer for the walk, the daemon's events
    and explicit paths."""
    if not stat.S_ISLNK(st.st_mode):
        return st
    if not root.follow_symlinks:
        return None
    refused = foreign_link(st)
    if refused is not None:
        raise PermissionError(errno.EPERM, refused, path)
    return os.stat(path)


def candidate_for(path: str, roots: RootSet) -> Candidate | None:
    """The candidate for one explicit path, or None if it is not a file inside a root
    that the root `accepts`."""
    try:
        return explicit_candidate(path, roots)
    except ClerkError:
        return None


def explicit_candidate(path: str, roots: RootSet) -> Candidate:
    """The candidate for one path a person named (`clerk explain PATH`); ClerkError says
    why there is none."""
    path = os.path.normpath(os.path.abspath(path))
    located = roots.locate(path)
    if located is None:
        raise ClerkError(f"{path} is not inside any root")
    root, relpath = located
    refuse_ignored(path, root, relpath)
    try:
        st = os.lstat(path)
        st = followed(root, path, st) or st  # a link the root does not follow: no file
    except OSError as exc:
        raise ClerkError(f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ClerkError(f"{path} is not a regular file")
    return Candidate(root, path, relpath, st)
