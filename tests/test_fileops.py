"""fileops on one file system: every kind, every conflict policy, odd names, dry runs,
chains, root checks and the journal queries."""

from __future__ import annotations

import os
import socket
import stat
import tarfile
import zipfile
from urllib.parse import quote

import pytest
from test_fileops_support import Env, digest, make_env, read, temp_files

from clerk.fileops import OpRequest, primitives
from clerk.store.journal import history, list_ops, select_ops


@pytest.fixture
def env(tmp_path, monkeypatch) -> Env:
    return make_env(tmp_path, monkeypatch)


def test_move_journals_identity_and_keeps_inode(env):
    src = env.file("in/a.txt")
    before, st = digest(src), os.stat(src)
    [result] = env.ops().execute([OpRequest("move", src, env.path("out/deep/a.txt"))])
    assert result.status == "done" and result.kind == "move"
    assert not os.path.exists(src)
    assert digest(env.path("out/deep/a.txt")) == before
    assert (result.dst_dev, result.dst_inode) == (st.st_dev, st.st_ino)
    [row] = env.rows()
    assert row["state"] == "done" and row["src"] == src and row["dst"] == result.dst
    assert (row["src_dev"], row["src_inode"], row["size"], row["mtime_ns"]) == (
        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
    )  # fmt: skip


def test_move_within_a_directory_is_journaled_as_rename(env):
    src = env.file("a.txt")
    [result] = env.ops().execute([OpRequest("move", src, env.path("b.txt"))])
    assert result.kind == "rename" and env.rows()[0]["kind"] == "rename"
    [moved] = env.ops().execute([OpRequest("rename", env.path("b.txt"), env.path("sub/b.txt"))])
    assert moved.kind == "move" and os.path.exists(env.path("sub/b.txt"))


def test_one_transaction_for_intents_and_one_for_outcomes(env):
    requests = [OpRequest("move", env.file(f"in/{i}"), env.path(f"out/{i}")) for i in range(50)]
    statements: list[str] = []
    env.db.conn.set_trace_callback(statements.append)
    results = env.ops().execute(requests)
    env.db.conn.set_trace_callback(None)
    assert [r.status for r in results] == ["done"] * 50
    assert sum(s.strip().upper() == "COMMIT" for s in statements) == 2


def test_copy_keeps_source_mode_and_mtime(env):
    src = env.file("a.bin", os.urandom(300_000))
    os.chmod(src, 0o640)
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    [result] = env.ops().execute([OpRequest("copy", src, env.path("copies/a.bin"))])
    dst = env.path("copies/a.bin")
    assert result.status == "done" and digest(dst) == digest(src)
    st = os.stat(dst)
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime_ns == 1_600_000_000_123_456_789
    assert st.st_ino != os.stat(src).st_ino and result.dst_inode == st.st_ino
    assert env.rows()[0]["hash"] and not temp_files(env.root)


def test_symlink_and_hardlink(env):
    src = env.file("a.txt")
    results = env.ops().execute([
        OpRequest("symlink", src, env.path("links/abs")),
        OpRequest("symlink", src, env.path("links/rel"), options={"relative": True}),
        OpRequest("hardlink", src, env.path("links/hard")),
    ])  # fmt: skip
    assert [r.status for r in results] == ["done"] * 3
    assert os.readlink(env.path("links/abs")) == src
    assert os.readlink(env.path("links/rel")) == "../a.txt"
    assert os.stat(env.path("links/hard")).st_ino == os.stat(src).st_ino


def test_trash_follows_the_freedesktop_spec(env):
    src = env.file("dir/report 100%.pdf")
    content = digest(src)
    [result] = env.ops().execute([OpRequest("trash", src)])
    assert result.status == "done" and not os.path.exists(src)
    assert result.dst == os.path.join(env.trash, "files", "report 100%.pdf")
    assert digest(result.dst) == content
    info = os.path.join(env.trash, "info", "report 100%.pdf.trashinfo")
    lines = read(info).decode("ascii").splitlines()
    assert lines[0] == "[Trash Info]"
    assert lines[1] == "Path=" + quote(src)
    assert lines[2].startswith("DeletionDate=") and len(lines[2]) == len("DeletionDate=") + 19
    assert stat.S_IMODE(os.stat(env.trash).st_mode) == 0o700
    assert env.rows()[0]["extra"] == {"trashinfo": info}
    # the same name again gets a suffix instead of replacing the first
    again = env.file("dir/report 100%.pdf")
    [second] = env.ops().execute([OpRequest("trash", again)])
    assert second.dst == os.path.join(env.trash, "files", "report 100% (1).pdf")
    assert os.path.exists(os.path.join(env.trash, "info", "report 100% (1).pdf.trashinfo"))
    assert digest(result.dst) == content


