"""The freedesktop.org trash, implemented here so the journal knows where a file went.

A trashed file lives at `TRASH/files/NAME` with its record in
`TRASH/info/NAME.trashinfo`. The home trash (`$XDG_DATA_HOME/Trash`) takes files from
its own file system; files elsewhere go to `$topdir/.Trash-$uid` at their mount point
(created 0700), or, when that cannot be used, to the home trash by a verified copy.
The trashinfo file is created first with O_EXCL: it reserves NAME against other
trashing programs, as the spec asks.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from clerk.fileops.primitives import At, create_exclusive, lstat_or_none, numbered_names

INFO_SUFFIX = ".trashinfo"


@dataclass(frozen=True)
class TrashDir:
    """One trash directory; `topdir` is set for a per-volume trash (relative `Path=`)."""

    path: str
    topdir: str | None = None

    @property
    def files(self) -> str:
        return os.path.join(self.path, "files")

    @property
    def info(self) -> str:
        return os.path.join(self.path, "info")

    def file_path(self, name: str) -> str:
        return os.path.join(self.files, name)

    def info_path(self, name: str) -> str:
        return os.path.join(self.info, name + INFO_SUFFIX)

    @property
    def is_volume_trash(self) -> bool:
        """`$topdir/.Trash-$uid`: must be a real directory, never followed if a symlink."""
        return self.topdir is not None

    @classmethod
    def holding(cls, path: str) -> TrashDir:
        """The trash a file in it (`TRASH/files/NAME`, `TRASH/info/NAME.trashinfo`) is in."""
        trash = os.path.dirname(os.path.dirname(path))
        is_volume = os.path.basename(trash).startswith(".Trash")
        return cls(trash, os.path.dirname(trash) if is_volume else None)


def home_trash_path() -> str:
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(data_home, "Trash")


class TrashFinder:
    """Picks the trash directory for a file, caching per device."""

    def __init__(self, override: str | None = None):
        self.home = TrashDir(os.path.abspath(override) if override else home_trash_path())
        self.is_override = override is not None
        self._home_dev: int | None = None
        self._by_dev: dict[int, TrashDir] = {}
        self._prepared: set[str] = set()

    def for_file(self, path: str, dev: int) -> TrashDir:
        """Where a file at `path` on device `dev` goes (no directories are created)."""
        if self.is_override or dev == self.home_dev():
            return self.home
        if dev not in self._by_dev:
            self._by_dev[dev] = self._volume_trash(path, dev) or self.home
        return self._by_dev[dev]

    def home_dev(self) -> int:
        if self._home_dev is None:
            probe = self.home.path
            while (st := lstat_or_none(probe)) is None and probe != os.path.dirname(probe):
                probe = os.path.dirname(probe)
            self._home_dev = st.st_dev if st is not None else -1
        return self._home_dev

    def _volume_trash(self, path: str, dev: int) -> TrashDir | None:
        topdir = mount_point(path, dev)
        trash = TrashDir(os.path.join(topdir, f".Trash-{os.getuid()}"), topdir)
        st = lstat_or_none(trash.path)
        if st is None:
            return trash if os.access(topdir, os.W_OK) else None
        # the spec: a usable per-user trash is a real directory owned by us
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
            return trash
        return None

    def prepare(self, trash: TrashDir) -> None:
        """Create the trash's directories (mode 0700) once per process."""
        if trash.path in self._prepared:
            return
        flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
        if trash.is_volume_trash:
            # `$topdir/.Trash-$uid`, in a directory others may write to: made there
            # only, opened without following a symlink put in its place, and ours
            with contextlib.suppress(FileExistsError):
                os.mkdir(trash.path, 0o700)
            flags |= os.O_NOFOLLOW
        else:
            os.makedirs(trash.path, 0o700, exist_ok=True)
        fd = os.open(trash.path, flags)
        try:
            if trash.is_volume_trash and os.fstat(fd).st_uid != os.getuid():
                raise PermissionError(errno.EPERM, "trash directory is not ours", trash.path)
            for name in ("files", "info"):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o700, dir_fd=fd)
        finally:
            os.close(fd)
        self._prepared.add(trash.path)

    def forget(self, trash: TrashDir) -> None:
        self._prepared.discard(trash.path)
        self._by_dev = {dev: t for dev, t in self._by_dev.items() if t != trash}


def mount_point(path: str, dev: int) -> str:
    """The top directory of the file system (`dev`) that holds `path`."""
    current = os.path.dirname(os.path.abspath(path))
    while current != "/":
        parent = os.path.dirname(current)
        st = lstat_or_none(parent)
        if st is None or st.st_dev != dev:
            return current
        current = parent
    return current


def free_name(
    trash: TrashDir,
    name: str,
    claimed: set[str],
    exists: Callable[[str], bool] = os.path.lexists,
) -> str:
    """A NAME with neither files/NAME nor info/NAME.trashinfo present nor claimed."""
    for candidate in itertools.chain([name], numbered_names(name)):
        path = trash.file_path(candidate)
        if path in claimed:
            continue
        if not exists(path) and not exists(trash.info_path(candidate)):
            return candidate
    raise FileExistsError(f"no free name in {trash.files} for {name}")


def info_text(original: str, trash: TrashDir, when: float | None = None) -> bytes:
    """The .trashinfo content: `Path=` percent-encoded (bytes exact), local time."""
    path = os.path.abspath(original)
    if trash.topdir and path.startswith(trash.topdir.rstrip("/") + "/"):
        path = os.path.relpath(path, trash.topdir)
    encoded = quote(os.fsencode(path), safe="/")
    date = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when))
    return f"[Trash Info]\nPath={encoded}\nDeletionDate={date}\n".encode("ascii")


def write_info(info: At, original: str, trash: TrashDir) -> None:
    """Create the trashinfo (O_EXCL); `FileExistsError` if that name is taken."""
    fd = create_exclusive(info, 0o600)
    try:
        data = info_text(original, trash)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_info_path(info_path: str) -> str | None:
    """The original path recorded in a trashinfo file (absolute if it was relative)."""
    from urllib.parse import unquote_to_bytes

    try:
        with open(info_path, "rb") as fh:
            lines = fh.read().decode("ascii", "replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("Path="):
            path = os.fsdecode(unquote_to_bytes(line[5:]))
            if not os.path.isabs(path):
                topdir = os.path.dirname(os.path.dirname(os.path.dirname(info_path)))
                path = os.path.join(topdir, path)
            return path
    return None
