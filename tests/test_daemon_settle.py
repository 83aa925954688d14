"""Settle decisions on real files, with the clock passed in (no waiting), and the inotify
watch that feeds them (real directories, real events)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_daemon_support import wait_until

from clerk.daemon.settle import (
    OPEN_RECHECK_MAX,
    RECHECK_FLOOR,
    STUCK_OPEN_MINIMUM,
    FloodGauge,
    Settler,
)
from clerk.daemon.watch import (
    IN_CLOSE_WRITE,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    MOVE_PAIRING_DELAY,
    FsEvent,
    Inotify,
    InotifyEmitter,
    Overflow,
    Watchers,
)
from clerk.roots import Root


def _root(tmp_path: Path) -> Root:
    return Root("inbox", str(tmp_path), settle=2.0)


def _ready(settler: Settler, now: float) -> list[str]:
    return [r.path for r in settler.due(now)]


def test_a_closed_file_is_ready_at_once(tmp_path: Path) -> None:
    settler, root = Settler(), _root(tmp_path)
    path = tmp_path / "a.txt"
    path.write_text("x")
    settler.touch(str(path), root, "created", now=100.0)
    settler.opened(str(path))
    assert _ready(settler, 100.5) == []  # neither closed nor settled
    settler.closed_after_write(str(path), root, "modified", now=100.6)
    assert _ready(settler, 100.6) == [str(path)]
    assert len(settler) == 0


def test_without_a_close_the_file_must_be_still_for_the_settle_time(tmp_path: Path) -> None:
    settler, root = Settler(), _root(tmp_path)
    path = tmp_path / "b.txt"
    path.write_text("x")
    settler.touch(str(path), root, "moved", now=0.0)
    assert _ready(settler, 2.0) == []  # first look: the clock starts now
    with open(path, "a") as out:
        out.write("more")
    recent = path.stat().st_mtime_ns + 1
    os.utime(path, ns=(recent, recent))  # a different (recent) mtime: changed since
    assert _ready(settler, 4.0) == []
    assert settler.next_deadline() == 6.0
    assert _ready(settler, 6.0) == [str(path)]


def test_a_file_whose_mtime_is_older_than_the_settle_time_is_ready_at_first_look(
    tmp_path: Path,
) -> None:
    """An overflow's reconcile finds files whose close was lost long ago: no new wait."""
    settler, root = Settler(), _root(tmp_path)
    old, fresh = tmp_path / "old.txt", tmp_path / "fresh.txt"
    old.write_text("x")
    fresh.write_text("y")
    os.utime(old, (time.time() - 60, time.time() - 60))
    settler.events_lost()  # opens untracked, as after an overflow
    settler.touch(str(old), root, "created", now=0.0)
    settler.touch(str(fresh), root, "created", now=0.0)
    assert _ready(settler, 2.0) == [str(old)]  # fresh.txt: changed just now, it waits
    assert _ready(settler, 7.0) == [str(fresh)]


def test_an_open_writer_holds_the_file_until_it_looks_stuck(tmp_path: Path) -> None:
    settler, root = Settler(), _root(tmp_path)
    path = tmp_path / "c.txt"
    path.write_text("x")
    settler.touch(str(path), root, "created", now=0.0)
    settler.opened(str(path))
    assert _ready(settler, 2.0) == []
    assert _ready(settler, 4.0) == []  # still for 2s, but open
    assert _ready(settler, STUCK_OPEN_MINIMUM - 1) == []
    assert _ready(settler, STUCK_OPEN_MINIMUM + 10) == [str(path)]  # a lost close


