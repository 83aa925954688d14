"""Owner-only files and directories: what clerk keeps about the user's files.

The store lists every path and hash clerk has seen, run logs hold what tasks printed:
another user must not read them, whatever the umask of the process that made them. The
modes given to `mkdir` and `open` are masked by the umask; `chmod`/`fchmod` are not, so
every file and directory made here is set to its mode explicitly after it is made.
Directories follow the XDG base directory spec (0700 for directories it creates), files
get 0600. Only what clerk itself created, or its own files in its own directories, is
tightened: an existing directory the user chose (a `store:` beside other things, say)
keeps its mode.

A leaf module: the store, the engine's logs and the daemon's runtime files use it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, cast

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | os.PathLike[str]) -> Path:
    """`path` and any missing parents made, each one made here set to 0700."""
    target = Path(path)
    missing = []
    here = target
    while not os.path.lexists(here) and here != here.parent:
        missing.append(here)
        here = here.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            continue  # made by another process meanwhile: its maker set its mode
        os.chmod(directory, DIR_MODE)
    return target


def tighten(path: str | os.PathLike[str]) -> None:
    """Drop group and other bits from `path` if it is ours (one an older clerk or a loose
    umask left readable); a missing path or someone else's is left alone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if (
        st.st_uid == os.geteuid()
        and stat.S_IMODE(st.st_mode) & 0o077
        and not stat.S_ISLNK(st.st_mode)
    ):
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)


def open_private(path: str | os.PathLike[str], flags: int) -> int:
    """`os.open(path, flags | O_CREAT | O_CLOEXEC)` with the file 0600 (created or ours)."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_file(path: str | os.PathLike[str], mode: str = "wb") -> BinaryIO:
    """A binary file object for writing, made 0600: `mode` is "wb", "ab" or "xb"."""
    flags = {
        "wb": os.O_WRONLY | os.O_TRUNC,
        "ab": os.O_WRONLY | os.O_APPEND,
        "xb": os.O_WRONLY | os.O_EXCL,
    }[mode]
    return cast(BinaryIO, os.fdopen(open_private(path, flags), mode.replace("x", "w")))


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """`Path.write_bytes`, with the file 0600."""
    with private_file(path) as handle:
        handle.write(data)
