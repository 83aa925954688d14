"""Races: a target that appears between planning and acting, two processes moving
different files onto the same destinations at once, a destination directory swapped
for a symlink out of the roots while a scan places files into it, and sources replaced
by symlinks, FIFOs or other files between the walk and the move."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlite_utils
from test_daemon_support import running_daemon, wait_until
from test_fileops_support import (
    PYTHON,
    Env,
    digest,
    make_env,
    other_filesystem,
    read,
    temp_files,
)

from clerk.fileops import OpRequest
from clerk.fileops.beneath import Beneath, OutsideRoots
from clerk.rules.model import Root, RootSet
from clerk.rules.walk import walk_root


@pytest.fixture
def env(tmp_path, monkeypatch) -> Env:
    return make_env(tmp_path, monkeypatch)


def on_intent(env: Env, act: Callable[[], None]) -> None:
    """Run `act` the moment intents are journaled: after planning, before acting."""
    done: list[bool] = []

    def once() -> int:
        if not done:
            done.append(True)
            act()
        return 0

    env.db.conn.create_function("on_intent", 0, once)
    env.db.execute(
        "CREATE TEMP TRIGGER on_intent AFTER INSERT ON ops "
        "WHEN NEW.state = 'pending' BEGIN SELECT on_intent(); END"
    )


def appear_on_intent(env: Env, make: dict[str, bytes]) -> None:
    """Create files the moment intents are journaled."""

    def create() -> None:
        for target, content in make.items():
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as fh:
                fh.write(content)

    on_intent(env, create)


@pytest.mark.parametrize("kind", ["move", "copy", "symlink", "hardlink", "archive"])
@pytest.mark.parametrize("policy", ["skip", "rename", "fail", "overwrite", "dedupe"])
def test_target_appearing_after_planning_is_never_replaced(env, kind, policy):
    src = env.file("in/a.txt", b"mine")
    dst = env.path("out/a.tar" if kind == "archive" else "out/a.txt")
    appear_on_intent(env, {dst: b"theirs"})
    [result] = env.ops().execute([OpRequest(kind, src, dst, on_conflict=policy)])
    assert read(dst) == b"theirs"
    if policy in ("rename", "dedupe"):
        assert result.status == "done" and result.dst == env.path(
            "out/a (1).tar" if kind == "archive" else "out/a (1).txt"
        )
        assert "renamed" in (result.note or "")
        [row] = env.rows()
        assert row["dst"] == result.dst  # recorded before acting on the new name
    else:
        assert result.status == ("skipped" if policy == "skip" else "failed")
        if kind in ("move", "archive"):
            assert read(src) == b"mine"
    assert not temp_files(env.root)


def test_trash_name_taken_after_planning(env):
    src = env.file("in/a.txt", b"mine")
    info = os.path.join(env.trash, "info", "a.txt.trashinfo")
    appear_on_intent(env, {info: b"[Trash Info]\nPath=/elsewhere\n"})
    [result] = env.ops().execute([OpRequest("trash", src)])
    assert result.status == "done" and result.dst == os.path.join(env.trash, "files", "a (1).txt")
    assert read(info).startswith(b"[Trash Info]\nPath=/elsewhere")
    assert env.rows()[0]["dst"] == result.dst
    assert env.rows()[0]["extra"]["trashinfo"].endswith("a (1).txt.trashinfo")


CHILD = r"""
import json, os, sys, time
from clerk.fileops import FileOps, OpRequest, primitives
from clerk.roots import Root, RootSet
from clerk.store import open_store
db_path, root, me, count, policy, fallback, go = sys.argv[1:8]
if fallback == "1":
    primitives._RENAMEAT2 = None
db = open_store(db_path)
ops = FileOps(db, RootSet([Root("main", root)]))
requests = [
    OpRequest("move", os.path.join(root, me, f"f{i}"), os.path.join(root, "out", f"f{i}"),
              on_conflict=policy)
    for i in range(int(count))
]
open(go + "-" + me, "w").close()
deadline = time.monotonic() + 30
while not os.path.exists(go) and time.monotonic() < deadline:
    pass  # spin, not sleep: both processes should start placing at the same instant
results = []
for start in range(0, len(requests), 10):
    results += ops.execute(requests[start:start + 10])
