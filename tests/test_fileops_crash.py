"""Crash injection: a child process is SIGKILLed at every step boundary of a same-fs
move, a cross-fs move, a copy, an archive and a trash; then this process recovers and
checks by content hash that nothing was lost, no temp is left and nothing is pending."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_fileops_support import PYTHON, digest, other_filesystem, set_test_env, temp_files

from clerk.fileops import FileOps
from clerk.fileops.primitives import CRASH_ENV, CRASH_STEPS
from clerk.roots import Root, RootSet
from clerk.store import open_store
from clerk.store.journal import decode_row

FILES = 3
SAME_FS_STEPS = {"after_intent", "after_place", "before_done_commit"}
COPY_STEPS = set(CRASH_STEPS) - {"before_unlink_src", "after_unlink_src"}
# the steps each scenario passes through (the child must die exactly there)
REACHES = {
    "move": SAME_FS_STEPS,
    "trash": SAME_FS_STEPS,
    "move_xfs": set(CRASH_STEPS),
    "copy": COPY_STEPS,
    "archive": set(CRASH_STEPS),
}

CHILD = r"""
import os, sys
from clerk.fileops import FileOps, OpRequest
from clerk.roots import Root, RootSet
from clerk.store import open_store
kind, db_path, root, dest = sys.argv[1:5]
names = sorted(os.listdir(os.path.join(root, "in")))
requests = []
for name in names:
    src = os.path.join(root, "in", name)
    if kind == "trash":
        requests.append(OpRequest("trash", src))
    elif kind == "archive":
        requests.append(OpRequest("archive", src, os.path.join(dest, name + ".tar.gz")))
    else:
        requests.append(OpRequest(kind, src, os.path.join(dest, name)))
