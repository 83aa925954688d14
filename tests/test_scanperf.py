"""What makes `clerk scan` and `clerk --help` fast, checked for staying correct:
many-row statements, the catalog written from its own thread, the walk's stat reused
by fileops, and a `--help` that imports no command module."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from clerk.roots import Root, RootSet
from clerk.store import MAX_VARIABLES, execute_rows, open_store, write_txn
from clerk.store.catalog import Catalog, CatalogRow, CatalogWriter


def _roots(tmp_path: Path) -> RootSet:
    return RootSet([Root(name="r", path=str(tmp_path))])


def _row(file_id: int, relpath: str, **kw: object) -> CatalogRow:
    return CatalogRow(file_id, "r", relpath, size=1, mtime_ns=1, dev=1, inode=file_id, **kw)  # type: ignore[arg-type]


def _places(db_path: Path) -> dict[int, tuple[str | None, str]]:
    db = open_store(db_path)
    return {r[0]: (r[1], r[2]) for r in db.execute("SELECT id, relpath, state FROM files")}


def test_execute_rows_splits_at_the_variable_limit(tmp_path: Path) -> None:
    db = open_store(tmp_path / "s.db")
    db.execute("CREATE TABLE wide (a, b, c, d, e, f, g, h, i, j)")
    rows = [tuple(range(n, n + 10)) for n in range(MAX_VARIABLES // 10 * 2 + 7)]
    with write_txn(db) as conn:
        assert execute_rows(conn, "INSERT INTO wide (a, b, c, d, e, f, g, h, i, j)", rows) == len(
            rows
        )
    assert db.execute("SELECT count(*), sum(a), max(j) FROM wide").fetchone() == (
        len(rows),
        sum(r[0] for r in rows),
        rows[-1][9],
    )


def test_upsert_moves_rows_and_takes_places_from_stale_ones(tmp_path: Path) -> None:
    db = open_store(tmp_path / "s.db")
    catalog = Catalog(db)
    with write_txn(db):
        catalog.upsert([_row(1, "a"), _row(2, "b"), _row(3, "stale")], now=100.0)
    # 1 moves to b while 2 moves on to c; a new row 4 lands where stale row 3 still is
    with write_txn(db):
        catalog.upsert([_row(1, "b"), _row(2, "c"), _row(4, "stale")], now=200.0)
    assert _places(tmp_path / "s.db") == {
        1: ("b", "present"),
        2: ("c", "present"),
        3: (None, "gone"),
        4: ("stale", "present"),
    }
    first_seen = dict(db.execute("SELECT id, first_seen FROM files").fetchall())
    assert first_seen == {1: 100.0, 2: 100.0, 3: 100.0, 4: 200.0}


def test_upsert_gives_a_place_claimed_twice_to_the_later_row(tmp_path: Path) -> None:
    db = open_store(tmp_path / "s.db")
    with write_txn(db):
        Catalog(db).upsert([_row(1, "x", tags={"t"}), _row(2, "x")])
    assert _places(tmp_path / "s.db") == {1: (None, "gone"), 2: ("x", "present")}
    assert db.execute("SELECT tags FROM files WHERE id = 1").fetchone() == ('["t"]',)


def test_catalog_writer_writes_on_its_own_connection(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    open_store(path).close()
    writer = CatalogWriter(str(path), _roots(tmp_path))
    try:
        writer.write([], [_row(1, "a")])
        writer.write([], [_row(2, "b")])  # waits for the first: at most one batch queued
    finally:
        writer.close()
    assert _places(path) == {1: ("a", "present"), 2: ("b", "present")}


def test_catalog_writer_reports_a_failed_write(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    open_store(path).close()
    writer = CatalogWriter(str(path), _roots(tmp_path))
    writer.write([], [CatalogRow(None, "r", "no-id")])  # ids are reserved by the engine
    with pytest.raises(Exception, match="outside a transaction"):
        writer.close()


def test_files_moved_down_the_walk_keep_their_catalog_rows(
    tmp_path: Path,
    clerk_home: Path,
    write_rules: Callable[[str], Path],
    clerk: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """A file moved to a directory the walk reaches later is met again while its
    catalog row may still be on its way (batches of 3): it is not acted on twice, and
    the end-of-walk sweep does not take it for gone."""
    inbox = tmp_path / "inbox"
    (inbox / "a").mkdir(parents=True)
    (inbox / "z").mkdir()
    for n in range(20):
        (inbox / "a" / f"f{n:02d}.txt").write_text(f"file {n}")
    (clerk_home / "config.yaml").write_text("journal_batch: 3\n")
    write_rules(
        f"roots:\n  inbox: {{path: {inbox}}}\nrules:\n"
        "  - name: down\n    in: inbox\n    match: [{path: 'a/*'}]\n"
        f"    actions: [{{move: '{inbox}/z/{{name}}'}}]\n"
    )
    scanned = clerk("scan", "--json", check=True)
    summary = json.loads(scanned.stdout)
    assert summary["done"] == {"move": 20} and summary["failed"] == 0
    assert sorted(p.name for p in (inbox / "z").iterdir()) == [f"f{n:02d}.txt" for n in range(20)]
    db = open_store(clerk_home / "clerk.db")
    rows = db.execute("SELECT relpath, state FROM files ORDER BY relpath").fetchall()
    assert rows == [(f"z/f{n:02d}.txt", "present") for n in range(20)]
    assert db.execute("SELECT count(*) FROM ops WHERE state = 'done'").fetchone() == (20,)
    # a second scan finds everything in place and catalogued: nothing to do, nothing gone
    again = json.loads(clerk("scan", "--json", check=True).stdout)
    assert again["done"] == {} and again["seen"] == 20
    assert db.execute("SELECT count(*) FROM files WHERE state = 'present'").fetchone() == (20,)


def test_the_journal_has_the_walks_identity_of_the_source(
    tmp_path: Path,
    clerk_home: Path,
    write_rules: Callable[[str], Path],
    clerk: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """fileops takes the walk's lstat as the source's identity: the journal's before and
    after identity are the file's, and undo puts it back."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    (inbox / "doc.pdf").write_bytes(b"%PDF-1.4 x")
    write_rules(
        f"roots:\n  inbox: {{path: {inbox}}}\n  out: {{path: {out}, watch: false}}\nrules:\n"
        f"  - name: pdf\n    in: inbox\n    match: [{{extension: pdf}}]\n"
        f"    actions: [{{move: '{out}/{{name}}'}}]\n"
    )
    st = (inbox / "doc.pdf").stat()
    clerk("scan", check=True)
    db = open_store(clerk_home / "clerk.db")
    op = db.execute(
        "SELECT src_inode, size, mtime_ns, dst_inode, state FROM ops WHERE kind = 'move'"
    ).fetchone()
    assert op == (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ino, "done")
    clerk("undo", "--last", "1", check=True)
    assert (inbox / "doc.pdf").read_bytes() == b"%PDF-1.4 x"