def test_delete_needs_permanent_true(env):
    src = env.file("a.txt")
    [refused] = env.ops().execute([OpRequest("delete", src)])
    assert refused.status == "failed" and "permanent: true" in (refused.error or "")
    assert os.path.exists(src)
    [done] = env.ops().execute([OpRequest("delete", src, options={"permanent": True})])
    assert done.status == "done" and not os.path.lexists(src)


@pytest.mark.parametrize("suffix", [".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"])
def test_archive_holds_one_verified_member(env, suffix):
    data = os.urandom(50_000)
    src = env.file("in/data.bin", data)
    dst = env.path(f"arch/data{suffix}")
    [result] = env.ops().execute([OpRequest("archive", src, dst)])
    assert result.status == "done", result.error
    assert not os.path.exists(src) and not temp_files(env.root)
    if suffix == ".zip":
        with zipfile.ZipFile(dst) as archive:
            assert archive.namelist() == ["data.bin"]
            assert archive.read("data.bin") == data
    else:
        with tarfile.open(dst) as archive:
            assert archive.getnames() == ["data.bin"]
            assert archive.extractfile("data.bin").read() == data  # type: ignore[union-attr]


def test_archive_keep_source_and_unknown_format(env):
    src = env.file("a.txt")
    [kept] = env.ops().execute(
        [OpRequest("archive", src, env.path("a.tar.gz"), options={"keep_source": True})]
    )
    assert kept.status == "done" and os.path.exists(src)
    [refused] = env.ops().execute([OpRequest("archive", src, env.path("a.rar"))])
    assert refused.status == "failed" and "archive format" in (refused.error or "")


# --- conflicts ------------------------------------------------------------------------
def _conflict_setup(env: Env, same: bool) -> tuple[str, str, bytes]:
    src = env.file("in/a.txt", b"incoming")
    existing = b"incoming" if same else b"existing"
    dst = env.file("out/a.txt", existing)
    return src, dst, existing


@pytest.mark.parametrize("predict", [False, True], ids=["act", "dry-run-then-act"])
def test_conflict_policies_for_move(env, predict):
    fileops = env.ops()
    outcomes = {}
    for policy in ("skip", "rename", "fail"):
        src, dst, _ = _conflict_setup(env, same=False)
        if predict:
            [planned] = env.ops(dry_run=True).execute(
                [OpRequest("move", src, dst, on_conflict=policy)]
            )
            outcomes[f"planned-{policy}"] = planned.status
        [result] = fileops.execute([OpRequest("move", src, dst, on_conflict=policy)])
        outcomes[policy] = (result.status, result.dst)
        assert read(dst) == b"existing"  # never replaced
        if result.status == "done":
            os.unlink(result.dst or "")
        else:
            os.unlink(src)
    assert outcomes["skip"][0] == "skipped"
    assert outcomes["fail"][0] == "failed"
    assert outcomes["rename"] == ("done", env.path("out/a (1).txt"))
    if predict:
        assert outcomes["planned-skip"] == "skipped" and outcomes["planned-rename"] == "planned"


def test_rename_note_and_numbering(env):
    env.file("out/a.txt")
    env.file("out/a (1).txt")
    env.file("out/b.tar.gz")
    [a] = env.ops().execute([OpRequest("move", env.file("in/a.txt"), env.path("out/a.txt"))])
    [b] = env.ops().execute([OpRequest("move", env.file("in/b.tar.gz"), env.path("out/b.tar.gz"))])
    assert a.dst == env.path("out/a (2).txt") and "a (2).txt" in (a.note or "")
    assert b.dst == env.path("out/b (1).tar.gz")
    assert env.rows()[0]["dst"] == a.dst  # the journal has the name actually used


def test_overwrite_trashes_the_old_destination_as_its_own_op(env):
    src, dst, _ = _conflict_setup(env, same=False)
    [result] = env.ops().execute([OpRequest("move", src, dst, on_conflict="overwrite")])
    assert result.status == "done" and read(dst) == b"incoming"
    old = result.displaced
    assert old is not None and old.kind == "trash" and old.status == "done"
    assert old.op_id is not None and old.op_id < (result.op_id or 0)
    assert read(old.dst or "") == b"existing"
    assert [r["kind"] for r in env.rows()] == ["trash", "move"]