def test_a_file_made_here_waits_for_its_creators_close(tmp_path: Path) -> None:
    settler, root = Settler(), _root(tmp_path)
    path = tmp_path / "n.txt"
    path.write_text("x")
    settler.created_open(str(path), root, now=0.0)  # IN_CREATE: no IN_OPEN is asked for
    assert _ready(settler, 2.0) == [] and _ready(settler, 4.0) == []  # still, but open
    settler.closed_after_write(str(path), root, "modified", now=4.5)
    ready = settler.due(4.5)
    assert [(r.path, r.trigger) for r in ready] == [(str(path), "created")]
    link = tmp_path / "link.txt"
    os.link(path, link)  # IN_CREATE too, but nobody opened it: stability decides
    settler.created_open(str(link), root, now=10.0)
    assert _ready(settler, 12.0) == [] and _ready(settler, 14.0) == [str(link)]


def test_after_an_overflow_opens_do_not_count_until_trusted(tmp_path: Path) -> None:
    settler, root = Settler(), _root(tmp_path)
    path = tmp_path / "d.txt"
    path.write_text("x")
    settler.events_lost()
    settler.touch(str(path), root, "created", now=0.0)
    settler.opened(str(path))  # its close may have been dropped with the overflow
    assert not settler.is_open(str(path))
    assert _ready(settler, 2.0) == [] and _ready(settler, 4.0) == [str(path)]
    settler.trust_opens()
    settler.opened(str(path))
    assert settler.is_open(str(path))


def test_deleted_and_vanished_paths_are_dropped(tmp_path: Path) -> None:
    settler, root = Settler(), _root(tmp_path)
    (tmp_path / "sub").mkdir()
    kept, gone, under = tmp_path / "k.txt", tmp_path / "g.txt", tmp_path / "sub" / "u.txt"
    for path in (kept, gone, under):
        path.write_text("x")
        settler.touch(str(path), root, "created", now=0.0)
    settler.forget_under(str(tmp_path / "sub"))
    gone.unlink()
    assert _ready(settler, 2.0) == [] and _ready(settler, 4.0) == [str(kept)]
    assert len(settler) == 0


@contextlib.contextmanager
def _fails_after(seconds: float) -> Iterator[None]:
    """A call that never returns (a livelock) fails the test instead of hanging it."""

    def expired(signum: int, frame: Any) -> None:
        raise AssertionError(f"still running after {seconds}s: a livelock?")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_settle_0s_an_open_file_is_looked_at_again_later_with_backoff(tmp_path: Path) -> None:
    """`settle: 0s` rescheduled an open file at now + 0 = now: `due(now)` never returned."""
    settler, root = Settler(), Root("inbox", str(tmp_path), settle=0.0)
    path = tmp_path / "open.txt"
    path.write_text("x")
    settler.created_open(str(path), root, now=0.0)
    looks = []
    with _fails_after(5.0):
        now = 0.0
        while now < STUCK_OPEN_MINIMUM:
            assert _ready(settler, now) == []
            deadline = settler.next_deadline()
            assert deadline is not None and deadline >= now + RECHECK_FLOOR
            looks.append(deadline - now)
            now = deadline
    assert looks[:3] == pytest.approx([RECHECK_FLOOR, RECHECK_FLOOR, 2 * RECHECK_FLOOR])
    assert max(looks) == pytest.approx(OPEN_RECHECK_MAX)  # backed off: a look per 2s
    assert len(looks) < 40
    assert _ready(settler, now) == [str(path)]  # still open after a minute: a lost close


def test_due_looks_at_a_bounded_number_of_paths_per_call(tmp_path: Path) -> None:
    settler, root = Settler(), Root("inbox", str(tmp_path), settle=0.0)
    for i in range(25):
        (tmp_path / f"{i}.txt").write_text("x")
        settler.closed_after_write(str(tmp_path / f"{i}.txt"), root, "created", now=0.0)
    assert len(settler.due(0.0, limit=10)) == 10
    assert settler.next_deadline() == 0.0  # the rest is still due: the loop comes back
    assert len(settler.due(0.0, limit=10)) == 10 and len(settler.due(0.0)) == 5


