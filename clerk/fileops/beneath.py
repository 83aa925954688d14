"""Open directories beneath the roots so that the directory checked is the one written to.

A path is never handed to the kernel to resolve: a directory clerk writes into is
reached from an *anchor* (a root's directory, or a trash directory) one component at a
time, each opened with `O_NOFOLLOW | O_DIRECTORY` relative to the one before. A
component that is a symlink is read (`readlinkat`) and followed by clerk itself, and
only to a target inside an anchor; a symlink leading anywhere else raises
`OutsideRoots`. Callers then act with the directory's file descriptor (`renameat2`,
`mkdirat`, `linkat`, `unlinkat`, `openat`), so swapping a directory for a symlink
after the check changes nothing: the descriptor still names the checked directory.

Anchors themselves are configuration (a root's path, the trash) and may pass through
symlinks above them: that part of the file system belongs to whoever set clerk up.
Roots nested in other roots are reached through the outer root, so the outer root's
users cannot swap an inner root for a symlink either.

Descriptors are cached per `Beneath` until `close()` (fileops closes them at the end of
every call, so a daemon holds none while idle and never keeps a disk busy), with
`trim()` bounding how many stay open within a long call.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from clerk.fileops.primitives import At
from clerk.roots import RootSet

DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_SYMLINK_HOPS = 40  # as the kernel's own limit (ELOOP)
DEFAULT_CAPACITY = 128


class OutsideRoots(OSError):
    """A path leads, through a symlink or by its name, outside every root."""

    def __init__(self, message: str, *, link: str | None = None, target: str | None = None):
        super().__init__(errno.EPERM, message)
        self.link, self.target = link, target

    def __str__(self) -> str:
        return str(self.strerror)


def split_parent(path: str) -> tuple[str, str]:
    """'/a/b/c' -> ('/a/b', 'c'), for absolute normalized paths."""
    cut = path.rfind("/")
    return (path[:cut] or "/"), path[cut + 1 :]


def _inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


class _Anchor:
    """A directory trusted as given: a root's path (symlinks and all), or a trash dir."""

    __slots__ = ("creatable", "follow_last", "path", "real")

    def __init__(self, path: str, *, follow_last: bool, creatable: bool):
        self.path, self.follow_last, self.creatable = path, follow_last, creatable
        self.real: str | None = None

    def resolve(self) -> str:
        if self.real is None:
            if self.follow_last:
                self.real = os.path.realpath(self.path)
            else:  # a per-volume trash must itself be a directory, never a symlink
                parent, name = split_parent(self.path)
                self.real = os.path.join(os.path.realpath(parent), name)
        return self.real


