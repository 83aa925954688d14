"""Undo of every kind, refusal when the world no longer matches the journal, and redo."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from test_fileops_support import Env, digest, make_env, other_filesystem, read, temp_files

from clerk.fileops import OpRequest
from clerk.fileops.primitives import CRASH_ENV
from clerk.store import open_store
from clerk.store.journal import get_op, list_ops, select_ops


@pytest.fixture
def env(tmp_path, monkeypatch) -> Env:
    return make_env(tmp_path, monkeypatch)


def state(env: Env, op_id: int | None) -> str:
    row = get_op(env.db, op_id or 0)
    assert row is not None
    return str(row["state"])


def test_undo_move_and_rename(env):
    a = env.file("in/a.txt")
    content = digest(a)
    fileops = env.ops()
    [moved] = fileops.execute([OpRequest("move", a, env.path("out/a.txt"))])
    [renamed] = fileops.execute([OpRequest("rename", env.path("out/a.txt"), env.path("out/b.txt"))])
    results = fileops.undo([moved.op_id or 0, renamed.op_id or 0])  # order given: oldest first
    assert [r.undoes for r in results] == [renamed.op_id, moved.op_id]  # newest first
    assert [r.kind for r in results] == ["rename", "move"]
    assert [r.status for r in results] == ["done", "done"]
    assert digest(a) == content and not os.listdir(env.path("out"))
    assert state(env, moved.op_id) == state(env, renamed.op_id) == "undone"
    reverse = get_op(env.db, results[0].op_id or 0)
    assert reverse and reverse["undoes"] == renamed.op_id and reverse["state"] == "done"


def test_undo_copy_symlink_hardlink_remove_only_what_was_made(env):
    src = env.file("a.txt")
    content = digest(src)
    made = env.ops().execute([
        OpRequest("copy", src, env.path("c/a.txt")),
        OpRequest("symlink", src, env.path("c/link")),
        OpRequest("hardlink", src, env.path("c/hard")),
    ])  # fmt: skip
    results = env.ops().undo([r.op_id or 0 for r in made])
    assert [r.status for r in results] == ["done"] * 3 and [r.kind for r in results] == [
        "delete"
    ] * 3
    assert os.listdir(env.path("c")) == [] and digest(src) == content


def test_undo_trash_restores_and_removes_the_trashinfo(env):
    src = env.file("docs/a.txt")
    content = digest(src)
    [trashed] = env.ops().execute([OpRequest("trash", src)])
    info = os.path.join(env.trash, "info", "a.txt.trashinfo")
    shutil.rmtree(env.path("docs"))  # the original directory is recreated
    [restored] = env.ops().undo([trashed.op_id or 0])
    assert restored.status == "done" and restored.kind == "move" and restored.dst == src
    assert digest(src) == content and not os.path.exists(info)
    assert not os.path.exists(trashed.dst or "")


@pytest.mark.parametrize("keep_source", [False, True])
def test_undo_archive(env, keep_source):
    src = env.file("a.bin", os.urandom(20_000))
    content = digest(src)
    archive = env.path("arch/a.tar.xz")
    options = {"keep_source": True} if keep_source else {}
    [archived] = env.ops().execute([OpRequest("archive", src, archive, options=options)])
    [undone] = env.ops().undo([archived.op_id or 0])
    assert undone.status == "done", undone.error
    assert digest(src) == content and not os.path.exists(archive)
    assert undone.kind == ("delete" if keep_source else "archive")


def test_undo_overwrite_batch_brings_both_files_back(env):
    src = env.file("in/a.txt", b"incoming")
    dst = env.file("out/a.txt", b"existing")
    [result] = env.ops().execute([OpRequest("move", src, dst, on_conflict="overwrite")], batch="b1")
    ids = select_ops(env.db, batch="b1")
    assert ids == [result.op_id, result.displaced.op_id]  # type: ignore[union-attr]
    results = env.ops().undo(ids)
    assert [r.status for r in results] == ["done", "done"]
    assert read(src) == b"incoming" and read(dst) == b"existing"


def test_undo_dedupe_restores_the_duplicate(env):
    src = env.file("in/a.txt", b"same")
    env.file("out/a.txt", b"same")
    [dup] = env.ops().execute([OpRequest("move", src, env.path("out/a.txt"), on_conflict="dedupe")])
    [undone] = env.ops().undo([dup.op_id or 0])
    assert undone.status == "done" and read(src) == b"same"


def test_permanent_delete_cannot_be_undone(env):
    [gone] = env.ops().execute(
        [OpRequest("delete", env.file("a.txt"), options={"permanent": True})]
    )
    [refused] = env.ops().undo([gone.op_id or 0])
    assert refused.status == "failed" and "cannot be undone" in (refused.error or "")


def test_refusals_when_the_world_changed(env):
    fileops = env.ops()
    a, b, c, d, e = (env.file(f"in/{n}.txt") for n in "abcde")
    done = fileops.execute([
        OpRequest("move", a, env.path("out/a.txt")),
        OpRequest("move", b, env.path("out/b.txt")),
        OpRequest("copy", c, env.path("out/c.txt")),
        OpRequest("copy", d, env.path("out/d.txt")),
        OpRequest("hardlink", e, env.path("out/e.txt")),
    ])  # fmt: skip
    os.unlink(env.path("out/a.txt"))  # moved file gone
    env.file("in/b.txt", b"someone else")  # original path taken
    with open(env.path("out/c.txt"), "ab") as fh:  # the copy was edited
        fh.write(b"edit")
    os.unlink(d)  # the original of a copy is gone: the copy is the last one
    os.unlink(e)  # the hardlink is now the file's only name
    results = fileops.undo([r.op_id or 0 for r in done])
    reasons = {r.undoes: r.error or "" for r in results}
    assert all(r.status == "failed" and r.op_id is None for r in results)
    assert "is gone" in reasons[done[0].op_id]
    assert "original path is taken" in reasons[done[1].op_id]
    assert "modified since" in reasons[done[2].op_id]  # the copy was edited
    assert "the copy is the last one" in reasons[done[3].op_id]
    assert "last name" in reasons[done[4].op_id]
    assert all(state(env, r.op_id) == "done" for r in done)
    assert os.path.exists(env.path("out/c.txt")) and os.path.exists(env.path("out/e.txt"))


def test_replaced_destination_is_refused(env):
    [moved] = env.ops().execute([OpRequest("move", env.file("a.txt"), env.path("b.txt"))])
    os.unlink(env.path("b.txt"))
    env.file("b.txt", b"a different file")
    [refused] = env.ops().undo([moved.op_id or 0])
    assert refused.status == "failed" and refused.error
    assert "no longer the file" in refused.error or "modified since" in refused.error
    assert read(env.path("b.txt")) == b"a different file"


def test_only_done_ops_can_be_undone(env):
    [failed] = env.ops().execute([OpRequest("move", env.path("missing"), env.path("x"))])
    results = {r.undoes: r for r in env.ops().undo([failed.op_id or 0, 999])}
    assert "only done ops" in (results[failed.op_id].error or "")
    assert "no op with id 999" in (results[999].error or "")


def test_redo_and_undo_again(env):
    a = env.file("a.txt")
    content = digest(a)
    fileops = env.ops()
    [moved] = fileops.execute([OpRequest("move", a, env.path("sub/a.txt"))])
    [undo] = fileops.undo([moved.op_id or 0])
    [redo] = fileops.undo([undo.op_id or 0])
    assert redo.status == "done" and redo.undoes == undo.op_id
    assert digest(env.path("sub/a.txt")) == content and not os.path.exists(a)
    assert state(env, moved.op_id) == "done" and state(env, undo.op_id) == "undone"
    # the redo row is bookkeeping: undo offers the original op, not the redo
    assert select_ops(env.db) == [moved.op_id]
    [undo_again] = fileops.undo([redo.op_id or 0])  # undoing the redo undoes the original
    assert undo_again.status == "done" and undo_again.undoes == moved.op_id
    assert digest(a) == content


def test_redo_of_copy_and_trash_tracks_the_new_files(env):
    src = env.file("a.txt")
    fileops = env.ops()
    [copied, trashed] = fileops.execute([
        OpRequest("copy", src, env.path("c/a.txt")),
        OpRequest("trash", env.file("t.txt")),
    ])  # fmt: skip
    undos = fileops.undo([copied.op_id or 0, trashed.op_id or 0])
    redos = fileops.undo([u.op_id or 0 for u in undos])
    assert [r.status for r in redos] == ["done", "done"]
    assert os.path.exists(env.path("c/a.txt")) and not os.path.exists(env.path("t.txt"))
    row = get_op(env.db, copied.op_id or 0)
    assert row and row["dst_inode"] == os.lstat(env.path("c/a.txt")).st_ino  # the new copy
    # so undoing the original again removes the new copy and restores from the trash
    again = fileops.undo([copied.op_id or 0, trashed.op_id or 0])
    assert [r.status for r in again] == ["done", "done"], [r.error for r in again]
    assert not os.path.exists(env.path("c/a.txt")) and os.path.exists(env.path("t.txt"))


def test_undo_dry_run_changes_nothing(env):
    [moved] = env.ops().execute([OpRequest("move", env.file("a.txt"), env.path("b.txt"))])
    rows_before = env.rows()
    [planned] = env.ops().undo([moved.op_id or 0], dry_run=True)
    assert planned.status == "planned" and planned.dst == env.path("a.txt")
    assert env.rows() == rows_before and os.path.exists(env.path("b.txt"))


def test_an_undo_killed_mid_move_is_recovered_by_the_next_undo(tmp_path, clerk_home, clerk):
    """`clerk undo` recovers what an interrupted run left pending before it acts, as scan
    and the daemon do: killed after placing the file back (across file systems, before
    removing the other copy), the next undo found the op 'done', refused ("the original
    path is taken") and left the content in both places with the reverse op pending."""
    with other_filesystem(tmp_path) as other:
        a, b = tmp_path / "a", Path(other) / "b"
        a.mkdir()
        b.mkdir()
        (a / "f.txt").write_text("once")
        (clerk_home / "rules.d").mkdir()
        (clerk_home / "rules.d" / "r.yaml").write_text(
            f"roots:\n  a: {{path: {a}, watch: false}}\n  b: {{path: {b}, watch: false}}\n"
            f'rules:\n  - name: there\n    in: a\n    actions: [{{move: "{b}/{{name}}"}}]\n'
        )
        (batch,) = json.loads(clerk("scan", "--json", check=True).stdout)["batches"]
        killed = clerk("undo", "--batch", batch, env={CRASH_ENV: "after_place"})
        assert killed.returncode == -signal.SIGKILL
        assert (a / "f.txt").exists() and (b / "f.txt").exists()  # mid-move, as killed
        again = clerk("undo", "--batch", batch)
        assert "recovered 1 interrupted operation(s)" in again.stderr, again.stderr
        assert (a / "f.txt").read_text() == "once" and not (b / "f.txt").exists()
        assert not temp_files(str(a), str(b))
        assert list_ops(open_store(clerk_home / "clerk.db"), state="pending") == []