def test_help_imports_no_command_module() -> None:
    """`clerk --help` lists every command from registered help, importing none of them
    (nor shutil, which click's formatter would import to measure the terminal)."""
    code = (
        "import sys, runpy\n"
        "sys.argv = ['clerk', '--help']\n"
        "try:\n    runpy.run_module('clerk', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('clerk.') or m == 'shutil')\n"
        "print('LOADED', ' '.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Commands:" in done.stdout and "scan" in done.stdout and "plugins" in done.stdout
    loaded = done.stdout.rsplit("LOADED", 1)[1].split()
    assert loaded == ["clerk.cli"], loaded


def test_duplicates_are_found_across_batches_while_rows_are_being_written(
    tmp_path: Path,
    clerk_home: Path,
    write_rules: Callable[[str], Path],
    clerk: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """One file per batch: the copy met first was moved away a batch or more ago, and
    its catalog row may still be with the writer thread; `duplicate` waits for it."""
    inbox, out, trash = tmp_path / "inbox", tmp_path / "out", tmp_path / "trash"
    inbox.mkdir()
    out.mkdir()
    contents = {"a1": b"same A", "a2": b"same A", "b1": b"same B", "b2": b"same B"}
    contents |= {f"u{n}": f"unique {n}".encode() for n in range(4)}
    for name, data in contents.items():
        (inbox / f"{name}.dat").write_bytes(data)
    (clerk_home / "config.yaml").write_text(f"journal_batch: 1\ntrash_dir: {trash}\n")
    write_rules(
        f"roots:\n  inbox: {{path: {inbox}}}\n  out: {{path: {out}, watch: false}}\nrules:\n"
        "  - name: dupes\n    in: inbox\n    match: {duplicate: true}\n"
        "    actions: [{trash: {}}]\n"
        f"  - name: keep\n    in: inbox\n    actions: [{{move: '{out}/{{name}}'}}]\n"
    )
    summary = json.loads(clerk("scan", "--json", check=True).stdout)
    assert summary["done"] == {"move": 6, "trash": 2}, summary
    kept = {p.name for p in out.iterdir()}
    assert len(kept & {"a1.dat", "a2.dat"}) == 1 and len(kept & {"b1.dat", "b2.dat"}) == 1
    assert {f"u{n}.dat" for n in range(4)} <= kept


def test_checkpoints_move_to_a_thread_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's commits never checkpoint (a 50-150 ms fsync): a thread does it."""
    from test_daemon_support import wait_until

    import clerk.store as store

    monkeypatch.setattr(store, "_autocheckpoint_pages", store._autocheckpoint_pages)
    path = tmp_path / "clerk.db"
    checkpoints = store.checkpoint_in_background(path, interval=0.05)
    try:
        db = store.open_store(path)
        assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        before = path.stat().st_size
        with db.conn:
            db.execute("CREATE TABLE blob (data BLOB)")
            db.conn.executemany("INSERT INTO blob VALUES (?)", [(b"x" * 4000,)] * 500)
        # the pages are in the WAL; only a checkpoint writes them into the database file
        wait_until(lambda: path.stat().st_size > before + 1_000_000, timeout=10,
                   what="the checkpoint thread copied the WAL into the database")  # fmt: skip
        db.close()
    finally:
        checkpoints.stop()
