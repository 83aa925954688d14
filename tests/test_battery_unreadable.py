"""The fault battery, unreadable sources (issue 13): files clerk may see but not read
(mode 000) under rules that need their content (`content`, `mime`, `duplicate`),
through `clerk scan` and through the daemon; and a big file rewritten or replaced by a
real concurrent writer while clerk hashes and copies it across file systems.

Mode 000 binds only a process without root's DAC capabilities: as root, clerk runs
with them dropped (setpriv), as in tests/test_battery_refusing.py.

Unreadable files prove: one clear message per file (its path and the system's reason,
no Python exception names, no traceback), the file left where it is (a rule that
would take an unreadable file for `application/octet-stream` or for "content does not
match" never acts on it), every other file handled, and nothing wrong remembered: once
the file is readable, the next scan sorts it by what it really is.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_battery_refusing import unprivileged
from test_daemon_support import files_under, running_daemon, wait_until, write_config
from test_fileops_support import make_env, other_filesystem, read, temp_files

from clerk.fileops import FileOps, OpRequest

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"

# name -> content; the locked ones get mode 000
READABLE = {
    "invoice.txt": b"Invoice ACME for March\n",
    "doc.pdf": PDF,
    "blob.bin": random.Random(13).randbytes(2048),  # libmagic: application/octet-stream
    "twin-a.dat": b"the same twin content\n",
    "twin-b.dat": b"the same twin content\n",
    "keep.txt": b"KEEP this one here\n",
}
LOCKED = {
    "locked-invoice.txt": b"Invoice ACME KEEP\n",
    "locked.pdf": PDF,
    "locked-twin.dat": b"the same twin content\n",
    "locked-keep.txt": b"KEEP me, I am locked\n",
}

RULES = """
roots:
  inbox: {{path: {inbox}, settle: 0.2s}}
  dest: {{path: {dest}, watch: false}}
rules:
  - name: invoices
    in: inbox
    match: [{{content: 'Invoice (?P<customer>\\w+)'}}]
    actions: [{{move: "{dest}/invoices/{{customer}}/{{name}}"}}]
  - name: pdfs
    in: inbox
    match: [{{mime: application/pdf}}]
    actions: [{{move: "{dest}/pdf/{{name}}"}}]
  - name: binary
    in: inbox
    match: [{{mime: application/octet-stream}}]
    actions: [{{move: "{dest}/binary/{{name}}"}}]
  - name: twins
    in: inbox
    match: [{{duplicate: true}}]
    actions: [{{move: "{dest}/dups/{{name}}"}}]
  - name: unkept
    in: inbox
    match: [{{not: {{content: KEEP}}}}]
    actions: [{{move: "{dest}/other/{{name}}"}}]
