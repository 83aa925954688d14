"""Measure `clerk daemon`: close-to-move latency, a burst of files, idle CPU.

    python benchmarks/bench_daemon.py            # --rate 200 --seconds 20 --burst 100000 --idle 30

In one run, each against its reference:
(a) latency from a file's close (by this script's writer) to its move done (IN_MOVED_TO /
    IN_CREATE seen by this script's own inotify watch on the destination), p50 and p99,
    at a steady --rate files/s for --seconds, for a real `clerk daemon` (fresh CLERK_HOME,
    one watched inbox, one rule moving *.dat) and for the reference
    `inotifywait -m -e close_write | while read f; do mv "$f" OUT/; done` loop;
(b) a burst of --burst files written into the watched inbox of a running daemon: time
    until the last one is in the destination (then verified), against `clerk scan` of the
    same tree (a fresh copy, a fresh store), and the daemon's peak RSS (VmHWM);
(c) the daemon's CPU (utime + stime from /proc/PID/stat) over --idle seconds with
    --roots watched roots holding a few files no rule wants.

Every run is verified (each file in the destination once, nothing left behind; for clerk,
one 'done' move per file in its journal). Results go to a table, PASS/FAIL lines and
`.bench/results-daemon.json`. Exit status: 0 when every run verified, 1 when one did not
(or, with --strict, when a target failed).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import os
import select
import shutil
import signal
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench_harness import fresh_copy, last_line, log, machine_info, measure

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent

P50_VS_REF_MAX = 1.0
P99_VS_REF_MAX = 2.0
BURST_VS_SCAN_MAX = 1.5
RSS_MAX_MIB = 250.0
IDLE_CPU_MAX_PERCENT = 1.0

PAYLOAD = b"clerk daemon benchmark\n" * 40  # ~1 KiB: the content does not matter here
WARMUP_FILES = 20  # moved before the clock starts: first-use imports are not latency
READY_TIMEOUT = 120.0
DRAIN_TIMEOUT = 30.0  # after the last write, how long a contender may take to catch up

IN_CREATE, IN_MOVED_TO, IN_Q_OVERFLOW = 0x100, 0x80, 0x4000
_EVENT = struct.Struct("iIII")


# --- observing the destination ---------------------------------------------------------------


class Arrivals:
    """An inotify watch on a directory, on a thread of its own: when each expected name
    appeared there (IN_MOVED_TO for renames, IN_CREATE for link + unlink placements)."""

    def __init__(self, directory: Path, expected: set[str]):
        self.expected = expected
        self.times: dict[str, float] = {}
        self.overflowed = False
        self.all_in = threading.Event()
        self._count = 0  # expected names seen
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self.fd, os.fsencode(directory), IN_CREATE | IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory}")
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def expect(self, names: set[str]) -> None:
        self.expected = names
        self.all_in.clear()
        self._count = len(names & self.times.keys())

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._stop_r in ready:
                return
            try:
                data = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                continue
            now = time.monotonic()  # one read is one instant: events in it arrived by now
            self._parse(data, now)

    def _parse(self, data: bytes, now: float) -> None:
        offset = 0
        while offset < len(data):
            _, mask, _, length = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            offset = start + length
            if mask & IN_Q_OVERFLOW:
                self.overflowed = True
                continue
            name = data[start : start + length].rstrip(b"\0").decode("utf-8", "surrogateescape")
            if name in self.expected and name not in self.times:
                self.times[name] = now
                self._count += 1
                if self._count >= len(self.expected):
                    self.all_in.set()

    def wait(self, directory: Path, timeout: float) -> bool:
        """Until every expected name is in; after an overflow, by listing the directory."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.all_in.wait(0.25):
                return True
            if self.overflowed and self.expected <= set(os.listdir(directory)):
                return True
        return self.all_in.is_set()

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self.fd, self._stop_r, self._stop_w):
            os.close(fd)


