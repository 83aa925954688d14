"""The engine's process start: the start time it records without reading /proc."""

from __future__ import annotations

import os

from clerk.engine.process import boot_ticks, spawn, start_time, start_time_between


def test_the_start_time_from_boot_ticks_is_the_one_proc_reports() -> None:
    checked = 0
    for _ in range(50):
        before = boot_ticks()
        pid, out, err = spawn(["sleep", "5"], {"PATH": os.defpath}, None)
        after = boot_ticks()
        try:
            assert start_time_between(pid, before, after) == start_time(pid)
            checked += before == after  # the case that skips /proc
        finally:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            os.close(out)
            os.close(err)
    assert checked > 0


def test_a_reading_across_a_tick_asks_proc() -> None:
    pid, out, err = spawn(["sleep", "5"], {"PATH": os.defpath}, None)
    try:
        real = start_time(pid)
        assert real is not None
        assert start_time_between(pid, real - 1, real + 1) == real
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(out)
        os.close(err)