print(json.dumps([[r.status, r.dst] for r in results]))
"""


@pytest.mark.parametrize(
    ("policy", "fallback"), [("rename", "0"), ("fail", "0"), ("rename", "1")],
    ids=["rename", "fail", "rename-link-fallback"],
)  # fmt: skip
def test_two_processes_racing_for_the_same_destinations(env, policy, fallback):
    count = 60
    hashes = set()
    for me in ("p1", "p2"):
        for i in range(count):
            hashes.add(digest(env.file(f"{me}/f{i}", f"{me}-{i}".encode())))
    os.makedirs(env.path("out"))
    go = str(env.tmp / "go")
    children = [
        subprocess.Popen(
            [PYTHON, "-c", CHILD, env.db_path, env.root, me, str(count), policy, fallback, go],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in ("p1", "p2")
    ]
    # release both at once, when both are ready
    deadline = time.monotonic() + 30
    while not all(os.path.exists(f"{go}-{me}") for me in ("p1", "p2")):
        assert time.monotonic() < deadline, "children did not start"
        assert all(child.poll() is None for child in children), children[0].communicate()
        time.sleep(0.01)
    Path(go).touch()
    outputs = [child.communicate(timeout=60) for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    results = [json.loads(out) for out, _ in outputs]
    # every file survives somewhere, with its own content
    survivors = set()
    for top in (env.path("p1"), env.path("p2"), env.path("out")):
        for name in os.listdir(top):
            survivors.add(digest(os.path.join(top, name)))
    assert survivors == hashes
    done = [r for rs in results for r in rs if r[0] == "done"]
    if policy == "fail":
        assert len(done) == count and len(os.listdir(env.path("out"))) == count
    else:
        assert len(done) == 2 * count and len(os.listdir(env.path("out"))) == 2 * count
    assert len({r[1] for r in done}) == len(done)  # no two ops claim the same place
    # and the journal says where each file went
    for row in env.rows():
        if row["state"] == "done":
            assert os.lstat(str(row["dst"])).st_ino == row["dst_inode"]


# --- a destination directory flipped to a symlink out of the roots (issue 13) ---------
RENAME_EXCHANGE = 2


def _exchange(a: str, b: str) -> None:
    """Swap two names atomically (renameat2 RENAME_EXCHANGE): never a moment without either."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(-100, os.fsencode(a), -100, os.fsencode(b), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), a, None, b)


class Flipper:
    """A thread that swaps `directory` with a symlink to `outside`, every millisecond or so.

    The real directory and the symlink trade names: for half of the time `directory` is
    a symlink out of the roots and the real directory sits at `directory + "-swap"`
    (inside the same root). `stop()` leaves the real directory at `directory`.
    """

    def __init__(self, directory: str, outside: str):
        self.directory, self.swap = directory, directory + "-swap"
        os.symlink(outside, self.swap)
        self.flips = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            _exchange(self.directory, self.swap)
            self.flips += 1
            time.sleep(0.001)

    def __enter__(self) -> Flipper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if os.path.islink(self.directory):
            _exchange(self.directory, self.swap)
        os.unlink(self.swap)


def tree_hashes(*tops: Path) -> Counter[str]:
    found: Counter[str] = Counter()
    for top in tops:
        for dirpath, _dirs, files in os.walk(top):
            found.update(digest(os.path.join(dirpath, name)) for name in files)
    return found


@pytest.fixture
def flip_world(tmp_path: Path, write_rules, clerk_home: Path) -> dict[str, Path]:
    inbox, dest, outside = tmp_path / "inbox", tmp_path / "dest", tmp_path / "outside"
    for directory in (inbox, dest / "Docs", outside):
        directory.mkdir(parents=True)
    write_rules(
        f"roots:\n  inbox: {{path: {inbox}}}\n  dest: {{path: {dest}, watch: false}}\n"
        f"rules:\n  - name: docs\n    in: inbox\n"
        f"    actions: [{{move: '{dest}/Docs/{{name}}'}}]\n"
    )
    (clerk_home / "config.yaml").write_text(f"trash_dir: {tmp_path / 'trash'}\n")
    return {"inbox": inbox, "dest": dest, "outside": outside, "db": clerk_home / "clerk.db"}