def test_overwrite_refuses_a_directory(env):
    src = env.file("in/a.txt")
    os.makedirs(env.path("out/a.txt"))
    [result] = env.ops().execute(
        [OpRequest("move", src, env.path("out/a.txt"), on_conflict="overwrite")]
    )
    assert result.status == "failed" and os.path.exists(src)


def test_dedupe_trashes_a_duplicate_and_renames_a_different_file(env):
    src, dst, _ = _conflict_setup(env, same=True)
    [dup] = env.ops().execute([OpRequest("move", src, dst, on_conflict="dedupe")])
    assert dup.status == "done" and dup.kind == "trash" and "duplicate of" in (dup.note or "")
    assert not os.path.exists(src) and read(dup.dst or "") == b"incoming"
    assert select_ops(env.db, op_id=dup.op_id) == [dup.op_id]  # journaled, undoable
    src, dst, _ = _conflict_setup(env, same=False)
    [different] = env.ops().execute([OpRequest("move", src, dst, on_conflict="dedupe")])
    assert different.status == "done" and different.dst == env.path("out/a (1).txt")


@pytest.mark.parametrize("kind", ["copy", "symlink", "hardlink", "archive"])
@pytest.mark.parametrize("policy", ["skip", "rename", "fail", "overwrite", "dedupe"])
def test_conflict_policies_for_other_kinds(env, kind, policy):
    src = env.file("in/a.txt", b"data")
    dst = env.path("out/a.tar" if kind == "archive" else "out/a.txt")
    env.file(dst[len(env.root) + 1 :], b"in the way")
    [result] = env.ops().execute([OpRequest(kind, src, dst, on_conflict=policy)])
    expected = {"skip": "skipped", "fail": "failed"}.get(policy, "done")
    assert result.status == expected, result.error
    if policy in ("skip", "fail"):
        assert read(dst) == b"in the way"
    elif policy == "overwrite":
        assert result.dst == dst and result.displaced and result.displaced.status == "done"
        assert read(result.displaced.dst or "") == b"in the way"
    else:
        assert result.dst != dst and read(dst) == b"in the way"
    if kind != "archive":
        assert os.path.exists(src)


def test_dedupe_copy_of_identical_file_is_skipped(env):
    src = env.file("in/a.txt", b"same")
    dst = env.file("out/a.txt", b"same")
    [result] = env.ops().execute([OpRequest("copy", src, dst, on_conflict="dedupe")])
    assert result.status == "skipped" and os.path.exists(src)


def test_two_requests_for_one_destination_in_a_batch(env):
    a, b = env.file("in/x/a.txt", b"a"), env.file("in/y/a.txt", b"b")
    dst = env.path("out/a.txt")
    results = env.ops().execute([OpRequest("move", a, dst), OpRequest("move", b, dst)])
    assert [r.dst for r in results] == [dst, env.path("out/a (1).txt")]
    assert read(dst) == b"a" and read(env.path("out/a (1).txt")) == b"b"


def test_fallback_placement_without_renameat2(env, monkeypatch):
    monkeypatch.setattr(primitives, "_RENAMEAT2", None)
    src, dst, _ = _conflict_setup(env, same=False)
    [result] = env.ops().execute([OpRequest("move", src, dst)])
    assert result.dst == env.path("out/a (1).txt") and read(dst) == b"existing"
    assert not os.path.exists(src)


# --- names --------------------------------------------------------------------------
ODD_NAMES = [
    "with space.txt", "new\nline.txt", "-leading-dash.txt", b"caf\xe9-latin1.txt",
    b"\xff\xfe-bytes", "ünïcödé.txt",
]  # fmt: skip