# --- the inotify watch that feeds the settler -------------------------------------------------


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Path, queue.SimpleQueue[Any], Watchers]]:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    intake: queue.SimpleQueue[Any] = queue.SimpleQueue()
    watchers = Watchers(intake)
    watchers.start([Root("inbox", str(inbox), settle=2.0)])
    assert watchers.errors == {}
    try:
        yield inbox, intake, watchers
    finally:
        watchers.close()


def _until(intake: queue.SimpleQueue[Any], seen: list[Any], *wanted: Any) -> list[Any]:
    """Collect intake items into `seen` until one of `wanted` is among them."""

    def arrived() -> bool:
        while not intake.empty():
            seen.append(intake.get_nowait())
        return any(w in seen for w in wanted)

    wait_until(arrived, timeout=10, what=f"{wanted} from the watch")
    return seen


def _written(path: Path | str) -> tuple[FsEvent, FsEvent]:
    """What a file made and closed here ends with: "closed" after its "new", or one
    "new_closed" when the reader got both events in one read (see fold_events)."""
    return FsEvent("closed", str(path)), FsEvent("new_closed", str(path))


MADE_AND_CLOSED = (["new", "closed"], ["new_closed"])


def test_a_written_file_is_new_then_closed_and_reads_are_not_asked_for(watched: Any) -> None:
    inbox, intake, _ = watched
    path = str(inbox / "a.txt")
    with open(path, "w") as out:
        out.write("x")
    seen = _until(intake, [], *_written(path))
    assert [e.kind for e in seen if e.path == path] in MADE_AND_CLOSED
    slow = str(inbox / "slow.txt")
    with open(slow, "w") as out:  # still open: "new" now, "closed" when its writer is done
        out.write("x")
        _until(intake, [], FsEvent("new", slow))
    _until(intake, [], FsEvent("closed", slow))
    with open(path, "rb") as f:  # what libmagic and hashing do: the kernel reports nothing
        f.read()
    with open(path, "a") as out:  # a rewrite in place: its close is enough (no IN_MODIFY)
        out.write("more")
    marker = str(inbox / "marker")
    (inbox / "marker").write_text("")
    seen = _until(intake, [], *_written(marker))
    assert seen[0] == FsEvent("closed", path)
    assert [e.kind for e in seen[1:] if e.path == marker] in MADE_AND_CLOSED
    assert len(seen) == 1 + len([e for e in seen[1:] if e.path == marker])


def test_renames_inside_pair_and_moves_across_the_root_split(watched: Any, tmp_path: Path) -> None:
    inbox, intake, _ = watched
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "in.txt").write_text("x")
    (inbox / "a.txt").write_text("x")
    seen: list[Any] = []
    _until(intake, seen, *_written(str(inbox / "a.txt")))
    os.rename(inbox / "a.txt", inbox / "b.txt")
    _until(intake, seen, FsEvent("moved", str(inbox / "a.txt"), str(inbox / "b.txt")))
    os.rename(inbox / "b.txt", outside / "b.txt")
    _until(intake, seen, FsEvent("deleted", str(inbox / "b.txt")))
    os.rename(outside / "in.txt", inbox / "in.txt")  # complete: not "new"; moved in
    _until(intake, seen, FsEvent("moved_in", str(inbox / "in.txt")))


def test_a_move_out_does_not_hold_the_events_behind_it(watched: Any, tmp_path: Path) -> None:
    """watchdog holds what follows an unpaired IN_MOVED_FROM 0.5 s; ours goes on at once."""
    inbox, intake, _ = watched
    (tmp_path / "out").mkdir()
    held = []
    for i in range(5):
        (inbox / f"m{i}").write_text("x")
        _until(intake, [], *_written(str(inbox / f"m{i}")))
        os.rename(inbox / f"m{i}", tmp_path / "out" / f"m{i}")  # the daemon's own kind of move
        started = time.monotonic()
        (inbox / f"n{i}").write_text("x")
        _until(intake, [], *_written(str(inbox / f"n{i}")))
        held.append(time.monotonic() - started)
    # the median of five: one slow turn of a busy machine is not the grouper
    assert sorted(held)[2] < 0.25, held


