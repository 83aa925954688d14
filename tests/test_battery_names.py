"""The fault battery, hostile file names (issue 13), through `clerk scan` and through the
daemon: a newline, a leading dash, `$(touch pwned)`, backticks, a 255-byte name, bytes
that are not UTF-8 and template-like braces, under rules that move (`{stem}/{name}`),
rename with a template (`{ext}.{stem}`, which keeps a 255-byte name at 255 bytes) and
`run:` a shell workflow that gets `{name}`, `{path}` and `{stem}` in its argv.

It proves: the task's argv holds each name byte for byte, one argument each; a path
component holds the name exactly, except the control characters the template
sanitizer turns into `_` (docs/rules.md); nothing is ever executed (no `pwned` file
appears anywhere a shell could have made it); the journal, the catalog, `clerk files
show` and `clerk files list --json` give back the exact bytes; no traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from test_daemon_support import running_daemon, wait_until, write_config

from clerk.store.journal import decode_row

STEMS = [
    b"new\nline",
    b"-rf --no-preserve-root",
    b"$(touch pwned)",
    b"`touch pwned`",
    b"; touch pwned #",
    b"caf\xe9 \xff\xfe",  # not UTF-8
    b"{name}{path}{0}{stem.__class__}%s",
    b"x" * 251,  # with ".txt", ".ren", ".job": 255 bytes, the longest name there is
]
# a name that forges a log line and drives the terminal, under a rule that fails on it
# (`{name}.{name}` is too long): the message about it must stay one line, escaped
FORGER = (b"evil\n2026-12-04 20:00:00,000 ERROR clerk.daemon: forged line"
          b" \x1b[2J\x1b]0;owned\x07\r" + b"y" * 100 + b".bad")  # fmt: skip

# argv of the task: one line per run, each argument in hex (exact bytes, no quoting)
RECORD = r"""
import os, sys
with open(sys.argv[1], "ab") as out:
    out.write(b" ".join(os.fsencode(a).hex().encode() for a in sys.argv[2:]) + b"\n")
"""

RULES = """
roots:
  inbox: {{path: {inbox}, settle: 0.2s}}
  dest: {{path: {dest}, watch: false}}
rules:
  - name: jobs
    in: inbox
    match: [{{extension: job}}]
    actions: [{{run: record}}]
  - name: doubled
    in: inbox
    match: [{{extension: bad}}]
    actions: [{{rename: "{{name}}.{{name}}"}}]
  - name: renames
    in: inbox
    match: [{{extension: ren}}]
    actions: [{{rename: "{{ext}}.{{stem}}"}}]
  - name: moves
    in: inbox
    match: [{{extension: txt}}]
    actions: [{{move: "{dest}/{{stem}}/{{name}}"}}]
workflows:
  record:
    tasks:
      - name: record
        executor: shell
        cwd: {work}
        command: {command}
