"""Crash recovery: find runs whose runner died, and kill what their tasks left running.

A task's process group id and its leader's start time (field 22 of /proc/PID/stat)
are stored when it starts. After a crash the group is killed only if it is provably
the old one: the leader is still alive with the same start time, or the leader is gone
(then no new process can have taken the id while members of the old group remain,
because Linux never hands out a pid still in use as a process group id).
"""

from __future__ import annotations

import os
import socket

from clerk.engine.process import kill_group


def proc_start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[19])


def kill_leftovers(pgid: int | None, started: int | None) -> bool:
    """Kill the process group of an interrupted task if it is still the same; True if so."""
    if not pgid or pgid <= 1:
        return False
    now = proc_start_time(pgid)
    if now is not None and started is not None and now != started:
        return False  # the id belongs to another process now
    return kill_group(pgid)


def runner_alive(pid: int | None, host: str | None) -> bool:
    """Whether the process recorded as a run's runner is still a clerk process here."""
    if pid is None:
        return False
    if host and host != socket.gethostname():
        return True  # another machine's runner: we cannot tell, so we leave it be
    if pid == os.getpid():
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return False
    return b"clerk" in cmdline
