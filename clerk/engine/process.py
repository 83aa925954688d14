"""Run one child process the way the engine needs: own process group, capped logs,
timeout and cancel that kill the whole group, and its resource usage from wait4.

The child starts in a new session (posix_spawn with `setsid`), so its pid is the
process group id and everything it forks stays in that group unless it calls setsid
itself. When the leader exits, whatever is left of its group is killed with SIGKILL
before the leader is reaped (the zombie keeps the pgid from being reused meanwhile):
a task leaves no processes behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from clerk.engine.api import (
    CANCELLED,
    EXIT,
    MEMORY,
    PROCESSES,
    SIGNAL,
    SPAWN,
    TIMEOUT,
    TaskContext,
    TaskResult,
)
from clerk.private import private_dir, private_file

_CHUNK = 65536
_POLL = 0.2  # how often a waiting attempt looks at its cancel flag
_MEMORY_POLL = 0.05  # how often the memory and processes of a task with limits are counted
_PAGE = os.sysconf("SC_PAGE_SIZE")
_DRAIN = 1.0  # how long to read pipes still held open by an escaped process


class CappedLog:
    """A log file that keeps the first `limit` bytes and notes how much it dropped.

    The file is created on the first write, so a task that prints nothing costs no
    file. Resolved secret values (`secrets`, as `clerk.config.redact` treats them) are
    replaced by `***` as the data is written: the last bytes of each write are held
    back until the next write or `close`, so a value split across two reads is still
    found.
    """

    def __init__(self, path: Path, limit: int, secrets: Sequence[str] = ()):
        self.path = path
        self.file: BinaryIO | None = None
        self.limit = limit
        self.written = 0
        self.dropped = 0
        values = {value.encode() for value in secrets if value and len(value) >= 4}
        self._secrets = sorted(values, key=len, reverse=True)  # longest first
        self._hold = max((len(value) for value in self._secrets), default=1) - 1
        self._pending = b""

    def write(self, data: bytes) -> None:
        if not self._secrets:
            self._keep(data)
            return
        data = self._redact(self._pending + data)
        cut = max(0, len(data) - self._hold)
        self._pending = data[cut:]
        self._keep(data[:cut])

    def _redact(self, data: bytes) -> bytes:
        for value in self._secrets:
            data = data.replace(value, b"***")
        return data

    def _keep(self, data: bytes) -> None:
        if not data:
            return
        room = self.limit - self.written
        if room > 0:
            self._open().write(data[:room])
            self.written += min(room, len(data))
        self.dropped += max(0, len(data) - max(room, 0))

    def _open(self) -> BinaryIO:
        if self.file is None:
            private_dir(self.path.parent)
            self.file = private_file(self.path)  # closed in close()
        return self.file

    def close(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, b""
            self._keep(self._redact(pending))
        if self.dropped:
            self._open().write(f"\n[clerk: log capped at {self.limit} bytes;"
                               f" {self.dropped} more bytes dropped]\n".encode())  # fmt: skip
        if self.file is not None:
            self.file.close()


def group_usage(pgid: int) -> tuple[int, int]:
    """The resident memory (bytes) and the number of live processes of a process group,
    from /proc. Zombies count as processes (they hold a pid) but not as memory."""
    rss = processes = 0
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
            processes += 1
            rss += int(fields[21]) * _PAGE  # field 24: rss in pages
    return rss, processes


def group_rss(pgid: int) -> int:
    """Resident memory of every process in a process group, in bytes (from /proc)."""
    return group_usage(pgid)[0]


def start_time(pid: int) -> int | None:
    """When a process started (clock ticks since boot; field 22 of /proc/PID/stat), or
    None if it is gone: what `clerk.engine.recovery` checks a process group against.
    Read with bare os calls: the runner asks this for every process it starts."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        stat = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    return int(stat[stat.rfind(b")") + 2 :].split()[19])


