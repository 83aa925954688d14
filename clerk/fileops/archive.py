"""Single-member archives: write one file into a new archive, read it back, extract it.

The format comes from the destination's suffix. Every write hashes the source bytes
as they go in, and `member_digest` hashes them as they come out, so an archive is
trusted (and its source removed) only once the member reads back identical.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import stat
import tarfile
import time
import zipfile
import zlib
from typing import IO, BinaryIO

from clerk.fileops.primitives import CHUNK, At, Checkpoint, create_exclusive, open_regular

FORMATS: tuple[tuple[str, str], ...] = (
    (".tar.gz", "gz"), (".tgz", "gz"), (".tar.bz2", "bz2"), (".tbz2", "bz2"),
    (".tar.xz", "xz"), (".txz", "xz"), (".tar", ""), (".zip", "zip"),
)  # fmt: skip
_READ_ERRORS = (
    OSError, EOFError, KeyError, ValueError, tarfile.TarError, zipfile.BadZipFile,
    lzma.LZMAError, zlib.error,
)  # fmt: skip


def archive_format(path: str) -> str | None:
    """ "zip", "gz", "bz2", "xz" or "" (plain tar), or None if the suffix is unknown."""
    lower = path.lower()
    return next((fmt for suffix, fmt in FORMATS if lower.endswith(suffix)), None)


def check_member_name(fmt: str, member: str) -> str | None:
    """Why `member` cannot be stored in this format, or None."""
    if fmt == "zip":
        try:
            member.encode("utf-8")
        except UnicodeEncodeError:
            return "zip cannot store a file name that is not valid UTF-8 (use .tar.gz)"
    return None


class _HashingReader:
    """Reads a file descriptor for tarfile, hashing every byte handed over."""

    def __init__(self, fd: int):
        self.fd = fd
        self.digest = hashlib.blake2b()

    def read(self, size: int = -1) -> bytes:
        data = os.read(self.fd, size if size >= 0 else CHUNK)
        self.digest.update(data)
        return data


def write_archive(src_fd: int, tmp: At, fmt: str, member: str, checkpoint: Checkpoint) -> str:
    """Write the file open as `src_fd` as the only member of a new archive at `tmp`.

    The archive is fsynced before returning; returns the blake2b of the member data.
    """
    st = os.fstat(src_fd)
    fd = create_exclusive(tmp, 0o644)
    with os.fdopen(fd, "w+b") as out:
        if fmt == "zip":
            digest = _write_zip(src_fd, out, member, st)
        else:
            digest = _write_tar(src_fd, out, fmt, member, st)
        out.flush()
        checkpoint("after_tmp_copy")
        os.fsync(out.fileno())
        checkpoint("after_fsync")
    return digest


def _write_tar(src_fd: int, out: BinaryIO, fmt: str, member: str, st: os.stat_result) -> str:
    info = tarfile.TarInfo(member)
    info.size = st.st_size
    info.mtime = int(st.st_mtime)
    info.mode = stat.S_IMODE(st.st_mode)
    reader = _HashingReader(src_fd)
    mode = f"w:{fmt}" if fmt else "w"
    with tarfile.open(fileobj=out, mode=mode) as tar:  # type: ignore[call-overload]
        tar.addfile(info, reader)
    return reader.digest.hexdigest()


def _write_zip(src_fd: int, out: BinaryIO, member: str, st: os.stat_result) -> str:
    date_time = time.localtime(max(st.st_mtime, 315532800))[:6]  # zip cannot go before 1980
    info = zipfile.ZipInfo(member, date_time=date_time)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | stat.S_IMODE(st.st_mode)) << 16
    digest = hashlib.blake2b()
    with (
        zipfile.ZipFile(out, "w") as archive,
        archive.open(info, "w", force_zip64=st.st_size >= zipfile.ZIP64_LIMIT) as dest,
    ):
        while chunk := os.read(src_fd, CHUNK):
            digest.update(chunk)
            dest.write(chunk)
    return digest.hexdigest()


class _Archive:
    """An archive opened for reading through a descriptor (never by path)."""

    def __init__(self, at: At, fmt: str):
        self.file = os.fdopen(open_regular(at), "rb")
        try:
            if fmt == "zip":
                self.zip: zipfile.ZipFile | None = zipfile.ZipFile(self.file)
                self.tar: tarfile.TarFile | None = None
            else:
                mode = f"r:{fmt}" if fmt else "r:"
                self.zip = None
                self.tar = tarfile.open(fileobj=self.file, mode=mode)  # type: ignore[call-overload]  # noqa: SIM115 (closed by close())
        except BaseException:
            self.file.close()
            raise

    def stream(self, member: str) -> IO[bytes]:
        if self.zip is not None:
            return self.zip.open(member)
        assert self.tar is not None
        stream = self.tar.extractfile(member)
        if stream is None:
            raise KeyError(member)
        return stream

    def info(self, member: str) -> tuple[int, float]:
        """(mode, mtime) stored for `member`, for restoring them on extraction."""
        if self.zip is not None:
            zinfo = self.zip.getinfo(member)
            mode = (zinfo.external_attr >> 16) & 0o7777 or 0o644
            return mode, time.mktime((*zinfo.date_time, 0, 0, -1))
        assert self.tar is not None
        tinfo = self.tar.getmember(member)
        return tinfo.mode, float(tinfo.mtime)

    def close(self) -> None:
        try:
            if self.zip is not None:
                self.zip.close()
            if self.tar is not None:
                self.tar.close()
        finally:
            self.file.close()


def member_digest(at: At, fmt: str, member: str) -> str | None:
    """The blake2b of `member` read back from the archive, or None if unreadable."""
    try:
        archive = _Archive(at, fmt)
    except _READ_ERRORS:
        return None
    digest = hashlib.blake2b()
    try:
        with archive.stream(member) as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
    except _READ_ERRORS:
        return None
    finally:
        archive.close()
    return digest.hexdigest()


def extract_member(source: At, fmt: str, member: str, tmp: At, checkpoint: Checkpoint) -> str:
    """Write `member` to a new file `tmp` (fsynced); returns the blake2b of its data."""
    archive = _Archive(source, fmt)
    digest = hashlib.blake2b()
    try:
        stream = archive.stream(member)
        fd = create_exclusive(tmp, 0o600)
        with os.fdopen(fd, "wb") as out, stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            try:
                info: tuple[int, float] | None = archive.info(member)
            except _READ_ERRORS:
                info = None
            if info is not None:
                os.fchmod(out.fileno(), info[0] & 0o7777)
                os.utime(out.fileno(), (info[1], info[1]))
            checkpoint("after_tmp_copy")
            os.fsync(out.fileno())
            checkpoint("after_fsync")
    finally:
        archive.close()
    return digest.hexdigest()
