"""Run one child process the way the engine needs: own process group, capped logs,
timeout and cancel that kill the whole group, and its resource usage from wait4.

The child starts in a new session (`start_new_session=True`), so its pid is the
process group id and everything it forks stays in that group unless it calls setsid
itself. When the leader exits, whatever is left of its group is killed with SIGKILL
before the leader is reaped (the zombie keeps the pgid from being reused meanwhile):
a task leaves no processes behind.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from clerk.engine.api import (
    CANCELLED,
    EXIT,
    MEMORY,
    SIGNAL,
    SPAWN,
    TIMEOUT,
    TaskContext,
    TaskResult,
)

_CHUNK = 65536
_POLL = 0.2  # how often a waiting attempt looks at its cancel flag
_MEMORY_POLL = 0.05  # how often the memory of a task with a limit is measured
_PAGE = os.sysconf("SC_PAGE_SIZE")
_DRAIN = 1.0  # how long to read pipes still held open by an escaped process


class CappedLog:
    """A log file that keeps the first `limit` bytes and notes how much it dropped."""

    def __init__(self, path: Path, limit: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file: BinaryIO = open(path, "wb")  # noqa: SIM115 (closed in close())
        self.limit = limit
        self.written = 0
        self.dropped = 0

    def write(self, data: bytes) -> None:
        room = self.limit - self.written
        if room > 0:
            self.file.write(data[:room])
            self.written += min(room, len(data))
        self.dropped += max(0, len(data) - max(room, 0))

    def close(self) -> None:
        if self.dropped:
            self.file.write(f"\n[clerk: log capped at {self.limit} bytes;"
                            f" {self.dropped} more bytes dropped]\n".encode())  # fmt: skip
        self.file.close()


def group_rss(pgid: int) -> int:
    """Resident memory of every process in a process group, in bytes (from /proc)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid:  # field 5: the process group
            total += int(fields[21]) * _PAGE  # field 24: rss in pages
    return total


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.1f}MiB"


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a whole process group; False when it no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def run_process(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None, context: TaskContext
) -> TaskResult:
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        return TaskResult(False, error_code=SPAWN, recoverable=False,
                          message=f"cannot start {argv[0]!r}: {exc.strerror or exc}")  # fmt: skip
    context.on_process(proc.pid, proc.pid)
    watch = _Watch(proc, context, started)
    try:
        status, rusage = watch.wait()
    finally:
        watch.close()
    proc.returncode = os.waitstatus_to_exitcode(status)  # we reaped it, not Popen
    return watch.result(proc.returncode, rusage, time.monotonic() - started)


class _Watch:
    """Pumps a child's pipes into logs until it exits, killing it on timeout or cancel."""

    def __init__(self, proc: subprocess.Popen[bytes], context: TaskContext, started: float):
        self.proc = proc
        self.context = context
        self.pgid = proc.pid
        self.deadline = started + context.timeout if context.timeout else None
        self.reason: str | None = None  # why we killed it: TIMEOUT | CANCELLED | MEMORY
        self.peak_rss = 0  # of the whole group, when there is a memory limit
        self.next_measure = 0.0
        self.kill_at: float | None = None  # when SIGTERM turns into SIGKILL
        self.selector = selectors.DefaultSelector()
        self.pidfd = os.pidfd_open(proc.pid)
        self.logs: dict[int, CappedLog] = {}
        for stream, path in ((proc.stdout, context.stdout_log), (proc.stderr, context.stderr_log)):
            assert stream is not None
            self.logs[stream.fileno()] = CappedLog(path, context.log_limit)
            self.selector.register(stream.fileno(), selectors.EVENT_READ)
        self.selector.register(self.pidfd, selectors.EVENT_READ)

    def wait(self) -> tuple[int, object]:
        exited = False
        while not exited:
            for key, _ in self.selector.select(self._next_wake()):
                if key.fd == self.pidfd:
                    exited = True
                else:
                    self._pump(key.fd)
            self._enforce()
        kill_group(self.pgid)  # leftovers of the group, while the zombie holds the pgid
        _, status, rusage = os.wait4(self.proc.pid, 0)
        self._drain()
        return status, rusage

    def _next_wake(self) -> float:
        now = time.monotonic()
        wake = _MEMORY_POLL if self.context.memory_limit else _POLL
        for moment in (self.deadline, self.kill_at):
            if moment is not None:
                wake = min(wake, max(0.0, moment - now))
        return wake

    def _enforce(self) -> None:
        now = time.monotonic()
        if self.reason is None:
            if self.deadline is not None and now >= self.deadline:
                self._terminate(TIMEOUT, now)
            elif self.context.cancel.is_set():
                self._terminate(CANCELLED, now)
            elif self._over_memory(now):
                self.reason = MEMORY  # no grace: it would only grow meanwhile
                kill_group(self.pgid, signal.SIGKILL)
        elif self.kill_at is not None and now >= self.kill_at:
            kill_group(self.pgid, signal.SIGKILL)
            self.kill_at = None

    def _over_memory(self, now: float) -> bool:
        limit = self.context.memory_limit
        if not limit or now < self.next_measure:
            return False
        self.next_measure = now + _MEMORY_POLL
        self.peak_rss = max(self.peak_rss, group_rss(self.pgid))
        return self.peak_rss > limit

    def _terminate(self, reason: str, now: float) -> None:
        self.reason = reason
        if self.context.kill_grace > 0:
            kill_group(self.pgid, signal.SIGTERM)
            self.kill_at = now + self.context.kill_grace
        else:
            kill_group(self.pgid, signal.SIGKILL)

    def _pump(self, fd: int) -> None:
        data = os.read(fd, _CHUNK)
        if data:
            self.logs[fd].write(data)
        else:
            self.selector.unregister(fd)

    def _drain(self) -> None:
        """Read what is left in the pipes; give up on ones a stray process keeps open."""
        self.selector.unregister(self.pidfd)
        until = time.monotonic() + _DRAIN
        while self.selector.get_map() and time.monotonic() < until:
            for key, _ in self.selector.select(max(0.0, until - time.monotonic())):
                self._pump(key.fd)

    def close(self) -> None:
        self.selector.close()
        os.close(self.pidfd)
        for log in self.logs.values():
            log.close()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def result(self, code: int, rusage: object, wall: float) -> TaskResult:
        result = self._verdict(code)
        result.wall = wall
        result.cpu_user = getattr(rusage, "ru_utime", None)
        result.cpu_sys = getattr(rusage, "ru_stime", None)
        result.max_rss = max(getattr(rusage, "ru_maxrss", 0) * 1024, self.peak_rss)  # KiB
        return result

    def _verdict(self, code: int) -> TaskResult:
        if self.reason == TIMEOUT:
            timeout = self.context.timeout or 0
            message = f"timed out after {timeout:g}s; its process group was killed"
            return TaskResult(False, code, TIMEOUT, message, recoverable=True)
        if self.reason == CANCELLED:
            return TaskResult(False, code, CANCELLED, "cancelled", recoverable=False)
        if self.reason == MEMORY:
            limit = self.context.memory_limit or 0
            message = (f"memory limit {_mib(limit)} exceeded (RSS {_mib(self.peak_rss)});"
                       " its process group was killed")  # fmt: skip
            return TaskResult(False, code, MEMORY, message, recoverable=False)
        if code == 0:
            return TaskResult(True, 0)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            return TaskResult(False, code, SIGNAL, f"killed by {name}", recoverable=True)
        return TaskResult(False, code, EXIT, f"exited with status {code}", recoverable=True)
