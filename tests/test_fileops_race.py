"""No silent overwrite under races: a target that appears between planning and acting,
and two processes moving different files onto the same destinations at once."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from test_fileops_support import PYTHON, Env, digest, make_env, read, temp_files

from clerk.fileops import OpRequest


@pytest.fixture
def env(tmp_path, monkeypatch) -> Env:
    return make_env(tmp_path, monkeypatch)


def appear_on_intent(env: Env, make: dict[str, bytes]) -> None:
    """Create files the moment intents are journaled: after planning, before acting."""

    def create() -> int:
        for target, content in make.items():
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as fh:
                fh.write(content)
        return 0

    env.db.conn.create_function("appear", 0, create)
    env.db.execute(
        "CREATE TEMP TRIGGER appear_on_intent AFTER INSERT ON ops "
        "WHEN NEW.state = 'pending' BEGIN SELECT appear(); END"
    )


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
from clerk.rules.model import Root, RootSet
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