def _record(wd: int, mask: int, name: bytes = b"", cookie: int = 0) -> bytes:
    """One `struct inotify_event` as the kernel writes it (the name NUL-padded)."""
    padded = name + b"\0" * (16 - len(name) % 16) if name else b""
    return struct.pack("iIII", wd, mask, cookie, len(padded)) + padded


def test_a_rename_split_across_two_reads_pairs_and_a_lone_move_out_waits_briefly(
    tmp_path: Path,
) -> None:
    # what the pump read, in the kernel's format, straight into the reads' queue
    inotify = Inotify(str(tmp_path), recursive=True, follow_symlinks=False)
    try:
        wd, chunks = inotify.root_wd, inotify.chunks
        chunks.put(_record(wd, IN_MOVED_FROM, b"a", cookie=7))
        assert inotify.read(1.0) == ([], True)  # held: its pair may begin the next read
        chunks.put(_record(wd, IN_MOVED_TO, b"b", cookie=7))
        moved = FsEvent("moved", f"{tmp_path}/a", f"{tmp_path}/b")
        assert inotify.read(1.0) == ([moved], True)
        # alone, it waits MOVE_PAIRING_DELAY for its pair, not the emitter's timeout
        chunks.put(_record(wd, IN_MOVED_FROM, b"c", cookie=8))
        assert inotify.read(1.0) == ([], True)
        started = time.monotonic()
        assert inotify.read(60.0) == ([FsEvent("deleted", f"{tmp_path}/c")], True)
        assert MOVE_PAIRING_DELAY * 0.8 <= time.monotonic() - started < 30
        # anything after it in the same read: it goes at once, in order
        chunks.put(_record(wd, IN_MOVED_FROM, b"d", cookie=9) + _record(wd, IN_CLOSE_WRITE, b"e"))
        deleted, closed = FsEvent("deleted", f"{tmp_path}/d"), FsEvent("closed", f"{tmp_path}/e")
        assert inotify.read(1.0) == ([deleted, closed], True)
        # a rename's halves with another event between (another writer): still a pair
        chunks.put(
            _record(wd, IN_MOVED_FROM, b"f", cookie=10)
            + _record(wd, IN_CLOSE_WRITE, b"e")
            + _record(wd, IN_MOVED_TO, b"g", cookie=10)
        )
        moved = FsEvent("moved", f"{tmp_path}/f", f"{tmp_path}/g")
        assert inotify.read(1.0) == ([closed, moved], True)
    finally:
        inotify.close()
    assert inotify.read(1.0) == ([], False)  # closed: the emitter stops on it


def test_directories_made_or_moved_in_are_watched_under_their_new_name(
    watched: Any, tmp_path: Path
) -> None:
    inbox, intake, watchers = watched
    seen: list[Any] = []
    (inbox / "sub").mkdir()
    _until(intake, seen, FsEvent("created", str(inbox / "sub"), is_dir=True))
    (inbox / "sub" / "x.txt").write_text("x")
    _until(intake, seen, *_written(str(inbox / "sub" / "x.txt")))
    os.rename(inbox / "sub", inbox / "renamed")
    _until(intake, seen, FsEvent("moved", str(inbox / "sub"), str(inbox / "renamed"), True))
    (inbox / "renamed" / "y.txt").write_text("y")
    _until(intake, seen, *_written(str(inbox / "renamed" / "y.txt")))
    os.rename(inbox / "renamed", tmp_path / "away")
    _until(intake, seen, FsEvent("deleted", str(inbox / "renamed"), is_dir=True))
    # moved out, it is no longer watched: its watch would go on reporting what happens
    # in it under the name it had here
    (tmp_path / "away" / "late.txt").write_text("x")
    # a tree moved in from outside: the directory arrives (the daemon walks it), and
    # everything under it is watched at once
    (tmp_path / "tree" / "deep").mkdir(parents=True)
    (tmp_path / "tree" / "deep" / "old.txt").write_text("already there")
    os.rename(tmp_path / "tree", inbox / "back")
    _until(intake, seen, FsEvent("moved_in", str(inbox / "back"), is_dir=True))
    (inbox / "back" / "deep" / "z.txt").write_text("z")
    _until(intake, seen, *_written(str(inbox / "back" / "deep" / "z.txt")))
    assert not [e for e in seen if isinstance(e, FsEvent) and "old.txt" in e.path]
    assert not [e for e in seen if isinstance(e, FsEvent) and "late.txt" in e.path], seen
    watched_dirs = {os.fsdecode(d) for d in _inotify_of(watchers, "inbox").wds}
    assert watched_dirs == {str(inbox), str(inbox / "back"), str(inbox / "back" / "deep")}