roots = RootSet([Root("main", root), Root("dest", dest)])
results = FileOps(open_store(db_path), roots).execute(requests)
assert all(r.status == "done" for r in results), results
"""


@dataclass
class Case:
    step: str
    root: str
    dest: str
    db_path: str
    hashes: dict[str, str]
    child: subprocess.Popen[str] | None = None

    @property
    def data_home(self) -> str:
        # a home trash per case: the children run at the same time
        return os.path.join(self.root, "xdg-data")

    @property
    def trash(self) -> str:
        return os.path.join(self.data_home, "Trash")


def _prepare(base: Path, dest_base: str, scenario: str, step: str) -> Case:
    root = base / f"{scenario}-{step}"
    (root / "in").mkdir(parents=True)
    hashes = {}
    for i in range(FILES):
        path = root / "in" / f"file {i}.bin"
        path.write_bytes(os.urandom(200_000 + i))
        hashes[path.name] = digest(str(path))
    dest = os.path.join(dest_base, f"{scenario}-{step}-out")
    os.makedirs(dest)
    return Case(step, str(root), dest, str(root / "clerk.db"), hashes)


def _run_children(cases: list[Case], scenario: str) -> None:
    kind = "move" if scenario == "move_xfs" else scenario
    for case in cases:
        env = {**os.environ, CRASH_ENV: case.step, "XDG_DATA_HOME": case.data_home}
        case.child = subprocess.Popen(
            [PYTHON, "-c", CHILD, kind, case.db_path, case.root, case.dest],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    for case in cases:
        assert case.child is not None
        _, err = case.child.communicate(timeout=120)
        expected = -signal.SIGKILL if case.step in REACHES[scenario] else 0
        assert case.child.returncode == expected, f"{case.step}: {err}"


def _recover(case: Case) -> list[dict[str, object]]:
    db = open_store(case.db_path)
    roots = RootSet([Root("main", case.root), Root("dest", case.dest)])
    results = FileOps(db, roots).recover()
    assert all(r.error and r.error.startswith("interrupted; ") for r in results)
    rows = [decode_row(r) for r in db.query("SELECT * FROM ops ORDER BY id")]
    assert len(rows) == FILES and not [r for r in rows if r["state"] == "pending"]
    db.close()
    return rows


def _check_move(case: Case, rows: list[dict[str, object]], trash: str | None) -> None:
    for row in rows:
        src, dst = str(row["src"]), str(row["dst"])
        name = os.path.basename(src)
        if row["state"] == "done":
            assert not os.path.lexists(src) and digest(dst) == case.hashes[name], case.step
            if trash:
                assert os.path.exists(row["extra"]["trashinfo"])  # type: ignore[index]
        else:
            assert row["state"] == "failed" and "rolled back" in str(row["error"])
            assert digest(src) == case.hashes[name] and not os.path.lexists(dst), case.step
            if trash:
                assert not os.path.exists(row["extra"]["trashinfo"])  # type: ignore[index]


def _check_copy(case: Case, rows: list[dict[str, object]]) -> None:
    for row in rows:
        src, dst = str(row["src"]), str(row["dst"])
        assert digest(src) == case.hashes[os.path.basename(src)], case.step  # always kept
        if row["state"] == "done":
            assert digest(dst) == case.hashes[os.path.basename(src)], case.step
        else:
            assert not os.path.lexists(dst), case.step


def _check_archive(case: Case, rows: list[dict[str, object]]) -> None:
    for row in rows:
        src, dst = str(row["src"]), str(row["dst"])
        name = os.path.basename(src)
        if row["state"] == "done":
            assert not os.path.lexists(src), case.step
            with tarfile.open(dst) as archive:
                member = archive.extractfile(name)
                assert member is not None
                data = member.read()
            assert hashlib.blake2b(data).hexdigest() == case.hashes[name], case.step
        else:
            assert digest(src) == case.hashes[name] and not os.path.lexists(dst), case.step


@pytest.mark.parametrize("scenario", ["move", "move_xfs", "copy", "archive", "trash"])
def test_recovery_after_a_crash_at_every_step(tmp_path, monkeypatch, scenario):
    set_test_env(tmp_path, monkeypatch)
    with other_filesystem(tmp_path) as other:
        dest_base = other if scenario == "move_xfs" else str(tmp_path)
        # a step the scenario never reaches would only run it to the end: one such run
        # (the last) stands for all of them
        steps = [s for s in CRASH_STEPS if s in REACHES[scenario]]
        unreached = [s for s in CRASH_STEPS if s not in REACHES[scenario]]
        cases = [_prepare(tmp_path, dest_base, scenario, s) for s in steps + unreached[-1:]]
        _run_children(cases, scenario)
        for case in cases:
            rows = _recover(case)
            if scenario == "copy":
                _check_copy(case, rows)
            elif scenario == "archive":
                _check_archive(case, rows)
            else:
                _check_move(case, rows, case.trash if scenario == "trash" else None)
            assert not temp_files(case.root, case.dest), case.step


def test_dry_run_recovery_only_reports(tmp_path, monkeypatch):
    set_test_env(tmp_path, monkeypatch)
    case = _prepare(tmp_path, str(tmp_path), "move", "after_intent")
    _run_children([case], "move")
    roots = RootSet([Root("main", case.root), Root("dest", case.dest)])
    db = open_store(case.db_path)
    report = FileOps(db, roots, dry_run=True).recover()
    assert [r.status for r in report] == ["planned"] * FILES
    assert db.execute("SELECT count(*) FROM ops WHERE state = 'pending'").fetchone()[0] == FILES
    assert len(FileOps(db, roots).recover()) == FILES
    assert FileOps(db, roots).recover() == []


def test_recovery_waits_for_a_batch_in_flight(tmp_path, monkeypatch):
    set_test_env(tmp_path, monkeypatch)
    case = _prepare(tmp_path, str(tmp_path), "move", "after_intent")
    _run_children([case], "move")
    roots = RootSet([Root("main", case.root), Root("dest", case.dest)])
    results: list[object] = []
    # another process's batch in progress holds the lock shared
    holder = subprocess.Popen(
        [PYTHON, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_SH); print('held', flush=True); sys.stdin.read()",
         case.db_path + "-fileops.lock"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    worker = threading.Thread(
        target=lambda: results.extend(FileOps(open_store(case.db_path), roots).recover())
    )
    worker.start()
    worker.join(timeout=0.5)
    assert worker.is_alive() and results == []  # waiting, not "recovering" live ops
    holder.communicate("", timeout=30)
    worker.join(timeout=30)
    assert not worker.is_alive() and len(results) == FILES