_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def boot_ticks() -> int:
    """Now, in the unit and clock of `start_time` (clock ticks since boot)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // _TICK_NS


def start_time_between(pid: int, before: int, after: int) -> int | None:
    """`start_time(pid)` of a process started between two `boot_ticks()` readings.

    The kernel stamps a new process with the same clock (CLOCK_BOOTTIME, also inside a
    time namespace) and truncates it to ticks the same way, so when both readings fall
    in one tick that tick is its start time: no /proc read (a tick is 10 ms, a spawn
    well under 1, so that is nearly always the case). Otherwise /proc says."""
    return before if before == after else start_time(pid)


_GROUP_KILLED = "its process group was killed"


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
    """Run one attempt to its end on this thread (see `Attempt` for one driven by a loop)."""
    started = time.monotonic()
    try:
        pid, stdout, stderr = spawn(argv, env, cwd)
    except OSError as exc:
        return spawn_failed(argv, exc)
    context.on_process(pid, pid)
    poller = select.poll()
    attempt = Attempt(pid, stdout, stderr, context, started, poller)
    try:
        while not attempt.done:
            wake = attempt.next_wake(time.monotonic())
            for fd, _ in poller.poll(wake * 1000):
                attempt.ready(fd)
            attempt.tick(time.monotonic())
    finally:
        attempt.close()
    return attempt.result()


def spawn_failed(argv: Sequence[str], exc: OSError) -> TaskResult:
    return TaskResult(False, error_code=SPAWN, recoverable=False,
                      message=f"cannot start {argv[0]!r}: {exc.strerror or exc}")  # fmt: skip


def spawn(argv: Sequence[str], env: Mapping[str, str], cwd: str | None) -> tuple[int, int, int]:
    """Start `argv` in a new session, stdin from /dev/null, stdout and stderr into pipes;
    returns (pid, stdout fd, stderr fd). The caller reaps the child and closes the fds.

    `os.posix_spawn` (vfork + exec in glibc) costs a third of what `subprocess.Popen`
    does per process; Popen is used only for a `cwd`, which posix_spawn cannot set
    here. Every other descriptor of ours is close-on-exec (PEP 446), so the child
    inherits nothing else, as with `close_fds=True`.
    """
    if cwd is not None:
        return _popen(argv, env, cwd)
    executable = _executable(argv[0], env)
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    try:
        pid = os.posix_spawn(
            executable, list(argv), dict(env),
            file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                          (os.POSIX_SPAWN_DUP2, out_write, 1),
                          (os.POSIX_SPAWN_DUP2, err_write, 2)],
            setsid=True,
            setsigdef=_DEFAULT_SIGNALS,  # Python ignores these; programs expect the default
        )  # fmt: skip
    except BaseException:
        os.close(out_read)
        os.close(err_read)
        raise
    finally:
        os.close(out_write)
        os.close(err_write)
    return pid, out_read, err_read


_DEFAULT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)


def _executable(program: str, env: Mapping[str, str]) -> str:
    """The file to execute, found on the task's own PATH like exec*p would.

    Found files are remembered for a few seconds: a PATH search is a stat per directory,
    which a stream of short tasks would repeat for every process."""
    if "/" in program:
        return program
    path = env.get("PATH", os.defpath)
    now = time.monotonic()
    cached = _FOUND.get((program, path))
    if cached is not None and cached[1] > now:
        return cached[0]
    found = shutil.which(program, path=path)
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    if len(_FOUND) > 1000:
        _FOUND.clear()
    _FOUND[program, path] = (found, now + _FOUND_FOR)
    return found


_FOUND: dict[tuple[str, str], tuple[str, float]] = {}  # (program, PATH) -> (file, until)
_FOUND_FOR = 5.0


def environ() -> dict[str, str]:
    """A copy of clerk's environment, for a task to add its own variables to.

    Decoding `os.environ` costs a Python call per variable; the decoded copy is kept
    while the raw environment (which os.environ keeps in step with putenv) is equal.
    """
    global _ENVIRON
    raw = tuple(getattr(os.environ, "_data", {}).items())
    if not raw or raw != _ENVIRON[0]:
        _ENVIRON = (raw, dict(os.environ))
    return dict(_ENVIRON[1])


_ENVIRON: tuple[tuple[Any, ...], dict[str, str]] = ((), {})


def _popen(argv: Sequence[str], env: Mapping[str, str], cwd: str) -> tuple[int, int, int]:
    proc = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(env), cwd=cwd, start_new_session=True, close_fds=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.returncode = 0  # we reap the child ourselves (wait4); Popen must not try later
    fds = os.dup(proc.stdout.fileno()), os.dup(proc.stderr.fileno())
    proc.stdout.close()
    proc.stderr.close()
    return proc.pid, *fds


class Attempt:
    """One running child, driven by whoever polls its descriptors: pumps its pipes into
    capped logs, kills its group on timeout, cancel or memory, and reaps it.

    The owner registers nothing itself: the attempt registers its pipes and a pidfd on
    the given `select.poll` object, and the owner calls `ready(fd)` for each event,
    `tick(now)` after each wake (at least every `next_wake(now)` seconds) until `done`,
    then `close()` and `result()`. `run_process` drives one; the runner drives all of
    its shell attempts from its own loop, so no thread waits per process.
    """

    def __init__(self, pid: int, stdout: int, stderr: int, context: TaskContext,
                 started: float, poller: select.poll):  # fmt: skip
        self.pid = pid
        self.context = context
        self.pgid = pid
        self.started = started
        self.deadline = started + context.timeout if context.timeout else None
        self.reason: str | None = None  # why we killed it: TIMEOUT, CANCELLED, MEMORY...
        self.peak_rss = 0  # of the whole group, when there is a memory limit
        self.peak_processes = 0  # of the whole group, when it is measured
        self.measured = bool(context.memory_limit or context.process_limit)
        self.next_measure = 0.0
        self.kill_at: float | None = None  # when SIGTERM turns into SIGKILL
        self.poller = poller
        self.pidfd = os.pidfd_open(pid)
        self.fds = (stdout, stderr, self.pidfd)
        self.open_fds = {stdout, stderr}  # pipes not at EOF yet
        self.logs: dict[int, CappedLog] = {}
        for fd, path in ((stdout, context.stdout_log), (stderr, context.stderr_log)):
            self.logs[fd] = CappedLog(path, context.log_limit, context.secrets)
            poller.register(fd, select.POLLIN)
        poller.register(self.pidfd, select.POLLIN)
        self.status: int | None = None  # wait status, once reaped
        self.rusage: object = None
        self.wall = 0.0
        self.drain_until = 0.0  # after the exit: how long to read pipes a stray holds open

    def ready(self, fd: int) -> None:
        if fd == self.pidfd:
            self._exited()
        elif fd in self.open_fds:
            self._pump(fd)

    def _exited(self) -> None:
        if self.status is not None:
            return
        kill_group(self.pgid)  # leftovers of the group, while the zombie holds the pgid
        _, self.status, self.rusage = os.wait4(self.pid, 0)
        self.wall = time.monotonic() - self.started
        self.poller.unregister(self.pidfd)
        self.drain_until = time.monotonic() + _DRAIN

    @property
    def done(self) -> bool:
        if self.status is None:
            return False
        return not self.open_fds or time.monotonic() >= self.drain_until

    def tick(self, now: float) -> None:
        if self.status is None:
            self._enforce()

    def next_wake(self, now: float) -> float:
        if self.status is not None:
            return max(0.0, self.drain_until - now)
        return self._next_wake()

    def _next_wake(self) -> float:
        now = time.monotonic()
        wake = _MEMORY_POLL if self.measured else _POLL
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
            else:
                over = self._over_limit(now)
                if over is not None:
                    self.reason = over  # no grace: it would only grow meanwhile
                    kill_group(self.pgid, signal.SIGKILL)
        elif self.kill_at is not None and now >= self.kill_at:
            kill_group(self.pgid, signal.SIGKILL)
            self.kill_at = None

    def _over_limit(self, now: float) -> str | None:
        """MEMORY or PROCESSES when the group is over that limit, from one /proc count.

        Processes are counted, not capped by the kernel: RLIMIT_NPROC counts every
        process of the user (the daemon's own and every other task's) and does not bind
        root, and a pids cgroup needs a delegated cgroup v2 subtree most setups do not
        give clerk. A count every 50 ms stops a fork bomb within a few generations; the
        group is killed whole, and forks racing that kill are stopped by the kernel."""
        if not self.measured or now < self.next_measure:
            return None
        self.next_measure = now + _MEMORY_POLL
        rss, processes = group_usage(self.pgid)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_processes = max(self.peak_processes, processes)
        memory, most = self.context.memory_limit, self.context.process_limit
        if memory and self.peak_rss > memory:
            return MEMORY
        if most and self.peak_processes > most:
            return PROCESSES
        return None

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
            self.poller.unregister(fd)
            self.open_fds.discard(fd)

    def close(self) -> None:
        """Let go of the descriptors (reaping first if the owner gives up early)."""
        if self.status is None:
            kill_group(self.pgid)
            _, self.status, self.rusage = os.wait4(self.pid, 0)
            self.wall = time.monotonic() - self.started
        for fd in self.fds:
            with contextlib.suppress(KeyError, ValueError):
                self.poller.unregister(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        for log in self.logs.values():
            log.close()

    def result(self) -> TaskResult:
        assert self.status is not None
        code = os.waitstatus_to_exitcode(self.status)
        result = self._verdict(code)
        result.wall = self.wall
        result.cpu_user = getattr(self.rusage, "ru_utime", None)
        result.cpu_sys = getattr(self.rusage, "ru_stime", None)
        rss = getattr(self.rusage, "ru_maxrss", 0) * 1024  # KiB
        result.max_rss = max(rss, self.peak_rss)
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
        if self.reason == PROCESSES:
            most, seen = self.context.process_limit, self.peak_processes
            message = f"process limit {most} exceeded ({seen} processes); {_GROUP_KILLED}"
            return TaskResult(False, code, PROCESSES, message, recoverable=False)
        if code == 0:
            return TaskResult(True, 0)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            return TaskResult(False, code, SIGNAL, f"killed by {name}", recoverable=True)
        return TaskResult(False, code, EXIT, f"exited with status {code}", recoverable=True)
