"""Settle decisions on real files, with the clock passed in (no waiting)."""

from __future__ import annotations

import os
from pathlib import Path

from clerk.daemon.settle import STUCK_OPEN_MINIMUM, Settler
from clerk.rules.model import Root


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
    os.utime(path, ns=(1, 10**9))  # a different mtime: changed since the first look
    assert _ready(settler, 4.0) == []
    assert settler.next_deadline() == 6.0
    assert _ready(settler, 6.0) == [str(path)]


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