# --- writing files -----------------------------------------------------------------------------


def write_file(path: Path) -> float:
    """Create, write and close one file; the monotonic time of its close. Bare os calls:
    a Python file object costs more than the three system calls it makes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, PAYLOAD)
    finally:
        os.close(fd)
    return time.monotonic()


def paced_writes(directory: Path, names: list[str], rate: float) -> dict[str, float]:
    """Write one file every 1/rate s on a fixed schedule (a late write does not shift the
    ones after it); the close time of each."""
    closed: dict[str, float] = {}
    started = time.monotonic()
    for index, name in enumerate(names):
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing: this is the load generator, not a wait on a result
        closed[name] = write_file(directory / name)
    return closed


def names_for(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:07d}.dat" for i in range(count)]


_WRITER = """
import os, sys, time
directory, payload, names = sys.argv[1], sys.argv[2].encode(), sys.stdin.read().split()
flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
print(time.monotonic(), flush=True)
for name in names:
    fd = os.open(os.path.join(directory, name), flags, 0o644)
    os.write(fd, payload)
    os.close(fd)
print(time.monotonic(), flush=True)
"""


def burst_writer(directory: Path, names: list[str]) -> tuple[float, float]:
    """Write the files from a process of their own (files come from elsewhere, and this
    process's watch thread must not slow the writer down); (start, seconds) on the
    system-wide monotonic clock."""
    argv = [sys.executable, "-S", "-c", _WRITER, str(directory), PAYLOAD.decode()]
    done = subprocess.run(argv, input="\n".join(names), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the burst writer failed: {done.stderr.strip()[-300:]}")
    started, ended = (float(line) for line in done.stdout.split())
    return started, ended - started


# --- contenders --------------------------------------------------------------------------------


def rules_yaml(inboxes: list[Path], out: Path) -> str:
    """One watched root per inbox, a destination root, one rule moving *.dat."""
    lines = ["roots:"]
    names = [f"inbox{i}" for i in range(len(inboxes))]
    for name, inbox in zip(names, inboxes, strict=True):
        lines.append(f"  {name}: {{path: {json.dumps(str(inbox))}}}")
    lines += [
        f"  out: {{path: {json.dumps(str(out))}, watch: false}}",
        "rules:",
        "  - name: data",
        f"    in: {json.dumps(names)}",
        "    match: [{extension: dat}]",
        f"    actions: [{{move: {json.dumps(str(out) + '/{name}')}}}]",
    ]
    return "\n".join(lines) + "\n"


def clerk_env(home: Path, inboxes: list[Path], out: Path) -> dict[str, str]:
    (home / "rules.d").mkdir(parents=True)
    (home / "rules.d" / "bench.yaml").write_text(rules_yaml(inboxes, out))
    env = {k: v for k, v in os.environ.items() if k not in ("CLERK_CONFIG", "CLERK_PROFILE")}
    env["CLERK_HOME"] = str(home)
    return env


class Daemon:
    """A real `clerk daemon` process; READY=1 on a notify socket of our own."""

    def __init__(self, clerk: str, home: Path, inboxes: list[Path], out: Path, log_path: Path):
        self.home = home
        self.log_path = log_path
        self._sock_dir = tempfile.mkdtemp(prefix="clerk-bench-")  # sun_path is short
        sock_path = os.path.join(self._sock_dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(sock_path)
        self._stopping = threading.Event()
        self._drainer: threading.Thread | None = None
        env = clerk_env(home, inboxes, out) | {"NOTIFY_SOCKET": sock_path}
        with open(log_path, "ab") as sink:
            self.proc = subprocess.Popen(
                [clerk, "daemon"], stdout=sink, stderr=subprocess.STDOUT, env=env
            )

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clerk daemon exited: {last_line(self.log_path)}")
            self.sock.settimeout(0.2)
            try:
                message = self.sock.recv(65536).decode()
            except TimeoutError:
                continue
            if "READY=1" in message.splitlines():
                # read on, as systemd does: a full socket buffer blocks the daemon's sends
                self._drainer = threading.Thread(target=self._drain, daemon=True)
                self._drainer.start()
                return
        raise RuntimeError(f"clerk daemon not ready after {timeout:.0f}s")

    def _drain(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                self.sock.recv(65536)

    def proc_status(self, key: str) -> int:
        """A kB figure from /proc/PID/status (VmHWM: peak RSS)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def cpu_seconds(self) -> float:
        """utime + stime of the whole process (every thread) so far."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stopping.set()
        if self._drainer is not None:
            self._drainer.join()
        self.sock.close()
        shutil.rmtree(self._sock_dir, ignore_errors=True)
        return self.proc.returncode


class Reference:
    """`inotifywait -m -e close_write | while read f; do mv "$f" OUT/; done`."""

    SCRIPT = (
        'inotifywait -m -e close_write --format %w%f "$1" | while read f; do mv "$f" "$2"/; done'
    )

    def __init__(self, inbox: Path, out: Path, log_path: Path):
        self.log_path = log_path
        self.proc = subprocess.Popen(
            ["bash", "-c", self.SCRIPT, "reference", str(inbox), str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own group: stopping it stops the pipeline
        )

    def wait_ready(self) -> None:
        assert self.proc.stderr is not None
        lines = []
        for raw in self.proc.stderr:
            lines.append(raw.decode(errors="replace"))
            if raw.startswith(b"Watches established"):
                self._drainer = threading.Thread(target=self._drain, daemon=True)
                self._drainer.start()
                return
        raise RuntimeError(f"inotifywait did not start: {''.join(lines)}")

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        with open(self.log_path, "ab") as sink:
            shutil.copyfileobj(self.proc.stderr, sink)

    def stop(self) -> int:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)
        return 0


# --- checks ------------------------------------------------------------------------------------


def check_moved(inbox: Path, out: Path, names: set[str]) -> list[str]:
    there, left = set(os.listdir(out)), set(os.listdir(inbox))
    problems = []
    if there != names:
        missing, extra = len(names - there), len(there - names)
        problems.append(f"destination: {missing} files missing, {extra} unexpected")
    if left & names:
        problems.append(f"{len(left & names)} files still in the inbox")
    return problems


def check_journal(db_path: Path, out: Path, names: set[str]) -> list[str]:
    """One 'done' move per file, to the destination, and no op in another state."""
    if not db_path.exists():
        return [f"no store at {db_path}"]
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
        ops = conn.execute("SELECT kind, state, dst FROM ops").fetchall()
    done = [os.fsdecode(dst) for kind, state, dst in ops if (kind, state) == ("move", "done")]
    problems = []
    if len(done) != len(ops):
        problems.append(f"journal: {len(ops) - len(done)} ops not 'done' moves")
    if len(done) != len(names) or {os.path.basename(d) for d in done} != names:
        problems.append(f"journal: {len(done)} done moves for {len(names)} files")
    if any(os.path.dirname(d) != str(out) for d in done):
        problems.append("journal: moves to somewhere else than the destination")
    return problems


# --- the phases ----------------------------------------------------------------------------------


@dataclass
class Result:
    """One contender in one phase."""

    phase: str  # latency | burst | idle
    contender: str
    files: int = 0
    seconds: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    peak_rss_mib: float | None = None
    cpu_percent: float | None = None
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None
    note: str | None = None

    @property
    def verified(self) -> bool:
        return self.skipped is None and not self.problems

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"verified": self.verified}


def percentile(values: list[float], pct: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = Path(args.work_dir).absolute()
        self.results: list[Result] = []
        self.trash: list[Path] = []  # verified runs' directories, removed at the end

    def run_dir(self, name: str) -> Path:
        path = self.work / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def done_with(self, path: Path, result: Result) -> None:
        # Removed at the end, not now: on ext4 (discard) deleting 100,000 files takes
        # ~17 s and slows every file created for tens of seconds after (the writer of a
        # burst after it measured 15-34 s instead of 4-7 s).
        if not self.args.keep and result.verified:
            self.trash.append(path)

    def clean_up(self) -> None:
        for path in self.trash:
            shutil.rmtree(path, ignore_errors=True)
        self.trash.clear()

    def settle_disk(self) -> None:
        """Before a timed phase: earlier phases' writeback must not land inside it."""
        if not self.args.no_sync:
            os.sync()

    # (a) ----------------------------------------------------------------------------------------
    def latency(self) -> None:
        self.latency_of("clerk daemon", self.latency_clerk)
        if self.args.skip_reference:
            self.results.append(Result("latency", "inotifywait | mv", skipped="--skip-reference"))
        elif shutil.which("inotifywait") is None:
            skipped = "inotifywait not installed (benchmarks/setup.sh)"
            self.results.append(Result("latency", "inotifywait | mv", skipped=skipped))
        else:
            self.latency_of("inotifywait | mv", self.latency_reference)

    def latency_of(self, contender: str, go: Any) -> None:
        slug = "clerk" if contender.startswith("clerk") else "reference"
        run_dir = self.run_dir(f"latency-{slug}")
        inbox, out = run_dir / "inbox", run_dir / "out"
        inbox.mkdir()
        out.mkdir()
        count = max(1, round(self.args.rate * self.args.seconds))
        result = Result("latency", contender, count)
        log(f"latency: {contender}, {count} files at {self.args.rate:g}/s ...")
        try:
            go(run_dir, inbox, out, result)
        except (OSError, RuntimeError) as exc:
            result.problems.append(f"cannot run: {exc}")
        self.results.append(result)
        log(f"  p50 {result.p50_ms} ms, p99 {result.p99_ms} ms, {result.problems or 'ok'}")
        self.done_with(run_dir, result)

    def latency_clerk(self, run_dir: Path, inbox: Path, out: Path, result: Result) -> None:
        home = run_dir / "clerk-home"
        daemon = Daemon(self.args.clerk, home, [inbox], out, run_dir / "daemon.log")
        try:
            daemon.wait_ready()
            names = self.measure_latency(inbox, out, result)
            result.peak_rss_mib = daemon.proc_status("VmHWM") / 1024
        finally:
            code = daemon.stop()
        if code != 0:
            result.problems.append(f"daemon exit status {code}, log {run_dir / 'daemon.log'}")
        result.problems += check_journal(home / "clerk.db", out, names)

    def latency_reference(self, run_dir: Path, inbox: Path, out: Path, result: Result) -> None:
        reference = Reference(inbox, out, run_dir / "reference.log")
        try:
            reference.wait_ready()
            self.measure_latency(inbox, out, result)
        finally:
            reference.stop()

    def measure_latency(self, inbox: Path, out: Path, result: Result) -> set[str]:
        """Warm up, then the paced writes; fills result; returns every name written."""
        warmup = names_for("warmup", WARMUP_FILES)
        timed = names_for("file", result.files)
        arrivals = Arrivals(out, set(warmup))
        try:
            paced_writes(inbox, warmup, self.args.rate)
            if not arrivals.wait(out, DRAIN_TIMEOUT):
                raise RuntimeError("the warm-up files were not moved")
            arrivals.expect(set(timed))
            closed = paced_writes(inbox, timed, self.args.rate)
            arrivals.wait(out, DRAIN_TIMEOUT)
        finally:
            arrivals.close()
        latencies = [
            (arrivals.times[name] - closed[name]) * 1000 for name in timed if name in arrivals.times
        ]
        if arrivals.overflowed:
            result.problems.append("the destination watch overflowed: latencies incomplete")
        if latencies:
            result.p50_ms = round(percentile(latencies, 50), 3)
            result.p99_ms = round(percentile(latencies, 99), 3)
            result.max_ms = round(max(latencies), 3)
        result.seconds = round(max(closed.values()) - min(closed.values()), 3)
        everything = set(warmup) | set(timed)
        result.problems += check_moved(inbox, out, everything)
        return everything

    # (b) ----------------------------------------------------------------------------------------
    def burst(self) -> None:
        count = self.args.burst
        names = names_for("burst", count)
        master = self.run_dir("burst-master") / "tree"
        master.mkdir()
        for name in names:
            write_file(master / name)
        self.results.append(self.burst_scan(master, set(names)))
        self.results.append(self.burst_daemon(names))
        if not self.args.keep:
            self.trash.append(master.parent)

    def burst_scan(self, master: Path, names: set[str]) -> Result:
        run_dir = self.work / "burst-scan"
        tree, out = fresh_copy(master, run_dir, sync=not self.args.no_sync)
        result = Result("burst", "clerk scan", len(names))
        log(f"burst: clerk scan of {len(names)} files ...")
        env = clerk_env(run_dir / "clerk-home", [tree], out)
        measured = measure([self.args.clerk, "scan"], output=run_dir / "run.log", env=env)
        result.seconds = round(measured.seconds, 3)
        result.peak_rss_mib = round(measured.max_rss_mib, 1)
        if measured.returncode != 0:
            why = last_line(run_dir / "run.log")
            result.problems.append(f"exit status {measured.returncode} ({why})")
        else:
            result.problems += check_moved(tree, out, names)
            result.problems += check_journal(run_dir / "clerk-home" / "clerk.db", out, names)
        log(f"  {result.seconds:.2f}s, {result.problems or 'ok'}")
        self.done_with(run_dir, result)
        return result

    def burst_daemon(self, names: list[str]) -> Result:
        run_dir = self.run_dir("burst-daemon")
        inbox, out = run_dir / "inbox", run_dir / "out"
        inbox.mkdir()
        out.mkdir()
        result = Result("burst", "clerk daemon", len(names))
        log(f"burst: {len(names)} files into a running daemon's inbox ...")
        home = run_dir / "clerk-home"
        daemon = Daemon(self.args.clerk, home, [inbox], out, run_dir / "daemon.log")
        try:
            daemon.wait_ready()
            self.settle_disk()
            cpu = daemon.cpu_seconds()
            self.timed_burst(inbox, out, names, result)
            result.peak_rss_mib = round(daemon.proc_status("VmHWM") / 1024, 1)
            result.note = f"{result.note}; the daemon used {daemon.cpu_seconds() - cpu:.1f} CPU-s"
        except (OSError, RuntimeError) as exc:
            result.problems.append(f"cannot run: {exc}")
        finally:
            code = daemon.stop()
        if code != 0:
            result.problems.append(f"daemon exit status {code}, log {run_dir / 'daemon.log'}")
        result.problems += check_moved(inbox, out, set(names))
        result.problems += check_journal(home / "clerk.db", out, set(names))
        log(f"  {result.seconds}s, {result.peak_rss_mib} MiB, {result.problems or 'ok'}")
        self.done_with(run_dir, result)
        return result

    def timed_burst(self, inbox: Path, out: Path, names: list[str], result: Result) -> None:
        arrivals = Arrivals(out, set(names))
        try:
            started, written = burst_writer(inbox, names)
            timeout = max(DRAIN_TIMEOUT, 60 + len(names) / 200)  # >= 200 files/s or a failure
            if not arrivals.wait(out, timeout):
                raise RuntimeError(f"not all files moved after {timeout:.0f}s")
            # after an overflow the listing saw the last file: its time is now, roughly
            ended = max(arrivals.times.values()) if arrivals.all_in.is_set() else time.monotonic()
        finally:
            arrivals.close()
        result.seconds = round(ended - started, 3)
        result.note = f"writing the files took {written:.2f}s of that"
        if arrivals.overflowed:
            result.note += "; the benchmark's own destination watch overflowed (time by listing)"

    # (c) ----------------------------------------------------------------------------------------
    def idle(self) -> None:
        run_dir = self.run_dir("idle")
        roots = [run_dir / f"root{i}" for i in range(self.args.roots)]
        for index, root in enumerate(roots):
            root.mkdir()
            for n in range(3):  # a few files no rule wants
                (root / f"note-{index}-{n}.txt").write_text("stays\n")
        out = run_dir / "out"
        out.mkdir()
        result = Result("idle", f"clerk daemon, {len(roots)} roots")
        log(f"idle: daemon watching {len(roots)} roots for {self.args.idle:g}s ...")
        daemon = Daemon(self.args.clerk, run_dir / "clerk-home", roots, out, run_dir / "daemon.log")
        try:
            daemon.wait_ready()
            time.sleep(1.0)  # start-up work that outlives READY is not idling
            cpu, wall = daemon.cpu_seconds(), time.monotonic()
            time.sleep(self.args.idle)  # the measurement window itself
            cpu, wall = daemon.cpu_seconds() - cpu, time.monotonic() - wall
            result.cpu_percent = round(100 * cpu / wall, 3)
            result.seconds = round(wall, 3)
            result.peak_rss_mib = round(daemon.proc_status("VmHWM") / 1024, 1)
        except (OSError, RuntimeError) as exc:
            result.problems.append(f"cannot run: {exc}")
        finally:
            code = daemon.stop()
        if code != 0:
            result.problems.append(f"daemon exit status {code}")
        left = sum(len(os.listdir(root)) for root in roots)
        if left != 3 * len(roots) or os.listdir(out):
            result.problems.append("files no rule wants were moved")
        log(f"  {result.cpu_percent}% CPU, {result.problems or 'ok'}")
        self.results.append(result)
        self.done_with(run_dir, result)


# --- report ---------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    wanted: str
    value: float | None
    unit: str
    passed: bool | None  # None: not measured

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]
        got = "-" if self.value is None else f"{self.value:.2f}{self.unit}"
        return f"  {self.name:<40} {self.wanted:<12} got {got:<14} {verdict}"