class Beneath:
    """Opens directories beneath the roots (and registered trash directories) safely."""

    def __init__(self, roots: RootSet, *, capacity: int = DEFAULT_CAPACITY):
        self._anchors: dict[str, _Anchor] = {
            root.path: _Anchor(root.path, follow_last=True, creatable=True) for root in roots
        }
        self._capacity = capacity
        self._fds: dict[str, int] = {}  # real path -> O_PATH descriptor
        self._aliases: dict[str, str] = {}  # a path through an in-root symlink -> real path
        self._requested: dict[str, str] = {}  # a path as asked for -> real path
        self._by_path: list[_Anchor] = []
        self._by_real: list[tuple[str, _Anchor]] = []
        self._sort()

    def _sort(self) -> None:
        # the most specific anchor translates a path; the outermost one opens it
        self._by_path = sorted(self._anchors.values(), key=lambda a: len(a.path), reverse=True)
        self._by_real = []

    def add_anchor(self, path: str, *, follow_last: bool = True) -> None:
        """Trust `path` (a trash directory) as a place clerk may write beneath."""
        if path not in self._anchors:
            self._anchors[path] = _Anchor(path, follow_last=follow_last, creatable=False)
            self._sort()

    # --- the public calls --------------------------------------------------------------
    def open_dir(self, path: str, *, create: bool = False) -> int:
        """A descriptor of directory `path` (absolute, normalized), reached safely.

        `create` makes missing directories (mkdirat, then opened without following).
        Raises `OutsideRoots`, or the OSError of the component that failed
        (FileNotFoundError, NotADirectoryError, PermissionError ...). The descriptor
        belongs to this object: do not close it; it stays valid until `trim` or `close`.
        """
        real = self._requested.get(path)
        if real is None:
            real = self._requested[path] = self._translate(path)
        fd = self._fds.get(real)
        if fd is not None:
            return fd
        try:
            return self._open_real(real, create, 0)[0]
        except OutsideRoots as exc:
            if exc.link is None or exc.target is None:
                raise
            inner = _inside(real, exc.link)
            resolved = exc.target + real[len(exc.link) :] if inner else exc.target
            raise OutsideRoots(
                f"{path} resolves to {resolved}, outside every root", link=exc.link, target=resolved
            ) from None

    def parent(self, path: str, *, create: bool = False) -> At:
        """`path` as its last name in its opened directory."""
        cut = path.rfind("/")
        return At(self.open_dir(path[:cut] or "/", create=create), path[cut + 1 :])

    def escape(self, path: str) -> str | None:
        """Why directory `path` may not be written (it leads outside every root), or None.

        Only an escape is reported: a directory that does not exist yet (or cannot be
        opened) is for the operation itself to create or to fail on.
        """
        try:
            self.open_dir(path)
        except OutsideRoots as exc:
            return str(exc)
        except OSError:
            return None
        return None

    def trim(self) -> None:
        """Close the cached descriptors if there are many; call between operations."""
        if len(self._fds) > self._capacity:
            self.close()

    def close(self) -> None:
        """Close every descriptor; the anchors are resolved afresh on the next use."""
        fds, self._fds = self._fds, {}
        self._aliases.clear()
        self._requested.clear()
        for anchor in self._anchors.values():
            anchor.real = None
        self._by_real = []
        for fd in fds.values():
            os.close(fd)

    # --- the walk ----------------------------------------------------------------------
    def _translate(self, path: str) -> str:
        """`path` with its anchor's prefix replaced by the anchor's real path."""
        real = self._translate_or_none(path)
        if real is None:
            raise OutsideRoots(f"{path} is outside every root")
        return real

    def _translate_or_none(self, path: str) -> str | None:
        for anchor in self._by_path:
            base = anchor.path
            if _inside(path, base):
                real = anchor.resolve()
                rest = path[len(base) :] if base != "/" else path
                return real.rstrip("/") + rest if rest else real
        return None

    def _outermost(self, real: str) -> tuple[str, _Anchor] | None:
        if not self._by_real:
            pairs = [(anchor.resolve(), anchor) for anchor in self._anchors.values()]
            self._by_real = sorted(pairs, key=lambda pair: len(pair[0]))
        return next(((base, a) for base, a in self._by_real if _inside(real, base)), None)

    def _open_real(self, path: str, create: bool, hops: int) -> tuple[int, str]:
        """(descriptor, real path) of `path`: beneath an anchor's real path, maybe through
        symlinks that stay inside the anchors (then the real path differs)."""
        real = self._aliases.get(path, path)
        fd = self._fds.get(real)
        if fd is not None:
            return fd, real
        found = self._outermost(real)
        if found is None:
            raise OutsideRoots(f"{real} is outside every root")
        base, anchor = found
        if real == base:
            fd = self._fds[real] = self._open_anchor(anchor, real, create)
            return fd, real
        parent, name = split_parent(real)
        parent_fd, parent_real = self._open_real(parent, create, hops)
        child = os.path.join(parent_real, name)
        fd = self._fds.get(child)
        if fd is None:
            fd, opened = self._open_child(parent_fd, parent_real, name, create, hops)
            if opened == child:
                self._fds[child] = fd
            else:  # a symlink to another directory inside the roots: cached as its target
                self._aliases[child] = opened
                child = opened
        if child != path:
            self._aliases[path] = child
        return fd, child

    def _open_anchor(self, anchor: _Anchor, real: str, create: bool) -> int:
        try:
            return os.open(real, DIR_FLAGS)
        except FileNotFoundError:
            if not (create and anchor.creatable):
                raise
        # a root that does not exist yet is made from its configured path
        os.makedirs(anchor.path, exist_ok=True)
        anchor.real = None
        self._by_real = []
        if anchor.resolve() != real:
            raise OSError(errno.EAGAIN, f"root {anchor.path} moved while being created")
        return os.open(real, DIR_FLAGS)

    def _open_child(
        self, parent_fd: int, parent: str, name: str, create: bool, hops: int
    ) -> tuple[int, str]:
        path = os.path.join(parent, name)
        for _attempt in range(5):
            try:
                return os.open(name, DIR_FLAGS, dir_fd=parent_fd), path
            except FileNotFoundError:
                if not create:
                    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path) from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=parent_fd)
            except NotADirectoryError:
                followed = self._follow(parent_fd, path, name, create, hops)
                if followed is not None:
                    return followed
        # swapped back and forth under every attempt: refuse rather than guess
        raise OSError(errno.EAGAIN, "the directory keeps changing", path)

    def _follow(
        self, parent_fd: int, link: str, name: str, create: bool, hops: int
    ) -> tuple[int, str] | None:
        """`link` was not a directory: follow it if it is a symlink to one inside a root.

        None: it is a directory (again), or gone; the caller opens it afresh.
        """
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            return None
        if not stat.S_ISLNK(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), link)
        if hops >= MAX_SYMLINK_HOPS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), link)
        try:
            text = os.readlink(name, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):  # no longer a symlink
                return None
            raise
        target = os.path.normpath(os.path.join(split_parent(link)[0], text))
        if self._outermost(target) is None:
            # an absolute link may name a root by its configured path
            translated = self._translate_or_none(target)
            if translated is None or self._outermost(translated) is None:
                raise OutsideRoots(
                    f"{link} resolves to {target}, outside every root", link=link, target=target
                )
            target = translated
        return self._open_real(target, create, hops + 1)