def test_destination_flipped_to_a_symlink_out_of_the_roots_writes_nothing_outside(
    flip_world, clerk
):
    inbox, dest, outside = flip_world["inbox"], flip_world["dest"], flip_world["outside"]
    for i in range(2000):
        (inbox / f"f{i:04d}.txt").write_bytes(f"file {i}\n".encode() * 3)
    before = tree_hashes(inbox)
    with Flipper(str(dest / "Docs"), str(outside)) as flipper:
        result = clerk("scan", "--json")
    assert flipper.flips > 50, "the flipper hardly ran: the race was not exercised"
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(outside)) == [], "clerk wrote outside its roots"
    assert tree_hashes(inbox, dest) == before  # nothing lost, nothing doubled
    # every file is either placed in Docs or still in the inbox with a message saying why
    report = json.loads(result.stdout)
    by_path = {f["path"]: f for f in report["files"]}
    assert len(by_path) == 2000
    for path, outcome in by_path.items():
        name = os.path.basename(path)
        assert len(outcome["ops"]) == 1, outcome
        [op] = outcome["ops"]
        if op["status"] == "done":
            assert op["dst"] == str(dest / "Docs" / name)
            assert os.lstat(op["dst"]).st_ino == op["dst_inode"]
            assert not os.path.lexists(path)
        else:
            assert op["status"] in ("failed", "skipped") and (op.get("error") or op.get("note"))
            assert os.path.exists(path) and not os.path.lexists(dest / "Docs" / name)
    # the journal agrees with the disk
    for row in sqlite_utils.Database(flip_world["db"])["ops"].rows:
        if row["state"] == "done":
            assert os.lstat(row["dst"]).st_ino == row["dst_inode"], row
        else:
            assert os.path.exists(row["src"]) and row["error"], row
    # and once the directory holds still, a second scan finishes the work
    clerk("scan", check=True)
    assert sorted(os.listdir(inbox)) == []
    assert len(os.listdir(dest / "Docs")) == 2000
    assert tree_hashes(dest) == before


def test_an_opened_directory_is_never_where_a_flipped_symlink_leads(env, tmp_path):
    """The primitive under the scan above: each open either reaches the real directory
    or refuses with the reason, however the flips fall."""
    outside = tmp_path / "outside"
    outside.mkdir()
    docs = env.path("Docs")
    os.mkdir(docs)
    real = os.stat(docs)
    dirs = Beneath(env.roots)
    seen: Counter[str] = Counter()
    with Flipper(docs, str(outside)):
        deadline = time.monotonic() + 10
        while sum(seen.values()) < 2000 or not (seen["opened"] and seen["refused"]):
            assert time.monotonic() < deadline, f"the flips never showed both ways: {seen}"
            try:
                fd = dirs.open_dir(os.path.join(docs, "sub"), create=True)
            except OutsideRoots as exc:
                assert str(exc) == f"{docs}/sub resolves to {outside}/sub, outside every root"
                seen["refused"] += 1
            else:
                parent = os.stat("..", dir_fd=fd)
                assert (parent.st_dev, parent.st_ino) == (real.st_dev, real.st_ino)
                seen["opened"] += 1
            dirs.close()
    assert not os.listdir(outside)


# --- a source replaced between the walk and the move (issue 13, races) -----------------
def replace_source(path: str, by: str, outside: Path) -> Callable[[], None]:
    """Put a symlink out of the roots, a FIFO or another file where `path` is."""

    def replace() -> None:
        aside = path + ".aside"
        os.rename(path, aside)  # the walked file stays, under another name
        if by == "symlink":
            os.symlink(outside / "secret", path)
        elif by == "fifo":
            os.mkfifo(path)
        else:
            with open(path, "wb") as fh:
                fh.write(b"someone else's file")

    return replace


@pytest.mark.parametrize("by", ["symlink", "fifo", "file"])
@pytest.mark.parametrize(
    "kind", ["move", "move-other-fs", "copy", "archive", "hardlink", "trash"]
)  # fmt: skip
def test_a_source_replaced_after_planning_is_skipped_untouched(tmp_path, monkeypatch, kind, by):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not clerk's")
    with contextlib.ExitStack() as stack:
        other = stack.enter_context(other_filesystem(tmp_path)) if kind == "move-other-fs" else None
        env = make_env(tmp_path, monkeypatch, extra_roots=(other,) if other else ())
        src = env.file("in/a.txt", b"the walked file")
        before = os.lstat(src)
        dst = os.path.join(other or env.root, "out", "a.tar" if kind == "archive" else "a.txt")
        on_intent(env, replace_source(src, by, outside))
        request = OpRequest(kind.removesuffix("-other-fs"), src, None if kind == "trash" else dst)
        [result] = env.ops().execute([request])
        assert result.status == "skipped", result
        now = "a symlink" if by == "symlink" else "a FIFO" if by == "fifo" else "another file"
        assert result.note == (
            f"the source was replaced since it was seen (now {now}); not touched: {src}"
        )
        # the replacement stays as it is, the walked file too, and nothing was made
        st = os.lstat(src)
        assert st.st_ino != before.st_ino
        if by == "symlink":
            assert os.readlink(src) == str(outside / "secret")
        assert os.listdir(outside) == ["secret"] and read(str(outside / "secret")) == b"not clerk's"
        assert read(src + ".aside") == b"the walked file"
        assert not os.path.lexists(dst) and not temp_files(env.root, *([other] if other else []))
        if kind == "trash" and os.path.isdir(os.path.join(env.trash, "info")):
            assert os.listdir(os.path.join(env.trash, "info")) == []
        [row] = env.rows()
        assert (row["state"], row["error"]) == ("skipped", result.note)