def targets(results: list[Result]) -> list[Target]:
    def find(phase: str, prefix: str) -> Result | None:
        found = next(
            (r for r in results if r.phase == phase and r.contender.startswith(prefix)), None
        )
        return found if found is not None and found.verified else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    def test(value: float | None, limit: float, strict: bool = False) -> bool | None:
        if value is None:
            return None
        return value < limit if strict else value <= limit

    clerk, ref = find("latency", "clerk"), find("latency", "inotifywait")
    p50 = ratio(clerk and clerk.p50_ms, ref and ref.p50_ms)
    p99 = ratio(clerk and clerk.p99_ms, ref and ref.p99_ms)
    daemon, scan = find("burst", "clerk daemon"), find("burst", "clerk scan")
    burst = ratio(daemon and daemon.seconds, scan and scan.seconds)
    rss = daemon.peak_rss_mib if daemon is not None else None
    idle = find("idle", "clerk")
    cpu = idle.cpu_percent if idle is not None else None
    return [
        Target("latency p50: clerk / inotifywait loop", "<= 1x", p50, "x", test(p50, 1.0)),
        Target("latency p99: clerk / inotifywait loop", "<= 2x", p99, "x", test(p99, 2.0)),
        Target("burst: daemon / clerk scan", "<= 1.5x", burst, "x", test(burst, 1.5)),
        Target("burst: daemon peak RSS", "< 250 MiB", rss, " MiB", test(rss, 250, True)),
        Target("idle: daemon CPU", "< 1%", cpu, "%", test(cpu, 1.0, True)),
    ]