"""

# where each readable file goes; one twin is the original (unkept), the other a duplicate
PLACED = {
    "blob.bin": "binary/blob.bin",
    "doc.pdf": "pdf/doc.pdf",
    "invoice.txt": "invoices/ACME/invoice.txt",
}


class World:
    def __init__(self, tmp_path: Path, clerk_home: Path) -> None:
        self.inbox, self.dest = tmp_path / "inbox", tmp_path / "dest"
        self.inbox.mkdir()
        self.dest.mkdir()
        self.home = clerk_home
        for name, content in {**READABLE, **LOCKED}.items():
            (self.inbox / name).write_bytes(content)
        for name in LOCKED:
            (self.inbox / name).chmod(0)
        (clerk_home / "rules.d").mkdir(exist_ok=True)
        rules = RULES.format(inbox=self.inbox, dest=self.dest)
        (clerk_home / "rules.d" / "rules.yaml").write_text(rules)

    def first_pass_done(self) -> bool:
        placed = files_under(self.dest)
        return all(p in placed for p in PLACED.values()) and len(placed) == len(PLACED) + 2

    def check_first_pass(self) -> None:
        """The readable files are sorted, the locked ones untouched."""
        placed = files_under(self.dest)
        for where in PLACED.values():
            assert where in placed, placed
        twins = sorted(p for p in placed if p.startswith(("dups/", "other/")))
        assert [t.split("/")[0] for t in twins] == ["dups", "other"], placed
        assert sorted(t.split("/")[1] for t in twins) == ["twin-a.dat", "twin-b.dat"]
        assert len(placed) == len(PLACED) + 2, placed
        assert files_under(self.inbox) == sorted(["keep.txt", *LOCKED]), "a locked file moved"
        for name, content in LOCKED.items():
            path = self.inbox / name
            assert path.stat().st_mode & 0o777 == 0
            path.chmod(0o600)
            assert path.read_bytes() == content
            path.chmod(0)

    def unlock(self) -> None:
        for name in LOCKED:
            (self.inbox / name).chmod(0o644)

    def check_second_pass(self) -> None:
        """Readable now, the locked files are sorted by what they really are."""
        placed = files_under(self.dest)
        assert "invoices/ACME/locked-invoice.txt" in placed, placed
        assert "pdf/locked.pdf" in placed, placed
        assert "dups/locked-twin.dat" in placed, placed
        assert files_under(self.inbox) == ["keep.txt", "locked-keep.txt"]


def messages_about_locked(stderr: str) -> dict[str, list[str]]:
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    return {name: [e for e in errors if f"/{name}:" in e] for name in LOCKED}


def assert_clear(message: str) -> None:
    assert "Permission denied" in message, message
    assert "cannot read" in message, message
    for noise in ("Error:", "Errno", "Traceback", "Exception"):
        assert noise not in message, message


def clerk_scan() -> subprocess.CompletedProcess[str]:
    argv = [*unprivileged(), sys.executable, "-m", "clerk", "scan"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_mode_000_files_under_content_mime_and_duplicate_rules_through_scan(
    tmp_path: Path, clerk_home: Path
) -> None:
    world = World(tmp_path, clerk_home)
    result = clerk_scan()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    world.check_first_pass()
    for name, lines in messages_about_locked(result.stderr).items():
        assert len(lines) == 1, f"{name}: {lines}\n{result.stderr}"
        assert_clear(lines[0])
    assert "0 failed" not in result.stdout and f"{len(LOCKED)} failed" in result.stdout
    world.unlock()
    again = clerk_scan()
    assert again.returncode == 0, again.stdout + again.stderr
    world.check_second_pass()


def file_errors(clerk_home: Path, path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(clerk_home / "clerk.db")) as db:
        rows = db.execute(
            "SELECT e.data FROM events e JOIN files f ON json_extract(e.data, '$.file_id') = f.id"
            " WHERE e.kind = 'file_error' AND f.root = 'inbox' AND f.relpath = ?",
            [path.name],
        ).fetchall()
    return [json.loads(data)["error"] for (data,) in rows]


def test_mode_000_files_under_content_mime_and_duplicate_rules_through_the_daemon(
    tmp_path: Path, clerk_home: Path
) -> None:
    world = World(tmp_path, clerk_home)
    write_config(clerk_home, "reconcile_interval: 1h\n")
    with running_daemon(tmp_path, argv_prefix=unprivileged()) as (daemon, _):
        wait_until(world.first_pass_done, what="the readable files sorted")
        for name in LOCKED:
            errors = wait_until(lambda n=name: file_errors(clerk_home, world.inbox / n),
                                what=f"the error recorded against {name}")  # fmt: skip
            assert isinstance(errors, list) and len(errors) == 1, (name, errors)
            assert_clear(errors[0])
        world.check_first_pass()
        shown = subprocess.run([sys.executable, "-m", "clerk", "files", "show", "--json",
                                str(world.inbox / "locked.pdf")],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        row = json.loads(shown.stdout)
        assert row["mime"] is None, "an unreadable file's MIME type was guessed and kept"
        assert len(row["errors"]) == 1
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        log = daemon.log()
    assert "Traceback" not in log, log
    world.unlock()
    again = clerk_scan()
    assert again.returncode == 0, again.stdout + again.stderr
    world.check_second_pass()


# Files rewritten under clerk's hands. The writer takes each file from one stable state
# to the next, one file after the other, and pauses a moment after each step: version k
# written in place over the old one (64 KiB at a time), cut to half its size, replaced
# whole by a rename. The bytes of version k are the 8-byte number k over and over, so a
# copy is a consistent version if it is one number repeated, full size or half;
# anything else was torn. Each file is still for a while (the writer is at the others),
# so most copies go through and some overlap a write.
CHURN_SIZE = 2 * 1024 * 1024
CHURN_FILES = 8
WRITER = r"""
import os, random, struct, sys, time
stop, size, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def write(fd, k):
    chunk = struct.pack("<Q", k) * 8192
    for _ in range(size // len(chunk)):
        os.write(fd, chunk)
def replace(path, k):
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    write(fd, k)
    os.close(fd)
    os.rename(path + ".tmp", path)
for path in paths:
    replace(path, 0)
print("ready", flush=True)
k = 1
while not os.path.exists(stop):
    path, step = paths[k % len(paths)], k // len(paths) % 3
    try:
        if step == 0:
            replace(path, k)
        else:
            fd = os.open(path, os.O_WRONLY)
            if step == 1:
                write(fd, k)  # in place, over the old version
            else:
                os.ftruncate(fd, size // 2)
            os.close(fd)
    except FileNotFoundError:  # clerk moved it away: a new one
        replace(path, k)
    k += 1
    time.sleep(random.uniform(0, 0.004))  # a stable state, a moment: part of the input
print(k, flush=True)
"""


def consistent(data: bytes) -> bool:
    return len(data) in (CHURN_SIZE, CHURN_SIZE // 2) and data == data[:8] * (len(data) // 8)


class Watcher:
    """Reads every file that shows up under its final name in `directory` while it runs:
    a copy placed half-written is seen even if clerk takes it out again."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.torn, self.seen = directory, [], 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        while not self.stop.is_set():
            for path in self.directory.rglob("*"):
                if path.name.startswith(".clerk-tmp-"):
                    continue
                try:
                    data = path.read_bytes()
                except (FileNotFoundError, IsADirectoryError):
                    continue
                self.seen += 1
                if not consistent(data):
                    self.torn.append(f"{path.name}: {len(data)} bytes, torn")
            self.stop.wait(0.001)  # a breath for the others on a busy machine

    def close(self) -> list[str]:
        self.stop.set()
        self.thread.join(timeout=30)
        return self.torn


@pytest.mark.parametrize("action", ["copy", "move"])
def test_a_file_rewritten_while_it_is_copied_across_file_systems(
    tmp_path: Path, clerk_home: Path, action: str
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with other_filesystem(tmp_path) as other:
        dest = Path(other) / "dest"
        dest.mkdir()
        (clerk_home / "rules.d").mkdir(exist_ok=True)
        (clerk_home / "rules.d" / "rules.yaml").write_text(f"""
roots:
  inbox: {{path: {inbox}, ignore: ["*.tmp"]}}
  dest: {{path: {dest}, watch: false}}
rules:
  - name: send
    in: inbox
    actions: [{{{action}: "{dest}/{{name}}", on_conflict: rename}}]
""")
        stop = tmp_path / "stop"
        names = [f"big{i}.bin" for i in range(CHURN_FILES)]
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(stop), str(CHURN_SIZE),
                                   *(str(inbox / name) for name in names)],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        watcher = Watcher(dest)
        placed, refused = 0, 0
        try:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
            for _ in range(3):
                result = subprocess.run([sys.executable, "-m", "clerk", "scan"],
                                        capture_output=True, text=True, timeout=120)  # fmt: skip
                assert "Traceback" not in result.stderr, result.stderr
                assert result.returncode in (0, 1), result.stdout + result.stderr
                refused += result.stderr.count("source changed")
                for path in dest.iterdir():
                    assert not path.name.startswith(".clerk-tmp-"), "a temp file was left"
                    assert consistent(path.read_bytes()), f"{path.name} placed torn"
                    placed += 1
                    path.unlink()
        finally:
            stop.touch()
            writer.communicate(timeout=60)
        torn = watcher.close()
        assert torn == [], torn
        # the writer gone, the file is still: now it goes, whole
        result = subprocess.run([sys.executable, "-m", "clerk", "scan"],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert sorted(p.name for p in dest.iterdir()) == names
        for name in names:
            assert consistent((dest / name).read_bytes())
            if action == "copy":
                assert (dest / name).read_bytes() == (inbox / name).read_bytes()
            else:
                assert not (inbox / name).exists()
        print(
            f"{placed} placed, {refused} refused while written to;"
            f" the watcher read {watcher.seen} files"
        )


@pytest.mark.parametrize("kind", ["copy", "move", "archive"])
def test_a_copy_of_a_source_written_to_meanwhile_is_never_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The same, at the one moment that matters: the source is written to while clerk
    copies it (right after the data went into the temp file, through the fileops'
    checkpoint, where CLERK_FILEOPS_CRASH_AT would kill it). The copy must not appear
    under its final name even for an instant: a crash or a reader there would find a
    file that is no version of the source."""
    with other_filesystem(tmp_path) as other:
        env = make_env(tmp_path, monkeypatch, extra_roots=(other,))
        src = env.file("in/report.txt", b"version one\n" * 1000)
        dst = os.path.join(other, "report.tar" if kind == "archive" else "report.txt")
        seen: list[str] = []

        def writer_and_witness(ops: FileOps, step: str) -> None:
            if step == "after_tmp_copy":
                with open(src, "r+b") as fh:  # same size, new bytes, and a new mtime
                    fh.write(b"VERSION TWO\n")
                st = os.stat(src)
                os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
            elif os.path.lexists(dst):
                seen.append(f"{os.path.basename(dst)} under its name at {step}")

        monkeypatch.setattr(FileOps, "_checkpoint", writer_and_witness)
        [result] = env.ops().execute([OpRequest(kind, src, dst)])
        assert result.status == "failed" and "source changed" in (result.error or ""), result
        assert seen == []
        assert not os.path.lexists(dst)
        assert read(src) == b"VERSION TWO\n" + b"version one\n" * 999
        assert temp_files(env.root, other) == []