def test_a_root_given_as_a_symlink_is_watched_where_it_points(tmp_path: Path) -> None:
    # the walk lists what the symlink points to; the watch must see the same directory
    (tmp_path / "real").mkdir()
    (tmp_path / "inbox").symlink_to(tmp_path / "real")
    intake: queue.SimpleQueue[Any] = queue.SimpleQueue()
    watchers = Watchers(intake)
    try:
        watchers.start([Root("inbox", str(tmp_path / "inbox"))])
        assert watchers.errors == {}
        (tmp_path / "real" / "a.txt").write_text("x")
        _until(intake, [], *_written(str(tmp_path / "inbox" / "a.txt")))
    finally:
        watchers.close()


def _inotify_of(watchers: Watchers, name: str) -> Inotify:
    (emitter,) = watchers.observers[name].emitters
    assert isinstance(emitter, InotifyEmitter) and emitter.inotify is not None
    return emitter.inotify


def test_an_overflow_reaches_the_intake_and_every_directory_is_watched_again(
    watched: Any,
) -> None:
    inbox, intake, watchers = watched
    (inbox / "sub").mkdir()
    _until(intake, [], FsEvent("created", str(inbox / "sub"), is_dir=True))
    inotify = _inotify_of(watchers, "inbox")
    # a directory whose watch went with lost events: the kernel drops it, unasked
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.inotify_rm_watch(inotify.fd, inotify.wds[os.fsencode(inbox / "sub")]) == 0
    wait_until(lambda: os.fsencode(inbox / "sub") not in inotify.wds, what="the watch gone")
    # what the kernel queues when it drops events (wd -1), through watchdog's dispatch
    inotify.chunks.put(_record(-1, IN_Q_OVERFLOW))
    assert any(isinstance(item, Overflow) for item in _until_overflow(intake))
    (inbox / "sub" / "after").write_text("")  # watched again, and the root still is
    _until(intake, [], *_written(str(inbox / "sub" / "after")))
    (inbox / "after").write_text("")
    _until(intake, [], *_written(str(inbox / "after")))


def _until_overflow(intake: queue.SimpleQueue[Any]) -> list[Any]:
    seen: list[Any] = []
    wait_until(lambda: _drain(intake, seen) and any(isinstance(i, Overflow) for i in seen))
    return seen


def _drain(intake: queue.SimpleQueue[Any], seen: list[Any]) -> bool:
    while not intake.empty():
        seen.append(intake.get_nowait())
    return True


def test_a_deleted_root_leaves_a_dead_watch(watched: Any) -> None:
    inbox, intake, watchers = watched
    assert watchers.dead() == []
    inbox.rmdir()
    _until(intake, [], FsEvent("deleted", str(inbox), is_dir=True))
    wait_until(lambda: watchers.dead() == ["inbox"], timeout=10, what="the watch to end")
    inbox.mkdir()
    assert watchers.restart(watchers.roots["inbox"]) and watchers.dead() == []
    (inbox / "again").write_text("")
    _until(intake, [], *_written(str(inbox / "again")))


