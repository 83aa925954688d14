"""Across file systems: the copy protocol for moves, copies, trash and undo, on a tmpfs
the test mounts itself (or /dev/shm), verified by content hash."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
from test_fileops_support import Env, digest, make_env, other_filesystem, read, temp_files

from clerk.fileops import OpRequest


@pytest.fixture
def other(tmp_path):
    with other_filesystem(tmp_path) as path:
        yield path


@pytest.fixture
def env(tmp_path, monkeypatch, other) -> Env:
    return make_env(tmp_path, monkeypatch, extra_roots=(other,))


def test_move_across_file_systems(env, other):
    src = env.file("in/big.bin", os.urandom(3 * 1024 * 1024 + 17))
    os.chmod(src, 0o604)
    st, content = os.stat(src), digest(src)
    dst = os.path.join(other, "sub/big.bin")
    [result] = env.ops().execute([OpRequest("move", src, dst)])
    assert result.status == "done", result.error
    assert not os.path.exists(src) and digest(dst) == content
    dst_st = os.stat(dst)
    assert dst_st.st_dev != st.st_dev and (result.dst_dev, result.dst_inode) == (
        dst_st.st_dev,
        dst_st.st_ino,
    )
    assert dst_st.st_mtime_ns == st.st_mtime_ns and stat.S_IMODE(dst_st.st_mode) == 0o604
    assert env.rows()[0]["hash"] and not temp_files(env.root, other)


def test_copy_and_conflict_across_file_systems(env, other):
    src = env.file("in/a.txt", b"new")
    existing = os.path.join(other, "a.txt")
    with open(existing, "wb") as fh:
        fh.write(b"old")
    results = env.ops().execute([
        OpRequest("copy", src, existing),
        OpRequest("move", src, existing, chain=None),
    ])  # fmt: skip
    assert {r.dst for r in results} == {os.path.join(other, n) for n in ("a (1).txt", "a (2).txt")}
    assert read(existing) == b"old"
    assert digest(results[0].dst or "") == digest(results[1].dst or "")
    assert not os.path.exists(src) and not temp_files(env.root, other)


def test_symlink_moves_across_as_a_link(env, other):
    link = env.path("link")
    os.symlink("some/where", link)
    [result] = env.ops().execute([OpRequest("move", link, os.path.join(other, "link"))])
    assert result.status == "done" and os.readlink(os.path.join(other, "link")) == "some/where"
    assert not os.path.lexists(link)


def test_hardlink_across_file_systems_fails_cleanly(env, other):
    src = env.file("a.txt")
    [result] = env.ops().execute([OpRequest("hardlink", src, os.path.join(other, "a.txt"))])
    assert result.status == "failed" and "across file systems" in (result.error or "")


def test_trash_on_another_volume_uses_its_topdir_trash(env, other):
    src = os.path.join(other, "docs", "x y.txt")
    os.makedirs(os.path.dirname(src))
    with open(src, "wb") as fh:
        fh.write(b"volume file")
    [result] = env.ops().execute([OpRequest("trash", src)])
    trash = os.path.join(other, f".Trash-{os.getuid()}")
    assert result.status == "done" and result.dst == os.path.join(trash, "files", "x y.txt")
    assert stat.S_IMODE(os.stat(trash).st_mode) == 0o700
    info = read(os.path.join(trash, "info", "x y.txt.trashinfo")).decode("ascii")
    assert "\nPath=docs/x%20y.txt\n" in info  # relative to the volume's top directory
    assert os.stat(result.dst).st_dev == os.stat(other).st_dev  # renamed, not copied


def test_trash_dir_on_another_file_system_is_filled_by_copy(env, other, tmp_path):
    trash_dir = os.path.join(other, "MyTrash")
    src = env.file("a.bin", os.urandom(100_000))
    content = digest(src)
    [result] = env.ops(trash_dir=trash_dir).execute([OpRequest("trash", src)])
    assert result.status == "done" and result.dst == os.path.join(trash_dir, "files", "a.bin")
    assert digest(result.dst) == content and not os.path.exists(src)
    assert os.path.exists(os.path.join(trash_dir, "info", "a.bin.trashinfo"))
    assert not temp_files(trash_dir)
    [undone] = env.ops(trash_dir=trash_dir).undo([result.op_id or 0])
    assert undone.status == "done" and digest(src) == content
    assert not os.path.exists(os.path.join(trash_dir, "info", "a.bin.trashinfo"))


def test_undo_and_redo_a_cross_file_system_move(env, other):
    src = env.file("a.bin", os.urandom(10_000))
    content = digest(src)
    dst = os.path.join(other, "a.bin")
    fileops = env.ops()
    [moved] = fileops.execute([OpRequest("move", src, dst)])
    [back] = fileops.undo([moved.op_id or 0])
    assert back.status == "done" and digest(src) == content and not os.path.exists(dst)
    [again] = fileops.undo([back.op_id or 0])
    assert again.status == "done" and digest(dst) == content and not os.path.exists(src)
    [back2] = fileops.undo([moved.op_id or 0])
    assert back2.status == "done" and digest(src) == content


def test_move_whose_source_cannot_be_removed_leaves_one_file(env, other):
    src = env.file("locked/a.txt", b"stays")
    locked = os.path.dirname(src)
    if subprocess.run(["chattr", "+i", locked], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        [result] = env.ops().execute([OpRequest("move", src, os.path.join(other, "a.txt"))])
    finally:
        subprocess.run(["chattr", "-i", locked], check=True)
    assert result.status == "failed" and "cannot remove the source" in (result.error or "")
    assert read(src) == b"stays" and not os.path.exists(os.path.join(other, "a.txt"))
    assert not temp_files(other)
