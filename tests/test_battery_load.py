"""The fault battery, load on the store (issue 13): a real daemon organizing a stream of
arriving files, and starting a small workflow for some of them, while reader processes
loop `clerk files list --json`, `clerk status --json` and `clerk runs list` and a
`clerk db backup` runs in the middle of it.

It proves: no reader ever sees "database is locked" or a traceback, every reader
command exits 0, the backup passes `PRAGMA integrity_check`, and every file that
arrived is organized, once.

The default size suits the test suite on a busy 2-core machine: 3,000 files over 6 s.
The issue's full size is 20,000 files over 30 s:

    CLERK_BATTERY_LOAD_FILES=20000 CLERK_BATTERY_LOAD_SECONDS=30 \
        .venv/bin/python -m pytest tests/test_battery_load.py
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_daemon_support import running_daemon, wait_until, write_config

FILES = int(os.environ.get("CLERK_BATTERY_LOAD_FILES", "3000"))
SECONDS = float(os.environ.get("CLERK_BATTERY_LOAD_SECONDS", "6"))
EVERY_RUN = 100  # one file in this many starts a workflow run: the runner writes too
DEADLINE = 120.0 + FILES / 50  # for everything to be organized, on a busy machine

READERS = (
    ("files", "list", "--json", "--limit", "200"),
    ("status", "--json"),
    ("runs", "list"),
)


@dataclass
class Reader:
    """Runs one clerk command again and again until told to stop; keeps what went wrong."""

    argv: tuple[str, ...]
    stop: threading.Event
    runs: int = 0
    problems: list[str] = field(default_factory=list)

    def loop(self) -> None:
        while not self.stop.is_set():
            self.problems.extend(clerk_problems(self.argv))
            self.runs += 1


def clerk_problems(argv: tuple[str, ...]) -> list[str]:
    """What is wrong with one run of `clerk ARGV`: a failure, a lock, a traceback."""
    result = subprocess.run([sys.executable, "-m", "clerk", *argv],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    output = result.stdout + result.stderr
    found = []
    if result.returncode != 0:
        found.append(f"clerk {' '.join(argv)} exited {result.returncode}:\n{output}")
    for bad in ("database is locked", "Traceback", "database table is locked"):
        if bad in output:
            found.append(f"clerk {' '.join(argv)} said {bad!r}:\n{output}")
    return found


def arrive(inbox: Path, names: list[str], seconds: float) -> None:
    """Create `names` in `inbox` at an even pace over `seconds` (each written, then renamed
    into place, as a downloader does)."""
    begun = time.monotonic()
    for index, name in enumerate(names):
        part = inbox / f".{name}.part"
        part.write_text(name)
        part.rename(inbox / name)
        ahead = begun + seconds * (index + 1) / len(names) - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)  # pacing the arrivals: the input under test, not a wait


def integrity(path: Path) -> list[tuple[str, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return db.execute("PRAGMA integrity_check").fetchall()


def count(store: Path, sql: str) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        db.execute("PRAGMA busy_timeout = 10000")
        return int(db.execute(sql).fetchone()[0])


@pytest.mark.slow
def test_readers_and_a_backup_while_the_daemon_organizes_a_stream_of_files(
    tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path]
) -> None:
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    inbox.mkdir()
    archive.mkdir()
    write_rules(f"""
roots:
  inbox: {{path: {inbox}, settle: 0.2s, ignore: ["*.part"]}}
  archive: {{path: {archive}, watch: false}}
rules:
  - name: jobs
    in: inbox
    match: [{{extension: job}}]
    actions: [{{run: touch}}, {{move: "{archive}/jobs/{{name}}"}}]
  - name: text
    in: inbox
    match: [{{extension: txt}}]
    actions: [{{move: "{archive}/{{name}}"}}]
workflows:
  touch:
    tasks:
      - {{name: stat, executor: shell, command: [{sys.executable}, -c, "pass", "{{path}}"]}}
""")
    write_config(clerk_home, "reconcile_interval: 1h\n")
    names = [f"f{i:06d}.{'job' if i % EVERY_RUN == 0 else 'txt'}" for i in range(FILES)]
    jobs = [name for name in names if name.endswith(".job")]
    store = clerk_home / "clerk.db"
    stop = threading.Event()
    readers = [Reader(argv, stop) for argv in READERS]
    threads = [threading.Thread(target=reader.loop) for reader in readers]
    backup = tmp_path / "backup.db"
    with running_daemon(tmp_path) as (daemon, _):
        for thread in threads:
            thread.start()
        try:
            writer = threading.Thread(target=arrive, args=(inbox, names, SECONDS))
            writer.start()
            wait_until(lambda: len(os.listdir(archive)) > FILES // 3, timeout=DEADLINE,
                       what="a third of the files organized")  # fmt: skip
            backed_up = clerk_problems(("db", "backup", str(backup)))
            writer.join(timeout=DEADLINE)
            assert not writer.is_alive()

            def organized() -> bool:
                return len(os.listdir(archive)) - 1 + len(os.listdir(archive / "jobs")) == FILES

            wait_until(organized, timeout=DEADLINE, what=f"all {FILES} files organized")
            done = "SELECT count(*) FROM runs WHERE status = 'COMPLETED'"
            wait_until(lambda: count(store, done) == len(jobs), timeout=DEADLINE,
                       what=f"{len(jobs)} runs completed")  # fmt: skip
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=DEADLINE)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=DEADLINE) == 0, daemon.log()
        log = daemon.log()
    assert backed_up == []
    assert integrity(backup) == [("ok",)]
    assert count(backup, "SELECT count(*) FROM ops WHERE kind = 'move'") > 0
    for reader in readers:
        assert reader.problems == [], reader.problems[:3]
        assert reader.runs >= 2, f"clerk {' '.join(reader.argv)} ran {reader.runs} times"
    assert "database is locked" not in log and "Traceback" not in log, log[-5000:]
    assert sorted(os.listdir(inbox)) == []
    assert sorted(os.listdir(archive / "jobs")) == jobs
    moves = "SELECT count(DISTINCT src) FROM ops WHERE kind = 'move' AND state = 'done'"
    assert count(store, moves) == FILES  # each once: no "x (1).txt"