"""


def sanitized(name: bytes) -> bytes:
    """What a path template makes of a field value: control characters become `_`."""
    return bytes(b if b >= 0x20 and b != 0x7F else ord("_") for b in name)


class World:
    def __init__(self, tmp_path: Path, clerk_home: Path) -> None:
        self.tmp, self.home = tmp_path, clerk_home
        self.inbox, self.dest, self.work = tmp_path / "inbox", tmp_path / "dest", tmp_path / "work"
        for directory in (self.inbox, self.dest, self.work):
            directory.mkdir()
        self.record = tmp_path / "argv.txt"
        command = [sys.executable, "-c", RECORD, str(self.record), "{name}", "{path}", "{stem}"]
        (clerk_home / "rules.d").mkdir(exist_ok=True)
        (clerk_home / "rules.d" / "rules.yaml").write_text(RULES.format(
            inbox=self.inbox, dest=self.dest, work=self.work, command=json.dumps(command)
        ))  # fmt: skip
        write_config(clerk_home, "reconcile_interval: 1h\n")

    def bytes_path(self, directory: Path, *names: bytes) -> bytes:
        return os.path.join(os.fsencode(directory), *names)

    def drop_files(self) -> None:
        with open(self.bytes_path(self.inbox, FORGER), "wb") as fh:
            fh.write(b"forger")
        for stem in STEMS:
            for ext in (b".txt", b".ren", b".job"):
                path = self.bytes_path(self.inbox, stem + ext)
                with open(path, "wb") as fh:
                    fh.write(stem + ext)

    def expected_moves(self) -> dict[bytes, bytes]:
        return {
            self.bytes_path(self.inbox, stem + b".txt"): self.bytes_path(
                self.dest, sanitized(stem), sanitized(stem + b".txt")
            )
            for stem in STEMS
        }

    def expected_renames(self) -> dict[bytes, bytes]:
        return {
            self.bytes_path(self.inbox, stem + b".ren"): self.bytes_path(
                self.inbox, b"ren." + sanitized(stem)
            )
            for stem in STEMS
        }

    def expected_argv(self) -> list[list[bytes]]:
        return sorted(
            [stem + b".job", self.bytes_path(self.inbox, stem + b".job"), stem] for stem in STEMS
        )

    def argv_seen(self) -> list[list[bytes]]:
        if not self.record.exists():
            return []
        lines = self.record.read_bytes().splitlines()
        return sorted([bytes.fromhex(a.decode()) for a in line.split()] for line in lines)

    def done(self) -> bool:
        placed = [*self.expected_moves().values(), *self.expected_renames().values()]
        return all(os.path.exists(p) for p in placed) and len(self.argv_seen()) == len(STEMS)

    def check(self) -> None:
        for src, dst in {**self.expected_moves(), **self.expected_renames()}.items():
            assert not os.path.lexists(src), src
            with open(dst, "rb") as fh:
                assert fh.read() == os.path.basename(src), dst  # the file itself, unchanged
        assert self.argv_seen() == self.expected_argv()
        left = sorted(os.listdir(os.fsencode(self.inbox)))
        kept = [FORGER, *(s + b".job" for s in STEMS), *(b"ren." + sanitized(s) for s in STEMS)]
        assert left == sorted(kept)
        self.check_nothing_ran()
        self.check_journal()
        self.check_catalog()

    def check_nothing_ran(self) -> None:
        places = [self.tmp, self.home, Path.cwd(), Path("/tmp"), Path("/")]
        for place in places:
            assert not (place / "pwned").exists(), f"a shell ran: {place / 'pwned'}"
        made = [p for p in self.tmp.rglob("*pwned*") if b"touch" not in os.fsencode(p.name)]
        assert made == [], made

    def check_journal(self) -> None:
        with contextlib.closing(sqlite3.connect(self.home / "clerk.db")) as db:
            db.row_factory = sqlite3.Row
            rows = [decode_row(dict(r)) for r in db.execute("SELECT * FROM ops")]
        done = {os.fsencode(r["src"]): os.fsencode(r["dst"]) for r in rows if r["state"] == "done"}
        assert done == {**self.expected_moves(), **self.expected_renames()}
        (failed,) = [r for r in rows if r["state"] != "done"]
        assert os.fsencode(failed["src"]) == self.bytes_path(self.inbox, FORGER)
        assert "File name too long" in failed["error"]

    def check_catalog(self) -> None:
        listed = clerk("files", "list", "--json")
        where = {(row["root"], os.fsencode(row["relpath"])) for row in json.loads(listed)}
        for dst in self.expected_moves().values():
            assert ("dest", os.path.relpath(dst, os.fsencode(self.dest))) in where, dst
            shown = json.loads(clerk("files", "show", "--json", dst))
            assert os.path.join(os.fsencode(self.dest), os.fsencode(shown["relpath"])) == dst
            assert shown["root"] == "dest" and shown["errors"] == []
        for dst in self.expected_renames().values():
            assert ("inbox", os.path.basename(dst)) in where, dst
            shown = json.loads(clerk("files", "show", "--json", dst))
            assert os.fsencode(shown["relpath"]) == os.path.basename(dst)


def clerk(*args: str | bytes) -> str:
    result = subprocess.run([sys.executable, "-m", "clerk", *args], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def test_hostile_names_through_scan(tmp_path: Path, clerk_home: Path) -> None:
    world = World(tmp_path, clerk_home)
    world.drop_files()
    result = subprocess.run([sys.executable, "-m", "clerk", "scan"], capture_output=True,
                            text=True, timeout=120, cwd=world.work)  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    check_one_line_each(result.stdout + result.stderr, r"(error|WARNING|undo with|\d+ files seen)")
    (message,) = [line for line in result.stderr.splitlines() if "forged line" in line]
    assert message.startswith("error: ") and "File name too long" in message
    # a scan hands its runs to a worker process: they end after the scan does
    wait_until(lambda: _all_completed(clerk_home), what="every run completed")
    world.check()


def test_hostile_names_through_the_daemon(tmp_path: Path, clerk_home: Path) -> None:
    world = World(tmp_path, clerk_home)
    with running_daemon(tmp_path) as (daemon, _):
        world.drop_files()
        wait_until(world.done, what="every hostile name handled")
        wait_until(lambda: _all_completed(clerk_home), what="every run completed")
        world.check()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    log = daemon.log()
    assert "Traceback" not in log, log
    check_one_line_each(log, r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) ")
    assert "forged line" in log, "the failure was not logged"


def check_one_line_each(output: str, start: str) -> None:
    """Every line is a message of clerk's own: a name did not start a line, nor send the
    terminal a control sequence."""
    for line in output.splitlines():
        assert re.match(start, line), f"a line that is no message of clerk's: {line!r}"
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]", line), repr(line)


def _all_completed(clerk_home: Path) -> bool:
    with contextlib.closing(sqlite3.connect(clerk_home / "clerk.db")) as db:
        statuses = [s for (s,) in db.execute("SELECT status FROM runs")]
    return len(statuses) == len(STEMS) and set(statuses) == {"COMPLETED"}
