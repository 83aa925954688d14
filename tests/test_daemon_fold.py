"""`fold_events`: a burst's per-file inotify events folded before watchdog parses them.

The raw events are what the kernel wrote (checked against a real inotify read in the
last test); the daemon-level behaviour is covered by the daemon tests."""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path

from clerk.daemon.watch import (
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_ISDIR,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    Leaving,
    fold_events,
)

IN_DELETE = 0x200


def test_create_then_close_of_a_file_becomes_one_event_at_the_close() -> None:
    raw = [
        (1, IN_CREATE, 0, b"a.txt"),
        (1, IN_CREATE, 0, b"b.txt"),
        (1, IN_CLOSE_WRITE, 0, b"a.txt"),
        (1, IN_CLOSE_WRITE, 0, b"b.txt"),
    ]
    assert fold_events(raw) == [
        (1, IN_CREATE | IN_CLOSE_WRITE, 0, b"a.txt"),
        (1, IN_CREATE | IN_CLOSE_WRITE, 0, b"b.txt"),
    ]


def test_what_is_not_folded() -> None:
    raw = [
        (1, IN_CREATE, 0, b"open.txt"),  # no close in this read: still being written
        (1, IN_CREATE, 0, b"gone.txt"),
        (1, IN_DELETE, 0, b"gone.txt"),  # another event between: no fold
        (1, IN_CLOSE_WRITE, 0, b"gone.txt"),
        (2, IN_CREATE, 0, b"x"),  # same name, other directory
        (1, IN_CLOSE_WRITE, 0, b"x"),
        (1, IN_CREATE | IN_ISDIR, 0, b"dir"),  # directories: watchdog keeps watches by them
        (1, IN_CLOSE_WRITE, 0, b"old.txt"),  # a close without a create: an in-place rewrite
    ]
    assert fold_events(raw) == raw


def test_only_the_daemons_own_unpaired_moves_out_are_dropped() -> None:
    leaving = Leaving()
    leaving.expect(["/in/mine.txt", "/in/renamed.txt", "/in/last.txt", "/in/sub"])
    raw = [
        (1, IN_MOVED_FROM, 7, b"mine.txt"),  # moved out of every root by the daemon
        (1, IN_MOVED_FROM, 8, b"theirs.txt"),  # someone else's: kept
        (1, IN_MOVED_FROM, 9, b"renamed.txt"),  # a rename inside the root: both halves kept
        (2, IN_MOVED_TO, 9, b"renamed.txt"),
        (1, IN_MOVED_FROM | IN_ISDIR, 10, b"sub"),  # a directory: kept
        (1, IN_MOVED_FROM, 11, b"last.txt"),  # last of the read: its pair may come next
    ]
    assert fold_events(raw, leaving) == raw[1:]
    # a name leaves the set two batches later
    leaving.expect([])
    assert fold_events(raw, leaving) == raw[1:]
    leaving.expect([])
    assert fold_events(raw, leaving) == raw


def test_the_kernel_writes_these_events_for_a_written_file(tmp_path: Path) -> None:
    # the fold relies on a file's IN_CREATE and IN_CLOSE_WRITE reaching one read in this
    # order, with the bits above: read them from a real inotify instance
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0
    try:
        mask = IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO
        assert libc.inotify_add_watch(fd, os.fsencode(tmp_path), mask) >= 0
        (tmp_path / "f.txt").write_bytes(b"data")
        os.rename(tmp_path / "f.txt", tmp_path.parent / f"{tmp_path.name}-f.txt")
        buffer = os.read(fd, 4096)
    finally:
        os.close(fd)
    raw, at = [], 0
    while at < len(buffer):
        wd, bits, cookie, length = struct.unpack_from("iIII", buffer, at)
        raw.append((wd, bits, cookie, buffer[at + 16 : at + 16 + length].rstrip(b"\0")))
        at += 16 + length
    assert [(bits, name) for _, bits, _, name in raw] == [
        (IN_CREATE, b"f.txt"),
        (IN_CLOSE_WRITE, b"f.txt"),
        (IN_MOVED_FROM, b"f.txt"),
    ]
    leaving = Leaving()
    leaving.expect([str(tmp_path / "f.txt")])
    folded = fold_events(raw, leaving)  # the move is the read's last event: kept
    assert [(bits, name) for _, bits, _, name in folded] == [
        (IN_CREATE | IN_CLOSE_WRITE, b"f.txt"),
        (IN_MOVED_FROM, b"f.txt"),
    ]