@pytest.mark.parametrize("name", ODD_NAMES, ids=repr)
def test_odd_names_in_every_kind(env, name):
    text = os.fsdecode(name)
    paths = {k: env.file(os.path.join(os.fsencode(k), os.fsencode(name))) for k in
             ("move", "copy", "trash", "archive", "link")}  # fmt: skip
    hashes = {k: digest(p) for k, p in paths.items()}
    results = env.ops().execute([
        OpRequest("move", paths["move"], env.path(f"out/m/{text}")),
        OpRequest("copy", paths["copy"], env.path(f"out/c/{text}")),
        OpRequest("trash", paths["trash"]),
        OpRequest("archive", paths["archive"], env.path(f"out/a/{text}.tar.gz")),
        OpRequest("symlink", paths["link"], env.path(f"out/l/{text}")),
    ])  # fmt: skip
    assert [r.status for r in results] == ["done"] * 5, [r.error for r in results]
    assert digest(env.path(f"out/m/{text}")) == hashes["move"]
    assert digest(env.path(f"out/c/{text}")) == hashes["copy"]
    assert digest(results[2].dst or "") == hashes["trash"]
    with tarfile.open(env.path(f"out/a/{text}.tar.gz")) as archive:
        assert archive.getnames() == [text]
    assert os.readlink(env.path(f"out/l/{text}")) == paths["link"]
    # the journal gives back exactly the names it was given
    rows = env.rows()
    assert [r["src"] for r in rows] == [
        paths[k] for k in ("move", "copy", "trash", "archive", "link")
    ]
    info = os.path.join(env.trash, "info", os.path.basename(results[2].dst or "") + ".trashinfo")
    path_line = read(info).splitlines()[1]
    assert path_line == b"Path=" + quote(os.fsencode(paths["trash"])).encode()


def test_zip_refuses_a_name_that_is_not_utf8(env):
    src = env.file(b"in/\xff.txt")
    [result] = env.ops().execute([OpRequest("archive", src, env.path("out/x.zip"))])
    assert result.status == "failed" and "UTF-8" in (result.error or "") and os.path.exists(src)


# --- refusals -------------------------------------------------------------------------
def test_destinations_outside_roots_are_refused(env, tmp_path):
    src = env.file("a.txt")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, env.path("escape"))
    results = env.ops().execute([
        OpRequest("move", src, str(outside / "a.txt")),
        OpRequest("move", src, env.path("escape/a.txt")),
        OpRequest("move", src, env.path("../a.txt")),
        OpRequest("move", src, "relative/a.txt"),
    ])  # fmt: skip
    assert [r.status for r in results] == ["failed"] * 4
    assert "outside every root" in (results[0].error or "")
    assert "resolves to" in (results[1].error or "")
    assert "outside every root" in (results[2].error or "")
    assert "absolute" in (results[3].error or "")
    assert os.path.exists(src) and not os.listdir(outside)


def test_special_files_are_skipped_and_symlinks_move_as_links(env):
    fifo = env.path("fifo")
    os.mkfifo(fifo)
    os.makedirs(env.path("adir"))
    sock_path = env.path("sock")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(sock_path)
    link = env.path("link")
    os.symlink("/nonexistent/target", link)
    results = env.ops().execute([
        OpRequest("move", fifo, env.path("out/fifo")),
        OpRequest("move", env.path("adir"), env.path("out/adir")),
        OpRequest("trash", sock_path),
        OpRequest("move", link, env.path("out/link")),
        OpRequest("move", env.path("missing"), env.path("out/missing")),
    ])  # fmt: skip
    sock.close()
    assert [r.status for r in results] == ["skipped", "skipped", "skipped", "done", "failed"]
    assert "not a regular file" in (results[0].note or "")
    assert os.readlink(env.path("out/link")) == "/nonexistent/target"
    assert "does not exist" in (results[4].error or "")


def test_unknown_kind_and_policy_fail_clearly(env):
    src = env.file("a.txt")
    results = env.ops().execute([
        OpRequest("shred", src, env.path("b")),  # type: ignore[arg-type]
        OpRequest("move", src, env.path("b"), on_conflict="clobber"),  # type: ignore[arg-type]
    ])  # fmt: skip
    assert "unknown operation kind" in (results[0].error or "")
    assert "unknown on_conflict" in (results[1].error or "")


# --- dry run, chains ------------------------------------------------------------------
def test_dry_run_predicts_without_touching_anything(env):
    src = env.file("in/a.txt")
    env.file("out/a.txt")
    other = env.file("in/b.txt")
    results = env.ops(dry_run=True).execute([
        OpRequest("move", src, env.path("out/a.txt")),
        OpRequest("trash", other),
        OpRequest("rename", src, env.path("out/renamed.txt"), chain=0),
        OpRequest("move", src, env.path("out/a.txt"), on_conflict="overwrite"),
    ])  # fmt: skip
    assert [r.status for r in results] == ["planned"] * 4
    assert results[0].dst == env.path("out/a (1).txt")
    assert results[1].dst == os.path.join(env.trash, "files", "b.txt")
    assert results[2].src == env.path("out/a (1).txt")
    assert results[3].displaced is not None and results[3].displaced.status == "planned"
    assert env.rows() == [] and os.path.exists(src) and os.path.exists(other)
    assert not os.path.exists(env.trash) and not os.path.exists(env.path("out/renamed.txt"))


