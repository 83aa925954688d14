"""Low-level steps every file operation is built from.

Every step names files as `At(dir_fd, name)`: a name in a directory opened through
`clerk.fileops.beneath`, so no step lets the kernel resolve a path the roots were
checked on (see that module).

- `rename_noreplace`: place a file without ever replacing what is there
  (renameat2(RENAME_NOREPLACE), else link + unlink, which fails atomically too).
- `copy_to_temp`: copy data, mode and mtime into a fresh temp file and fsync it,
  hashing the source on the way so verification needs no second read of it.
- `Identity`: what "the same file" means: device, inode, size and mtime.
- crash points: `CLERK_FILEOPS_CRASH_AT=<step>` SIGKILLs the process at that step, so
  tests can prove that recovery handles an interruption at every step boundary.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import signal
import stat
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

RENAME_NOREPLACE = 1
TMP_PREFIX = ".clerk-tmp-"
CHUNK = 1 << 20

CRASH_ENV = "CLERK_FILEOPS_CRASH_AT"
CRASH_STEPS: tuple[str, ...] = (
    "after_intent", "after_tmp_copy", "after_fsync", "after_place",
    "before_unlink_src", "after_unlink_src", "before_done_commit",
)  # fmt: skip
# compound suffixes stay together when a number is added: "a (1).tar.gz", not "a.tar (1).gz"
_COMPOUND_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst")

Checkpoint = Callable[[str], None]


def _load_renameat2() -> Any:
    # dlopen(NULL): the running interpreter already has libc mapped, and this avoids
    # ctypes.util.find_library, which spawns ldconfig.
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_RENAMEAT2 = _load_renameat2()


class Identity(NamedTuple):
    """A file's identity: if any of these changed, it is not the file we saw."""

    dev: int
    ino: int
    size: int
    mtime_ns: int


def identity(st: os.stat_result) -> Identity:
    return Identity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class At(NamedTuple):
    """A name in an opened directory: what every *at() call takes."""

    dir_fd: int
    name: str


