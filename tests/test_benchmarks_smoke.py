"""The scan benchmark runs end to end on a small tree, and its checks catch a bad sort."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
FILES = 200
TARGETS = {
    "clerk ext: speedup over organize",
    "clerk ext: time / raw rename loop",
    "clerk mime: time / raw libmagic loop",
    "clerk scan: peak RSS",
    "clerk --help: median wall",
}


def load(name: str) -> ModuleType:
    """Import benchmarks/<name>.py (benchmarks/ is scripts, not a package)."""
    sys.path.insert(0, str(BENCHMARKS))  # bench_scan imports its sibling bench_harness
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def load_bench() -> ModuleType:
    return load("bench_scan")


def test_bench_scan_runs_and_verifies_every_contender(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    argv = [
        sys.executable,
        str(BENCHMARKS / "bench_scan.py"),
        f"--files={FILES}",
        "--subdirs=3",
        "--skip-organize",
        "--no-sync",
        "--help-runs=2",
        f"--work-dir={tmp_path / 'work'}",
        f"--results={results}",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    data = json.loads(results.read_text())
    runs = {(r["phase"], r["contender"].split()[0]): r for r in data["runs"]}
    assert set(runs) == {("ext", "raw"), ("ext", "journaled"), ("ext", "clerk"),
                         ("ext", "organize-tool"), ("mime", "raw"), ("mime", "clerk")}  # fmt: skip
    assert runs["ext", "organize-tool"]["skipped"] == "skipped: --skip-organize"
    for key in [k for k in runs if k[1] != "organize-tool"]:
        run = runs[key]
        assert run["verified"], (key, run["problems"])
        assert run["median_seconds"] > 0 and run["max_rss_mib"] > 0
    # the extension phase leaves the files without an extension; by content all move
    assert 0 < runs["ext", "clerk"]["moved"] == runs["ext", "raw"]["moved"] < FILES
    floor = runs["ext", "journaled"]
    assert floor["contender"] == "journaled floor" and floor["journal"] and floor["catalog"]
    assert floor["moved"] == runs["ext", "raw"]["moved"]
    ratios = data["informational"]
    assert set(ratios) == {"journaled floor / raw rename loop", "clerk ext / journaled floor"}
    assert all(isinstance(v, float) and v > 0 for v in ratios.values()), ratios
    assert "journaled floor / raw rename loop" in done.stdout
    assert runs["mime", "clerk"]["moved"] == runs["mime", "raw"]["moved"] == FILES

    targets = {t["name"]: t for t in data["targets"]}
    assert set(targets) == TARGETS
    assert targets["clerk ext: speedup over organize"]["passed"] is None  # skipped
    for name in TARGETS - {"clerk ext: speedup over organize"}:
        assert isinstance(targets[name]["passed"], bool), targets[name]
    assert len(data["help_ms"]["runs"]) == 2
    assert "targets" in done.stdout and "clerk scan" in done.stdout
    assert not (tmp_path / "work" / "runs" / "ext-clerk-scan").exists()  # cleaned after success


def test_bench_scan_can_skip_the_journaled_floor(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    argv = [sys.executable, str(BENCHMARKS / "bench_scan.py"), "--files=20", "--subdirs=1",
            "--skip-organize", "--skip-journaled-floor", "--no-sync", "--help-runs=1",
            f"--work-dir={tmp_path / 'work'}", f"--results={results}"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(results.read_text())
    floor = next(r for r in data["runs"] if r["contender"] == "journaled floor")
    assert floor["skipped"] == "skipped: --skip-journaled-floor" and floor["seconds"] == []
    assert data["informational"] == dict.fromkeys(
        ("journaled floor / raw rename loop", "clerk ext / journaled floor")
    )


def run_journaled(tree: Path, out: Path, store: Path) -> int:
    spec = json.dumps({"images": ["png"], "documents": ["txt"]})
    argv = [sys.executable, str(BENCHMARKS / "raw_loops.py"), "journaled", str(tree), str(out),
            spec, str(store)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return int(done.stdout)


def test_journaled_floor_journals_and_catalogs_every_file_over_several_rounds(
    tmp_path: Path,
) -> None:
    tree, out, store = tmp_path / "tree", tmp_path / "out", tmp_path / "home" / "clerk.db"
    names = [f"f{i:04d}.{('png', 'TXT', 'dat')[i % 3]}" for i in range(1203)]  # 3 rounds
    for index, name in enumerate(names):
        sub = tree / f"d{index % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / name).write_text(name)
    assert run_journaled(tree, out, store) == 802

    with contextlib.closing(sqlite3.connect(store)) as conn:
        ops = conn.execute(
            "SELECT id, batch, kind, rule, file_id, src, dst, on_conflict, src_inode,"
            " dst_inode, state, finished FROM ops ORDER BY id"
        ).fetchall()
        files = conn.execute("SELECT id, root, relpath, inode, state FROM files").fetchall()
    assert [op[0] for op in ops] == list(range(1, 803))
    assert len({op[1] for op in ops}) == 3  # one batch per round of 500 walked files
    assert {(op[2], op[7], op[10]) for op in ops} == {("move", "rename", "done")}
    assert all(op[8] == op[9] and op[11] is not None for op in ops)
    by_id = {row[0]: row for row in files}
    assert len(by_id) == len(files) == len(names)
    for _, _, _, rule, file_id, src, dst, *_ in ops:
        name = Path(src).name
        assert dst == str(out / rule / name) and (out / rule / name).read_text() == name
        assert by_id[file_id][1:3] == ("out", f"{rule}/{name}")
    left = {(root, Path(relpath).name) for _, root, relpath, _, _ in files if root == "inbox"}
    assert left == {("inbox", n) for n in names if n.endswith(".dat")}
    assert {row[4] for row in files} == {"present"}

    bench = load_bench()
    result = bench.inspect(tree, out, ["images", "documents"])
    assert bench.check_journal(store, result) == []
    assert bench.check_catalog(store, result, len(names)) == []
    with contextlib.closing(sqlite3.connect(store)) as conn, conn:
        conn.execute("DELETE FROM files WHERE id = (SELECT file_id FROM ops LIMIT 1)")
    assert bench.check_catalog(store, result, len(names)) != []


def test_journaled_floor_never_overwrites_and_records_the_failure(tmp_path: Path) -> None:
    tree, out, store = tmp_path / "tree", tmp_path / "out", tmp_path / "clerk.db"
    tree.mkdir()
    (tree / "a.png").write_text("new")
    (tree / "b.txt").write_text("b")
    (out / "images").mkdir(parents=True)
    (out / "images" / "a.png").write_text("already there")
    (tmp_path / "outside.png").write_text("x")
    (tree / "link.png").symlink_to(tmp_path / "outside.png")  # not followed, not moved

    assert run_journaled(tree, out, store) == 1
    assert (out / "images" / "a.png").read_text() == "already there"
    assert (tree / "a.png").read_text() == "new" and (tree / "link.png").is_symlink()
    with contextlib.closing(sqlite3.connect(store)) as conn:
        ops = dict(conn.execute("SELECT rule, state || ':' || coalesce(error, '') FROM ops"))
        files = set(conn.execute("SELECT root, relpath FROM files"))
    assert ops == {"images": "failed:File exists", "documents": "done:"}
    assert files == {("inbox", "a.png"), ("out", "documents/b.txt")}


def test_journaled_floor_writes_catalog_rows_as_clerk_does() -> None:
    from clerk.config import Settings
    from clerk.store import catalog

    raw_loops = load("raw_loops")
    head, tail, reserve, block = raw_loops.catalog_sql()
    assert head == catalog.UPSERT_HEAD
    assert tail == catalog.UPSERT_TAIL
    assert reserve == catalog.RESERVE_IDS
    assert block == catalog.ID_BLOCK
    assert Settings().journal_batch == raw_loops.BATCH


def test_checks_catch_a_misplaced_and_a_lost_file(tmp_path: Path) -> None:
    bench = load_bench()
    names = {"a.png", "b.pdf", "c.mp3", "d.zip", "e"}
    tree = bench.Tree(tmp_path, len(names), {"png": 1, "pdf": 1, "mp3": 1, "zip": 1, "text": 1})
    tree.names = names
    right = {"images": {"a.png"}, "documents": {"b.pdf"}, "music": {"c.mp3"}, "archives": {"d.zip"}}
    assert bench.check_ext(bench.Sorted(right, remaining=1), tree) == []

    swapped = dict(right, images={"b.pdf"}, documents={"a.png"})
    problems = bench.check_ext(bench.Sorted(swapped, remaining=1), tree)
    assert any(p.startswith("images:") for p in problems)

    lost = dict(right, music=set())
    problems = bench.check_ext(bench.Sorted(lost, remaining=1), tree)
    assert any("lost or duplicated" in p for p in problems)

    # by content, the file without an extension (a text kind) is a document
    assert bench.check_mime(bench.Sorted(right, remaining=1), tree) != []
    by_content = dict(right, documents={"b.pdf", "e"})
    assert bench.check_mime(bench.Sorted(by_content, remaining=0), tree) == []


def test_journal_check_wants_one_done_move_per_moved_file(tmp_path: Path) -> None:
    bench = load_bench()
    db = tmp_path / "clerk.db"
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "CREATE TABLE ops (id INTEGER PRIMARY KEY, rule TEXT, kind TEXT, state TEXT, dst TEXT)"
        )
        conn.executemany(
            "INSERT INTO ops (rule, kind, state, dst) VALUES (?, 'move', 'done', ?)",
            [("images", "/o/images/a.png"), ("images", "/o/images/b.jpg"), ("music", "/o/m/c.mp3")],
        )
    found = {"images": {"a.png", "b.jpg"}, "music": {"c.mp3"}}
    assert bench.check_journal(db, bench.Sorted(found, remaining=0)) == []

    more = dict(found, music={"c.mp3", "d.mp3"})
    assert bench.check_journal(db, bench.Sorted(more, remaining=0)) == [
        "journal: 1 done moves for rule music, 2 files in its folder, 1 names differ"
    ]
    other = dict(found, images={"a.png", "x.png"})
    assert bench.check_journal(db, bench.Sorted(other, remaining=0)) != []

    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "INSERT INTO ops (rule, kind, state, dst) VALUES ('music', 'move', 'failed', '')"
        )
        conn.execute(
            "INSERT INTO ops (rule, kind, state, dst) VALUES ('music', 'move', 'done', '/o/c.mp3')"
        )
    assert bench.check_journal(db, bench.Sorted(found, remaining=0)) == [
        "journal: 1 move ops of rule music are failed",
        "journal: 2 done moves for rule music, 1 files in its folder",
    ]
    assert bench.check_journal(tmp_path / "missing.db", bench.Sorted(found, 0)) != []


@pytest.mark.parametrize("wrapper", ["gnu-time", "python-launcher"])
def test_measure_reports_the_child_peak_rss_not_the_harness_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wrapper: str
) -> None:
    harness = load("bench_harness")
    if wrapper == "python-launcher":  # what runs where GNU time is missing
        monkeypatch.setattr(harness, "_gnu_time", lambda: None)
    elif harness._gnu_time() is None:
        pytest.skip("GNU time is not installed")
    ballast = bytearray(256 * 2**20)  # this process: well over 256 MiB resident
    ballast[::4096] = b"x" * len(ballast[::4096])
    small = harness.measure(["true"], output=tmp_path / "true.log")
    grow = "b = bytearray(96 * 2**20); b[::4096] = b'x' * len(b[::4096])"
    big = harness.measure([sys.executable, "-c", grow], output=tmp_path / "big.log")
    del ballast
    assert small.returncode == 0 and small.max_rss_mib < 64
    assert big.returncode == 0 and 96 < big.max_rss_mib < 256


def test_measure_kills_a_process_that_overruns_its_timeout(tmp_path: Path) -> None:
    harness = load("bench_harness")
    slow = harness.measure(["sleep", "30"], output=tmp_path / "sleep.log", timeout=0.5)
    assert slow.timed_out and slow.returncode != 0 and slow.seconds < 10
    quick = harness.measure(["true"], output=tmp_path / "true.log", timeout=30)
    assert not quick.timed_out and quick.returncode == 0


def test_bench_daemon_runs_every_phase_and_verifies(tmp_path: Path) -> None:
    """Tiny sizes, no targets enforced: the script runs, verifies and reports."""
    results = tmp_path / "results.json"
    argv = [
        sys.executable,
        str(BENCHMARKS / "bench_daemon.py"),
        "--rate=50",
        "--seconds=1",
        "--burst=300",
        "--idle=1",
        "--roots=3",
        "--no-sync",
        f"--work-dir={tmp_path / 'work'}",
        f"--results={results}",
    ]
    reference = shutil.which("inotifywait") is not None
    if not reference:
        argv.append("--skip-reference")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    data = json.loads(results.read_text())
    got = {(r["phase"], r["contender"].split(",")[0]): r for r in data["results"]}
    assert set(got) == {("latency", "clerk daemon"), ("latency", "inotifywait | mv"),
                        ("burst", "clerk scan"), ("burst", "clerk daemon"),
                        ("idle", "clerk daemon")}  # fmt: skip
    for key, result in got.items():
        if key == ("latency", "inotifywait | mv") and not reference:
            assert result["skipped"]
            continue
        assert result["verified"], (key, result["problems"])
    for key in (("latency", "clerk daemon"), ("latency", "inotifywait | mv")):
        if got[key]["verified"]:
            assert 0 < got[key]["p50_ms"] <= got[key]["p99_ms"] <= got[key]["max_ms"]
    assert got["burst", "clerk daemon"]["seconds"] > 0 and got["burst", "clerk scan"]["seconds"] > 0
    assert got["burst", "clerk daemon"]["peak_rss_mib"] > 10
    assert got["idle", "clerk daemon"]["cpu_percent"] >= 0
    targets = {t["name"]: t["passed"] for t in data["targets"]}
    assert len(targets) == 5 and "idle: daemon CPU" in targets
    assert all(isinstance(passed, bool) for name, passed in targets.items()
               if reference or not name.startswith("latency"))  # fmt: skip
    assert "targets" in done.stdout
    assert not (tmp_path / "work" / "burst-daemon").exists()  # cleaned after success


def test_bench_daemon_checks_catch_a_lost_and_a_left_file(tmp_path: Path) -> None:
    bench = load("bench_daemon")
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    (out / "a.dat").write_text("x")
    (inbox / "b.dat").write_text("x")
    problems = bench.check_moved(inbox, out, {"a.dat", "b.dat"})
    assert problems == ["destination: 1 files missing, 0 unexpected", "1 files still in the inbox"]
    (inbox / "b.dat").rename(out / "b.dat")
    assert bench.check_moved(inbox, out, {"a.dat", "b.dat"}) == []
    assert bench.percentile([5.0], 99) == 5.0
    assert bench.percentile([float(v) for v in range(1, 101)], 50) == 50.5