def test_chains_start_from_the_actual_result(env):
    src = env.file("in/a.txt")
    env.file("out/a.txt")
    results = env.ops().execute([
        OpRequest("move", src, env.path("out/a.txt")),
        OpRequest("copy", src, env.path("copies/a.txt"), chain=0),
        OpRequest("rename", src, env.path("copies/b.txt"), chain=1),
        OpRequest("move", env.path("missing"), env.path("x"), on_conflict="skip"),
        OpRequest("move", src, env.path("never"), chain=3),
        OpRequest("move", src, env.path("never"), chain=9),
    ])  # fmt: skip
    assert results[0].dst == env.path("out/a (1).txt")
    assert results[1].src == env.path("out/a (1).txt") and results[1].status == "done"
    # after a copy the file is still where the copy found it: the rename takes the file
    assert results[2].src == env.path("out/a (1).txt") and os.path.exists(env.path("copies/b.txt"))
    assert os.path.exists(env.path("copies/a.txt")) and not os.path.exists(
        env.path("out/a (1).txt")
    )
    assert results[4].status == "skipped" and results[4].note == "previous action did not complete"
    assert results[5].status == "failed" and "earlier request" in (results[5].error or "")


# --- journal queries ------------------------------------------------------------------
def test_select_list_and_history(env):
    fileops = env.ops()
    a = env.file("a.txt")
    [m1] = fileops.execute([OpRequest("move", a, env.path("b.txt"), file_id=None)], batch="one")
    [m2] = fileops.execute(
        [OpRequest("move", env.path("b.txt"), env.path("sub/c.txt"))], batch="two"
    )
    [gone] = fileops.execute([OpRequest("delete", env.file("d.txt"), options={"permanent": True})])
    [bad] = fileops.execute([OpRequest("move", env.path("nope"), env.path("x"))])
    assert select_ops(env.db) == [m2.op_id, m1.op_id]  # newest first; no delete, no failure
    assert select_ops(env.db, last=1) == [m2.op_id]
    assert select_ops(env.db, batch="one") == [m1.op_id]
    assert select_ops(env.db, op_id=gone.op_id) == []
    assert select_ops(env.db, since=env.rows()[-1]["created"] + 1) == []  # type: ignore[operator]
    assert [r["id"] for r in list_ops(env.db)] == [bad.op_id, gone.op_id, m2.op_id, m1.op_id]
    assert [r["id"] for r in list_ops(env.db, state="failed")] == [bad.op_id]
    assert [r["id"] for r in list_ops(env.db, batch="two")] == [m2.op_id]
    steps = history(env.db, path=env.path("sub/c.txt"))
    assert [(r["src"], r["dst"]) for r in steps] == [
        (a, env.path("b.txt")), (env.path("b.txt"), env.path("sub/c.txt")),
    ]  # fmt: skip


def test_history_by_file_id(env):
    env.db["files"].insert({"id": 7, "root": "main", "relpath": "a.txt", "state": "present"})
    [result] = env.ops().execute(
        [OpRequest("move", env.file("a.txt"), env.path("z.txt"), file_id=7, rule="r1")]
    )
    assert result.file_id == 7 and result.rule == "r1"
    [row] = history(env.db, file_id=7)
    assert row["id"] == result.op_id and row["rule"] == "r1"


def test_a_source_gone_between_planning_and_acting_is_skipped_not_failed(env):
    # what a walk saw and someone else moved away before the move (another scan of the
    # same root): nothing is lost, and it is not clerk's failure
    src = env.file("walked.txt")
    seen = os.lstat(src)
    os.rename(src, env.path("elsewhere.txt"))
    (result,) = env.ops().execute(
        [OpRequest("move", src, env.path("out/walked.txt"), source_stat=seen)]
    )
    assert result.status == "skipped"
    assert "gone since it was seen" in (result.note or "")
    assert os.path.exists(env.path("elsewhere.txt")) and not os.path.exists(
        env.path("out/walked.txt")
    )
