"""Measuring processes for the benchmarks: wall time, peak RSS, fresh trees, the machine."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Measured:
    seconds: float
    max_rss_mib: float
    returncode: int
    timed_out: bool = False


def measure(
    argv: list[str], *, output: Path, env: dict[str, str] | None = None, timeout: float = 0
) -> Measured:
    """Run argv to completion; wall time from spawn to exit, and its peak RSS.

    The peak RSS comes from a small wrapper process (GNU time, else a `python -S`
    launcher) that forks the command and reads its wait4 rusage. Spawned from this
    process directly, the command's ru_maxrss would start at this process's own peak:
    Linux carries the parent's high-water RSS over fork and exec. The wrapper leads its
    own process group, which the command joins, so a timeout kills both.
    """
    rss_file = output.with_name(output.name + ".rss")
    rss_file.unlink(missing_ok=True)  # a killed wrapper writes none: no stale figure
    with open(output, "wb") as sink:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*rss_wrapper(rss_file), *argv],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        guard = _Timeout(proc.pid, timeout) if timeout > 0 else None
        # wait without reaping: until then the pid cannot be reused, so the timeout can
        # never signal a stranger
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        seconds = time.perf_counter() - started
        timed_out = guard.disarm() if guard is not None else False
        proc.wait()
    return Measured(seconds, _read_rss_mib(rss_file), proc.returncode, timed_out)


_LAUNCHER = """
import os, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"cannot run {argv[0]}: {exc}", file=sys.stderr)
    os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as fh:
    fh.write(f"{usage.ru_maxrss}\\n")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


@functools.cache
def _gnu_time() -> str | None:
    path = shutil.which("time", path="/usr/bin:/bin")
    if path is None:
        return None
    done = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return path if "GNU" in done.stdout + done.stderr else None


def rss_wrapper(rss_file: Path) -> list[str]:
    """argv prefix that runs a command and writes its peak RSS (KiB) to rss_file."""
    gnu_time = _gnu_time()
    if gnu_time is not None:
        return [gnu_time, "-f", "%M", "-o", str(rss_file)]
    return [sys.executable, "-S", "-c", _LAUNCHER, str(rss_file)]


def _read_rss_mib(rss_file: Path) -> float:
    """The KiB figure on the last line (GNU time may put a status line first)."""
    try:
        lines = rss_file.read_text().split()
        return int(lines[-1]) / 1024
    except (OSError, ValueError, IndexError):
        return float("nan")


class _Timeout:
    """Kills a process group after `seconds` unless disarmed first."""

    def __init__(self, pgid: int, seconds: float):
        self.pgid = pgid
        self.lock = threading.Lock()
        self.fired = False
        self.disarmed = False
        self.timer = threading.Timer(seconds, self._kill)
        self.timer.daemon = True
        self.timer.start()

    def _kill(self) -> None:
        with self.lock:
            if self.disarmed:
                return
            self.fired = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)

    def disarm(self) -> bool:
        """Stop the timer; True if it had already killed the process."""
        self.timer.cancel()
        with self.lock:
            self.disarmed = True
            return self.fired


def fresh_copy(master: Path, run_dir: Path, *, sync: bool = True) -> tuple[Path, Path]:
    """A `cp -a` copy of the master tree in run_dir/tree, an empty run_dir/out, on disk.

    The sync keeps the copy's writeback from landing inside the timed run.
    """
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    tree, out = run_dir / "tree", run_dir / "out"
    subprocess.run(["cp", "-a", str(master), str(tree)], check=True)
    out.mkdir()
    if sync:
        os.sync()
    return tree, out


def files_under(directory: Path) -> list[str]:
    """Names of every file below directory (empty if it does not exist)."""
    return [name for _, _, filenames in os.walk(directory) for name in filenames]


def time_startup(argv: list[str], runs: int) -> list[float]:
    """Wall milliseconds of `runs` runs of argv after one untimed warm-up; [] if it fails."""
    times: list[float] = []
    for attempt in range(runs + 1):
        started = time.perf_counter()
        try:
            done = subprocess.run(argv, capture_output=True, check=False)
        except OSError:
            return []
        if done.returncode != 0:
            return []
        if attempt:
            times.append((time.perf_counter() - started) * 1000)
    return times


def machine_info(work: Path) -> dict[str, Any]:
    """What the results depend on: CPU, cores, memory, kernel, Python, file system."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        # findmnt names ext4 as such; stat -f says "ext2/ext3" for it
        "filesystem": run_text(["findmnt", "-no", "FSTYPE", "-T", str(work)])
        or run_text(["stat", "-f", "-c", "%T", str(work)]),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_text(argv: list[str]) -> str:
    """A command's stdout, stripped; the error if it cannot run."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
    except OSError as exc:
        return f"unavailable: {exc}"


def last_line(path: Path) -> str:
    """The last non-empty line of a log, to say why a run failed."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""
