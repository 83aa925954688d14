"""The fault battery, crashes (issue 13): `clerk scan`, the daemon and `clerk undo`
killed with SIGKILL at random moments while they move thousands of files across file
systems, then run again. Every time: the multiset of content hashes is what it was at
the start (nothing lost, nothing doubled), no temp file is left, nothing is pending in
the journal, and the work the second run was asked to do is done.

The moments are drawn at random from the length of an uninterrupted run, with a seed
per trial that a failure prints. The suite runs the issue's size: 20 scan trials over
5,000 files (`CLERK_CRASH_FILES` and `CLERK_CRASH_TRIALS` change it); undo and daemon
trials use 500 files each."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_daemon_support import DaemonProcess, write_config
from test_fileops_support import other_filesystem, temp_files

PY = sys.executable
FILES = int(os.environ.get("CLERK_CRASH_FILES", "5000"))
SMALL = 500  # files per undo and daemon trial: an undo journals op by op
TRIALS = int(os.environ.get("CLERK_CRASH_TRIALS", "20"))

pytestmark = pytest.mark.slow


def hashes(*dirs: Path) -> Counter[str]:
    return Counter(
        hashlib.sha256(p.read_bytes()).hexdigest() for d in dirs for p in d.rglob("*")
        if p.is_file()
    )  # fmt: skip


def make_files(directory: Path, count: int, prefix: str = "f") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):  # unique contents, 64 B to 4 KB
        (directory / f"{prefix}{i:05}.bin").write_bytes(
            i.to_bytes(4, "big") + os.urandom(60 + i % 4000)
        )


def pending(clerk_home: Path) -> list[tuple[int, str, str]]:
    with contextlib.closing(sqlite3.connect(clerk_home / "clerk.db")) as db:
        return list(db.execute("SELECT id, kind, src FROM ops WHERE state = 'pending'"))


def clerk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "clerk", *args], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def killed_at(delay: float, *args: str) -> str:
    """Start `clerk ARGS`, SIGKILL it after `delay` s (if it still runs); how it ended."""
    proc = subprocess.Popen([PY, "-m", "clerk", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        proc.wait(timeout=delay)
        return f"finished before the kill ({proc.returncode})"
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        return "killed"


def timed(*args: str) -> float:
    started = time.monotonic()
    result = clerk(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return time.monotonic() - started


@pytest.fixture
def sides(tmp_path: Path, clerk_home: Path) -> Iterator[Callable[[int], tuple[Path, Path]]]:
    """`a` with `count` files on the test's file system, `b` on another; the rules
    `there` (a -> b) and `back`."""
    with other_filesystem(tmp_path) as other:

        def make(count: int) -> tuple[Path, Path]:
            a, b = tmp_path / "a", Path(other) / "b"
            b.mkdir()
            make_files(a, count)
            (clerk_home / "rules.d").mkdir()
            (clerk_home / "rules.d" / "rules.yaml").write_text(f"""
roots:
  a: {{path: {a}, watch: false}}
  b: {{path: {b}, watch: false}}
rules:
  - name: there
    in: a
    actions: [{{move: "{b}/{{name}}"}}]
  - name: back
    in: b
    actions: [{{move: "{a}/{{name}}"}}]
""")
            return a, b

        yield make


def check(a: Path, b: Path, start: Counter[str], clerk_home: Path, where: Path, why: str) -> None:
    assert hashes(a, b) == start, f"contents lost or doubled ({why})"
    assert not temp_files(str(a), str(b)), f"temp files left ({why})"
    assert pending(clerk_home) == [], why
    assert len(list(where.iterdir())) == start.total(), f"work not finished ({why})"


def test_kill_9_of_scan_at_random_moments(
    sides: Callable[[int], tuple[Path, Path]], clerk_home: Path
) -> None:
    a, b = sides(FILES)
    start = hashes(a)
    full = max(timed("scan", "--rule", "there"), timed("scan", "--rule", "back"))
    for trial in range(TRIALS):
        seed = random.randrange(1 << 30)
        delay = random.Random(seed).uniform(0.1, full)
        rule, where = ("there", b) if trial % 2 == 0 else ("back", a)
        how = killed_at(delay, "scan", "--rule", rule)
        finish = clerk("scan", "--rule", rule)
        why = f"trial {trial}, seed {seed}, kill after {delay:.2f}s of {full:.2f}s: {how}"
        assert finish.returncode == 0, f"{why}\n{finish.stdout}{finish.stderr}"
        check(a, b, start, clerk_home, where, why)


def test_kill_9_of_undo_at_random_moments(
    sides: Callable[[int], tuple[Path, Path]], clerk_home: Path
) -> None:
    a, b = sides(SMALL)
    start = hashes(a)
    write_config(clerk_home, "journal_batch: 10000\n")  # one batch: one undo takes all

    def scan_there() -> list[str]:
        moved = clerk("scan", "--rule", "there", "--json")
        assert moved.returncode == 0, moved.stderr
        (batch,) = json.loads(moved.stdout)["batches"]
        return ["undo", "--batch", batch]

    full = timed(*scan_there())
    check(a, b, start, clerk_home, a, "an uninterrupted undo")
    for trial in range(3):
        undo = scan_there()
        seed = random.randrange(1 << 30)
        delay = random.Random(seed).uniform(0.1, full)
        how = killed_at(delay, *undo)
        finish = clerk(*undo)
        why = f"undo trial {trial}, seed {seed}, kill after {delay:.2f}s of {full:.2f}s: {how}"
        assert "Traceback" not in finish.stderr, f"{why}\n{finish.stderr}"
        check(a, b, start, clerk_home, a, why)


def test_kill_9_of_the_daemon_at_random_moments(tmp_path: Path, clerk_home: Path) -> None:
    with other_filesystem(tmp_path) as other:
        inbox, dest = tmp_path / "inbox", Path(other) / "dest"
        inbox.mkdir()
        dest.mkdir()
        (clerk_home / "rules.d").mkdir()
        (clerk_home / "rules.d" / "rules.yaml").write_text(f"""
roots:
  inbox: {{path: {inbox}, settle: 0.2s}}
  dest: {{path: {dest}, watch: false}}
rules:
  - name: file
    in: inbox
    actions: [{{move: "{dest}/{{name}}"}}]
""")
        write_config(clerk_home, "reconcile_interval: 1h\n")
        env = dict(os.environ)
        expected: Counter[str] = Counter()
        for trial in range(3):
            make_files(tmp_path / "incoming", SMALL, prefix=f"t{trial}-")
            expected += hashes(tmp_path / "incoming")
            daemon = DaemonProcess(tmp_path / f"daemon-{trial}.log", env).start()
            seed = random.randrange(1 << 30)
            delay = random.Random(seed).uniform(0.5, 3.0)
            try:
                for path in sorted((tmp_path / "incoming").iterdir()):
                    path.rename(inbox / path.name)  # arrives whole: a rename into the inbox
                time.sleep(delay)  # the random moment of the crash
                daemon.kill()
            finally:
                daemon.kill()
            why = f"daemon trial {trial}, seed {seed}, kill after {delay:.2f}s"
            again = DaemonProcess(tmp_path / f"daemon-{trial}-again.log", env).start()
            try:
                deadline = time.monotonic() + 120
                while list(inbox.iterdir()) and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert not list(inbox.iterdir()), f"{why}: inbox not emptied\n{again.log()}"
            finally:
                again.signal(signal.SIGTERM)
                again.wait()
            assert hashes(inbox, dest) == expected, why
            assert not temp_files(str(inbox), str(dest)), why
            assert pending(clerk_home) == [], why