def lstat_at(at: At) -> os.stat_result | None:
    try:
        return os.stat(at.name, dir_fd=at.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def lstat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def parent_dir(path: str) -> str:
    """os.path.dirname for absolute, normalized paths, at a fraction of the cost."""
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else "/"


def needs_normpath(path: str) -> bool:
    return "//" in path or "/./" in path or "/../" in path or path.endswith(("/", "/.", "/.."))


def rename_noreplace(src: At, dst: At) -> None:
    """Move `src` to `dst` on one file system; `FileExistsError` if `dst` exists.

    Raises OSError with EXDEV across file systems (the caller copies instead).
    """
    if _RENAMEAT2 is not None:
        src_name, dst_name = os.fsencode(src.name), os.fsencode(dst.name)
        if _RENAMEAT2(src.dir_fd, src_name, dst.dir_fd, dst_name, RENAME_NOREPLACE):
            err = ctypes.get_errno()
            # EINVAL/ENOSYS: this file system or kernel has no RENAME_NOREPLACE
            if err not in (errno.EINVAL, errno.ENOSYS):
                raise OSError(err, os.strerror(err), src.name, None, dst.name)
        else:
            return
    link_then_unlink(src, dst)


def link_then_unlink(src: At, dst: At) -> None:
    """The fallback placement: link() fails with EEXIST atomically, then drop `src`.

    A crash between the two leaves both names on one inode, which recovery finishes.
    """
    os.link(src.name, dst.name, src_dir_fd=src.dir_fd, dst_dir_fd=dst.dir_fd,
            follow_symlinks=False)  # fmt: skip
    os.unlink(src.name, dir_fd=src.dir_fd)


def fsync_dir(dir_fd: int) -> None:
    """fsync an opened directory (an O_PATH descriptor cannot be fsynced itself)."""
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(op_id: int) -> str:
    """The temp name of op `op_id`, in its destination's directory: derived from the op
    id, so recovery can find it."""
    return f"{TMP_PREFIX}{op_id}"


def temp_path(dst: str, op_id: int) -> str:
    return os.path.join(os.path.dirname(dst), temp_name(op_id))


def hash_fd(fd: int) -> str:
    digest = hashlib.blake2b()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def open_regular(at: At) -> int:
    """Open a regular file for reading: never through a symlink, never blocking on a
    FIFO or device put in its place (`OSError` EINVAL for anything not a regular file)."""
    fd = os.open(at.name, READ_FLAGS, dir_fd=at.dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", at.name)
    return fd


READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def hash_file(at: At) -> str:
    fd = open_regular(at)
    try:
        return hash_fd(fd)
    finally:
        os.close(fd)


def same_content(a: At, b: At) -> bool:
    """True when `a` and `b` are regular files with the same size and blake2b hash."""
    sa, sb = lstat_at(a), lstat_at(b)
    if sa is None or sb is None or not (stat.S_ISREG(sa.st_mode) and stat.S_ISREG(sb.st_mode)):
        return False
    if sa.st_size != sb.st_size:
        return False
    return hash_file(a) == hash_file(b)


def open_source(at: At, expected: Identity | None) -> int:
    """Open a source for reading without following a symlink; refuse a swapped file."""
    try:
        fd = open_regular(at)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EINVAL):
            raise SourceChanged(
                "the source was replaced as it was opened (not a file now)"
            ) from None
        raise
    if expected is not None:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (expected.dev, expected.ino):
            os.close(fd)
            raise SourceChanged("the source was replaced as it was opened (another file now)")
    return fd


def create_exclusive(at: At, mode: int = 0o600) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(at.name, flags, mode, dir_fd=at.dir_fd)


class SourceChanged(Exception):
    """The source is not the file that was journaled (it was replaced): nothing was done."""


class CopyResult(NamedTuple):
    digest: str
    size: int
    dev: int
    ino: int


def copy_to_temp(src: At, tmp: At, expected: Identity | None, checkpoint: Checkpoint) -> CopyResult:
    """Copy `src` into a new file `tmp` (mode, mtime kept), fsync it, verify it.

    Removes `tmp` on any failure. Raises `SourceChanged` if the source is not
    `expected`, or `OSError`.
    """
    src_fd = open_source(src, expected)
    try:
        tmp_fd = create_exclusive(tmp)
        try:
            result = _copy_fds(src_fd, tmp_fd, checkpoint)
            # read back through the same descriptor: the bytes that will be placed
            verified = hash_fd(tmp_fd) == result.digest and os.fstat(tmp_fd).st_size == result.size
        except BaseException:
            os.close(tmp_fd)
            remove_quietly(tmp)
            raise
        os.close(tmp_fd)
    finally:
        os.close(src_fd)
    if not verified:
        remove_quietly(tmp)
        raise OSError(errno.EIO, "copy verification failed (hash mismatch)", tmp.name)
    return result


def _copy_fds(src_fd: int, tmp_fd: int, checkpoint: Checkpoint) -> CopyResult:
    st = os.fstat(src_fd)
    digest = hashlib.blake2b()
    size = 0
    while chunk := os.read(src_fd, CHUNK):
        digest.update(chunk)
        view = memoryview(chunk)
        while view:
            written = os.write(tmp_fd, view)
            view = view[written:]
        size += len(chunk)
    os.fchmod(tmp_fd, stat.S_IMODE(st.st_mode))
    os.utime(tmp_fd, ns=(st.st_atime_ns, st.st_mtime_ns))
    checkpoint("after_tmp_copy")
    os.fsync(tmp_fd)
    checkpoint("after_fsync")
    tmp_st = os.fstat(tmp_fd)
    return CopyResult(digest.hexdigest(), size, tmp_st.st_dev, tmp_st.st_ino)


def remove_quietly(at: At) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(at.name, dir_fd=at.dir_fd)


def numbered_names(name: str) -> Iterator[str]:
    """ "a.txt" -> "a (1).txt", "a (2).txt", ...; compound suffixes stay whole."""
    lower = name.lower()
    suffix = next((s for s in _COMPOUND_SUFFIXES if lower.endswith(s) and len(s) < len(name)), "")
    if suffix:
        stem, ext = name[: -len(suffix)], name[-len(suffix) :]
    else:
        stem, ext = os.path.splitext(name)
    for number in range(1, 100_000):
        yield f"{stem} ({number}){ext}"


def crash_step_from_env() -> str | None:
    step = os.environ.get(CRASH_ENV) or None
    if step is not None and step not in CRASH_STEPS:
        raise ValueError(f"{CRASH_ENV}={step!r}: expected one of {', '.join(CRASH_STEPS)}")
    return step


def crash_now() -> None:
    """Die like a power cut would stop us: no cleanup, no finally blocks."""
    os.kill(os.getpid(), signal.SIGKILL)


def describe_error(exc: BaseException) -> str:
    """A one-line message for the journal and the result."""
    if isinstance(exc, OSError) and exc.strerror:
        names = [n for n in (exc.filename, exc.filename2) if n]
        where = " -> ".join(os.fsdecode(n) for n in names)
        return f"{exc.strerror}: {where}" if where else exc.strerror
    return str(exc) or type(exc).__name__