class Twins:
    """A thread that keeps swapping each file with a twin (a FIFO or a symlink out of
    the roots) under a second name, as fast as it can: renameat2 RENAME_EXCHANGE."""

    def __init__(self, files: list[Path], outside: Path):
        self.pairs = []
        for i, path in enumerate(files):
            twin = path.with_name(path.name + ".twin")
            if i % 2:
                os.mkfifo(twin)
            else:
                os.symlink(outside / "secret", twin)
            self.pairs.append((str(path), str(twin)))
        self.swaps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pairs = list(self.pairs)
        while pairs and not self._stop.is_set():
            for pair in list(pairs):
                try:
                    _exchange(*pair)
                    self.swaps += 1
                except FileNotFoundError:  # clerk took the file away from this pair
                    pairs.remove(pair)
            time.sleep(0.0005)

    def __enter__(self) -> Twins:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def regular_files(*tops: Path) -> Counter[str]:
    """Hashes of the regular files; asserts there is nothing else (no FIFO, no link)."""
    found: Counter[str] = Counter()
    for top in tops:
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    assert ".twin" in name or top.name == "inbox", f"{path} is not a file"
                    continue
                found[digest(path)] += 1
    return found


@pytest.mark.parametrize("where", ["same-fs", "other-fs"])
def test_sources_swapped_with_fifos_and_symlinks_during_a_scan(
    tmp_path, write_rules, clerk_home, clerk, where
):
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    inbox.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"not clerk's")
    with contextlib.ExitStack() as stack:
        dest = tmp_path / "dest"
        if where == "other-fs":
            dest = Path(stack.enter_context(other_filesystem(tmp_path))) / "dest"
        dest.mkdir()
        write_rules(
            f"roots:\n  inbox: {{path: {inbox}}}\n  dest: {{path: {dest}, watch: false}}\n"
            f"rules:\n  - name: all\n    in: inbox\n    actions: [{{move: '{dest}/{{name}}'}}]\n"
        )
        (clerk_home / "config.yaml").write_text(
            f"trash_dir: {tmp_path / 'trash'}\njournal_batch: 50\n"
        )
        files = [inbox / f"f{i:03d}" for i in range(300)]
        for path in files:
            path.write_bytes(f"file {path.name}\n".encode())
        before = regular_files(inbox)
        with Twins(files, outside) as twins:
            result = clerk("scan", "--json")  # a FIFO opened for a copy would hang it
        assert twins.swaps > 300, "the swapping hardly ran: the race was not exercised"
        assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr
        # no FIFO or symlink was moved, nothing was read or written through a link
        assert regular_files(inbox, dest) == before
        assert all(stat.S_ISREG(os.lstat(p).st_mode) for p in dest.iterdir())
        assert os.listdir(outside) == ["secret"] and read(str(outside / "secret")) == b"not clerk's"
        assert not temp_files(str(dest))
        for row in sqlite_utils.Database(clerk_home / "clerk.db")["ops"].rows:
            if row["state"] == "done":
                st = os.lstat(row["dst"])
                assert stat.S_ISREG(st.st_mode) and st.st_ino == row["dst_inode"], row
            else:
                assert row["error"], row
        notes = [
            op.get("note") or op.get("error") or ""
            for f in json.loads(result.stdout)["files"]
            for op in f["ops"]
            if op["status"] != "done"
        ]
        odd = [n for n in notes if not ("replaced" in n or "gone since" in n or "changed" in n)]
        assert not odd, odd


# --- two scans and the daemon on one root at once (issue 13, races) --------------------
def waiting_for_flock(path: str) -> int:
    """How many processes are queued for a flock on `path` (from /proc/locks)."""
    st = os.stat(path)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks") as fh:
        return sum(1 for line in fh if "->" in line and "FLOCK" in line and inode in line)