def print_report(results: list[Result], checks: list[Target]) -> None:
    print(
        f"\n{'phase':<8} {'contender':<26} {'files':>7} {'seconds':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'RSS MiB':>8} {'CPU %':>6}  verified"
    )

    def cell(value: float | None, width: int, digits: int = 2) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    for r in results:
        if r.skipped:
            print(f"{r.phase:<8} {r.contender:<26} skipped: {r.skipped}")
            continue
        verified = "yes" if r.verified else "NO: " + "; ".join(r.problems)[:200]
        print(
            f"{r.phase:<8} {r.contender:<26} {r.files:>7} {cell(r.seconds, 8)} "
            f"{cell(r.p50_ms, 8)} {cell(r.p99_ms, 8)} {cell(r.max_ms, 8)} "
            f"{cell(r.peak_rss_mib, 8, 0)} {cell(r.cpu_percent, 6)}  {verified}"
        )
        if r.note:
            print(f"         ({r.note})")
    print("\ntargets")
    for check in checks:
        print(check.line())


def write_results(
    args: argparse.Namespace,
    work: Path,
    results: list[Result],
    checks: list[Target],
    load: dict[str, list[float]],
) -> None:
    data = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(work) | {"inotifywait": shutil.which("inotifywait") or "missing"},
        "load_average": load,  # other work on the machine skews every number
        "params": {k: vars(args)[k] for k in ("rate", "seconds", "burst", "idle", "roots")},
        "results": [r.as_dict() for r in results],
        "targets": [asdict(t) for t in checks],
    }
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nresults written to {path}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    default_work = REPO / ".bench"
    default_clerk = shutil.which("clerk", path=str(Path(sys.executable).parent)) or "clerk"
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rate", type=float, default=200.0, help="files/s in the latency phase")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the latency phase")
    p.add_argument("--burst", type=int, default=100_000, help="files in the burst phase")
    p.add_argument("--idle", type=float, default=30.0, help="seconds of the idle CPU phase")
    p.add_argument("--roots", type=int, default=10, help="watched roots in the idle phase")
    p.add_argument("--phases", default="latency,burst,idle", help="which phases to run")
    p.add_argument("--skip-reference", action="store_true", help="no inotifywait loop")
    p.add_argument("--clerk", default=default_clerk, help="clerk executable")
    p.add_argument("--work-dir", default=str(default_work / "work-daemon"))
    p.add_argument("--results", default=str(default_work / "results-daemon.json"))
    p.add_argument("--no-sync", action="store_true", help="skip the syncs before timed phases")
    p.add_argument("--keep", action="store_true", help="keep every run's files and logs")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.burst < 1 or args.idle <= 0 or args.roots < 1:
        p.error("--rate, --seconds, --idle must be > 0; --burst and --roots at least 1")
    unknown = set(args.phases.split(",")) - {"latency", "burst", "idle"}
    if unknown:
        p.error(f"unknown phases: {', '.join(sorted(unknown))}")
    return args


@contextlib.contextmanager
def precise_timestamps() -> Iterator[None]:
    """The destination watch's thread must run the moment its read returns, not after
    the writer's 5 ms GIL slice: a shorter switch interval keeps our timestamps honest."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    bench.work.mkdir(parents=True, exist_ok=True)
    load_at_start = os.getloadavg()
    phases = args.phases.split(",")
    try:
        with precise_timestamps():
            if "latency" in phases:
                bench.latency()
            if "burst" in phases:
                bench.burst()
            if "idle" in phases:
                bench.idle()
    finally:
        bench.clean_up()
    checks = targets(bench.results)
    load = {"start": list(load_at_start), "end": list(os.getloadavg())}
    print_report(bench.results, checks)
    print(f"\nload average (1/5/15 min) at start {load['start']}, at end {load['end']}")
    write_results(args, bench.work, bench.results, checks, load)
    failed = [r for r in bench.results if not r.skipped and not r.verified]
    return 1 if failed or (args.strict and any(t.passed is False for t in checks)) else 0


if __name__ == "__main__":
    sys.exit(main())