def test_a_root_that_cannot_be_watched_is_an_error_not_a_crash(tmp_path: Path) -> None:
    watchers = Watchers(queue.SimpleQueue())
    try:
        watchers.start([Root("gone", str(tmp_path / "missing"))])
        assert "cannot watch" in watchers.errors["gone"] and watchers.dead() == ["gone"]
    finally:
        watchers.close()


def test_the_flood_gauge_holds_while_events_pour_in_and_lets_go_after() -> None:
    gauge = FloodGauge(rate=100, window=1.0, hold_max=10.0, calm=20)
    start = gauge._window_start
    gauge.saw(50)  # 50 events in a second: ordinary traffic
    assert not gauge.holding(start + 1.0)
    gauge.saw(500)  # a copy pouring in
    assert gauge.holding(start + 2.0) and gauge.floods == 1
    assert gauge.next_look() == start + 3.0
    gauge.saw(10)
    assert gauge.holding(start + 2.5)  # the window is not over: no change of mind
    gauge.saw(30)
    assert gauge.holding(start + 3.0)  # 40 a second: less than a flood starts with, not calm
    gauge.saw(5)
    assert not gauge.holding(start + 4.0)  # a calm second: the held files go
    # a flood that never ends gets a turn every hold_max seconds
    moments = [start + 5.0 + i for i in range(25)]
    turns = []
    for now in moments:
        gauge.saw(500)
        turns.append(not gauge.holding(now))
    assert turns.count(True) == 2 and gauge.floods == 2


def test_an_overflow_is_a_flood_even_when_the_events_stop_after_it() -> None:
    gauge = FloodGauge(rate=100, window=0.25, hold_max=10.0, calm=20)
    start = gauge._window_start
    gauge.overflowed(start + 0.1)  # the kernel dropped events; few reach us for a while
    assert gauge.holding(start + 0.25) and gauge.floods == 1
    assert gauge.holding(start + 0.5) and gauge.holding(start + 1.0)
    assert not gauge.holding(start + 1.25)  # calm, and the overflow is a second old


def test_the_kernel_queue_is_emptied_while_the_worker_is_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While the worker is in a batch, events are not parsed (BUSY_PAUSE); the kernel's
    # queue must still be read, or a burst beside a long batch overflows it (events
    # lost). More events than the queue holds arrive while the worker is "busy" for a
    # minute: none may be lost.
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    count = limit // 2 + 2000  # a create and a close each: past the limit
    if count > 60_000:
        pytest.skip(f"fs.inotify.max_queued_events={limit}: too many files to overflow it")
    monkeypatch.setattr("clerk.daemon.watch.BUSY_PAUSE", 60.0)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    intake: queue.SimpleQueue[Any] = queue.SimpleQueue()
    watchers = Watchers(intake)
    watchers.worker_idle.clear()
    watchers.start([Root("inbox", str(inbox))])
    try:
        for i in range(count):
            (inbox / f"b{i:06d}.txt").write_text("x")
        watchers.worker_idle.set()  # the batch is over: what was read is parsed now
        closed: set[str] = set()
        seen: list[Any] = []

        def all_closed() -> bool:
            while not intake.empty():
                item = intake.get_nowait()
                seen.append(item)
                if isinstance(item, FsEvent) and item.kind in ("closed", "new_closed"):
                    closed.add(item.path)
            return len(closed) == count

        wait_until(all_closed, timeout=60, what=f"{count} files closed")
        assert not any(isinstance(item, Overflow) for item in seen)
    finally:
        watchers.close()


def test_the_daemons_gauge_holds_only_after_an_overflow() -> None:
    # a burst goes on being handled as it comes (docs/operations.md, Floods); only lost
    # events make complete files wait for the one walk after the flood
    gauge = FloodGauge()
    start = time.monotonic()
    gauge.saw(100_000)
    assert not gauge.holding(start + 1.0)
    gauge.overflowed(start + 1.0)
    gauge.saw(100_000)
    assert gauge.holding(start + 1.5)