def test_two_scans_and_the_daemon_on_one_root_lose_nothing_and_move_nothing_twice(
    tmp_path, write_rules, clerk_home
):
    inbox, dest = tmp_path / "inbox", tmp_path / "dest"
    inbox.mkdir()
    dest.mkdir()
    write_rules(
        f"roots:\n  inbox: {{path: {inbox}, settle: 0.2s}}\n"
        f"  dest: {{path: {dest}, watch: false}}\n"
        f"rules:\n  - name: all\n    in: inbox\n    actions: [{{move: '{dest}/{{name}}'}}]\n"
    )
    (clerk_home / "config.yaml").write_text(
        f"trash_dir: {tmp_path / 'trash'}\njournal_batch: 20\nreconcile_interval: 1h\n"
    )
    names = [f"{sub}/{sub}{i:04d}" for i in range(1000) for sub in ("a", "b", "c")]
    contents = {name: f"file {name}\n".encode() for name in names}
    for sub in ("a", "b", "c"):
        (inbox / sub).mkdir()
    for name in names[:2700]:
        (inbox / name).write_bytes(contents[name])

    def start_scan() -> subprocess.Popen[str]:
        command = [PYTHON, "-m", "clerk", "scan"]
        return subprocess.Popen(command, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    # Started together, one would often be done before the others walk (their start-up
    # takes longer than its work). So all three are held at the journal lock their
    # start-up recovery takes exclusively, until all three are queued there: then they
    # go on at once.
    lock_fd = os.open(clerk_home / "clerk.db-fileops.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    scans: list[subprocess.Popen[str]] = []
    try:
        scans += [start_scan(), start_scan()]
        with running_daemon(tmp_path, ready=False) as (daemon, notify):
            lock = str(clerk_home / "clerk.db-fileops.lock")
            wait_until(lambda: waiting_for_flock(lock) == 3, what="all three at the lock")
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
            for name in names[2700:]:  # and files still arrive, for the daemon's events
                (inbox / name).write_bytes(contents[name])
            outputs = [scan.communicate(timeout=120) for scan in scans]
            notify.wait_for("READY")
            wait_until(
                lambda: not [p for p in inbox.rglob("*") if p.is_file()], what="an empty inbox"
            )
            daemon.signal(signal.SIGTERM)
            assert daemon.wait() == 0, daemon.log()
    finally:
        os.close(lock_fd)
        for scan in scans:
            scan.kill()
    for scan, (out, err) in zip(scans, outputs, strict=True):
        assert scan.returncode == 0 and "Traceback" not in err, out + err
        assert " 0 failed" in out, out
    # nothing lost: every file once at its destination, with its content
    placed = {p.name: p.read_bytes() for p in dest.iterdir()}
    assert placed == {os.path.basename(n): c for n, c in contents.items()}
    # nothing moved twice: one done move per file, and the journal agrees with the disk
    rows = list(sqlite_utils.Database(clerk_home / "clerk.db")["ops"].rows)
    done = [row for row in rows if row["state"] == "done"]
    assert sorted(row["src"] for row in done) == sorted(str(inbox / n) for n in names)
    assert len({row["dst"] for row in done}) == len(names)
    for row in done:
        assert os.lstat(row["dst"]).st_ino == row["dst_inode"], row
    others = [row for row in rows if row["state"] != "done"]
    assert others, ("nothing was contended: the processes did not overlap", outputs)
    assert all(
        row["state"] == "skipped" and row["error"].startswith("the source is gone since")
        for row in others
    ), others
    assert not temp_files(str(inbox), str(dest))


def test_a_file_moved_away_between_the_listing_and_its_stat_is_no_error(tmp_path):
    """Found by the test above: the other processes' moves made a scan's walk report
    "cannot read: No such file or directory" failures by the hundred."""
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    for name in ("a", "b", "c", "sub/d"):
        (inbox / name).write_text(name)
    root = Root("inbox", str(inbox))
    errors: list[str] = []
    walk = walk_root(root, RootSet([root]), on_error=lambda path, exc: errors.append(path))
    first = next(walk)  # the top directory is listed; its entries not yet looked at
    for path in inbox.rglob("*"):
        if path.is_file() and str(path) != first.path:
            path.unlink()
    shutil.rmtree(inbox / "sub")
    assert list(walk) == [] and errors == []
