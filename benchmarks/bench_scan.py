"""Time `clerk scan` against organize-tool and against raw rename / libmagic loops.

    python benchmarks/bench_scan.py --files 100000

One tree of N sample files with real headers (clerk.samples.make_tree, some with a lying
or missing extension) is generated once; every contender then sorts its own `cp -a`
copy of it into images / documents / music / archives, as a separate process whose wall
time and peak RSS (wait4's ru_maxrss) are measured. Phases:

- ext:  clerk scan with 4 extension rules | organize-tool 3.3.0, same rules |
        os.walk + os.rename (benchmarks/raw_loops.py ext) | the journaled floor: that
        loop plus clerk's journal and catalog writes (raw_loops.py journaled)
- mime: clerk scan with 4 mime rules | os.walk + libmagic + os.rename (raw_loops.py mime)

Every run is verified (the right files in the right folders, nothing lost; for clerk
and the journaled floor, one 'done' move in the journal per file moved, and for the
floor one catalog row per file where it ended up). Results go to a table, to PASS/FAIL
lines against the targets, to informational ratios, and to `.bench/results-scan.json`.
Exit status: 0 when every run verified, 1 when one did not (or, with --strict, when a
target failed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench_harness import (
    Measured,
    files_under,
    fresh_copy,
    last_line,
    log,
    machine_info,
    measure,
    run_text,
    time_startup,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RAW_LOOPS = BENCH_DIR / "raw_loops.py"
CLERK_HOME = "clerk-home"  # in each run dir

EXT_CATEGORIES: dict[str, list[str]] = {
    "images": ["png", "jpg", "jpeg", "gif"],
    "documents": ["pdf", "txt", "csv"],
    "music": ["mp3"],
    "archives": ["zip", "gz"],
}
MIME_CATEGORIES: dict[str, list[str]] = {
    "images": ["image/*"],
    "documents": ["application/pdf", "text/*"],
    "music": ["audio/*"],
    # libmagic said application/x-gzip before 5.37
    "archives": ["application/zip", "application/gzip", "application/x-gzip"],
}
# Where each sample kind's content belongs: the MIME phase's expectation, independent
# of libmagic and of the file's (possibly lying) name.
KIND_CATEGORY = {
    "png": "images",
    "jpeg": "images",
    "pdf": "documents",
    "csv": "documents",
    "text": "documents",
    "mp3": "music",
    "zip": "archives",
    "gzip": "archives",
}

ORGANIZE_SPEEDUP_MIN = 5.0
EXT_VS_RAW_MAX = 2.0
MIME_VS_RAW_MAX = 1.5
RSS_MAX_MIB = 150.0
HELP_MAX_MS = 100.0
JOURNALED_FLOOR = "journaled floor"


# --- trees ---------------------------------------------------------------------------------


@dataclass
class Tree:
    """A generated master tree and what sorting it must produce."""

    path: Path
    files: int
    kind_counts: dict[str, int]
    names: set[str] = field(default_factory=set)

    def expected_ext(self) -> dict[str, set[str]]:
        by_ext = {e: cat for cat, exts in EXT_CATEGORIES.items() for e in exts}
        expected: dict[str, set[str]] = {cat: set() for cat in EXT_CATEGORIES}
        for name in self.names:
            stem, dot, ext = name.rpartition(".")
            category = by_ext.get(ext.lower()) if dot and stem else None
            if category is not None:
                expected[category].add(name)
        return expected

    def expected_mime_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(MIME_CATEGORIES, 0)
        for kind, count in self.kind_counts.items():
            counts[KIND_CATEGORY[kind]] += count
        return counts


def make_master(path: Path, files: int, subdirs: int) -> Tree:
    from clerk.samples import make_tree

    if path.exists():
        shutil.rmtree(path)
    started = time.perf_counter()
    kind_counts = make_tree(path, files, subdirs=subdirs)
    unknown = set(kind_counts) - set(KIND_CATEGORY)
    if unknown:
        raise SystemExit(f"clerk.samples makes kinds this benchmark does not know: {unknown}")
    names = {name for _, _, filenames in os.walk(path) for name in filenames}
    if len(names) != files:
        raise SystemExit(f"expected {files} distinct file names, the tree has {len(names)}")
    log(f"generated {files} files in {path} ({time.perf_counter() - started:.1f}s)")
    return Tree(path, files, kind_counts, names)


# --- checking a run ------------------------------------------------------------------------


@dataclass
class Sorted:
    """What a run left behind: file names per category folder, files left in the tree."""

    found: dict[str, set[str]]
    remaining: int

    @property
    def moved(self) -> int:
        return sum(len(names) for names in self.found.values())


def inspect(tree: Path, out: Path, categories: list[str]) -> Sorted:
    found = {cat: set(files_under(out / cat)) for cat in categories}
    return Sorted(found, len(files_under(tree)))


def check_totals(result: Sorted, total: int) -> list[str]:
    if result.moved + result.remaining == total:
        return []
    return [
        f"{result.moved} moved + {result.remaining} left = "
        f"{result.moved + result.remaining}, expected {total} (lost or duplicated files)"
    ]


def check_ext(result: Sorted, tree: Tree) -> list[str]:
    problems = check_totals(result, tree.files)
    for category, names in tree.expected_ext().items():
        got = result.found[category]
        if got != names:
            problems.append(
                f"{category}: {len(got)} files, expected {len(names)} "
                f"({len(names - got)} missing, {len(got - names)} unexpected)"
            )
    return problems


def check_mime(result: Sorted, tree: Tree) -> list[str]:
    problems = check_totals(result, tree.files)
    for category, count in tree.expected_mime_counts().items():
        got = len(result.found[category])
        if got != count:
            problems.append(f"{category}: {got} files, expected {count} by content")
    return problems


def check_journal(db_path: Path, result: Sorted) -> list[str]:
    """Exactly one 'done' move per file in each rule's folder, and no op in another state."""
    if not db_path.exists():
        return [f"no store at {db_path}"]
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
        ops = conn.execute("SELECT rule, kind, state, dst FROM ops").fetchall()
    problems = []
    others: Counter[tuple[str, str, str]] = Counter()
    done: dict[str, Counter[str]] = {category: Counter() for category in result.found}
    for rule, kind, state, dst in ops:
        if (kind, state) == ("move", "done") and rule in done:
            done[rule][os.path.basename(os.fsdecode(dst))] += 1
        else:
            others[rule, kind, state] += 1
    for (rule, kind, state), n in sorted(others.items()):
        problems.append(f"journal: {n} {kind} ops of rule {rule} are {state}")
    for category, names in result.found.items():
        journaled = done[category]
        differ = len(set(journaled) ^ names)
        if differ or journaled.total() != len(names):
            detail = f", {differ} names differ" if differ else ""
            problems.append(
                f"journal: {journaled.total()} done moves for rule {category}, "
                f"{len(names)} files in its folder{detail}"
            )
    return problems


def check_catalog(db_path: Path, result: Sorted, total: int) -> list[str]:
    """One 'present' catalog row per file: in root `out` at its category folder for each
    file moved, in root `inbox` for each file left; no other rows."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT root, relpath, state FROM files").fetchall()
    moved = {f"{category}/{name}" for category, names in result.found.items() for name in names}
    present = Counter(root for root, _, state in rows if state == "present")
    placed = {os.fsdecode(relpath) for root, relpath, state in rows
              if root == "out" and state == "present"}  # fmt: skip
    problems = []
    if len(rows) != total or present["inbox"] != result.remaining:
        problems.append(
            f"catalog: {len(rows)} rows ({present['inbox']} present in inbox), expected "
            f"{total} ({result.remaining} left in the tree)"
        )
    if placed != moved:
        problems.append(
            f"catalog: {len(moved - placed)} moved files without their row in out, "
            f"{len(placed - moved)} rows in out without their file"
        )
    return problems


# --- contenders ----------------------------------------------------------------------------

# A contender's run: (run_dir, tree, out) -> what the process cost
Go = Callable[[Path, Path, Path], Measured]


@dataclass
class Run:
    """Every attempt of one contender in one phase, and what checking them found."""

    phase: str  # ext | mime
    contender: str
    files: int
    go: Go | None = field(default=None, repr=False)
    journal: bool = False  # clerk and the journaled floor: check the ops table too
    catalog: bool = False  # the journaled floor: check the files table too
    seconds: list[float] = field(default_factory=list)
    max_rss_mib: float = 0.0
    moved: int = 0
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None
    note: str | None = None
    # measured on a smaller tree: time = start-up + (measured - start-up) * scale
    scale: float = 1.0
    startup_seconds: float = 0.0
    timed_out: bool = False  # killed: the time is a lower bound

    def extrapolate(self, seconds: float) -> float:
        return self.startup_seconds + (seconds - self.startup_seconds) * self.scale

    @property
    def median(self) -> float:
        return self.extrapolate(statistics.median(self.seconds)) if self.seconds else float("nan")

    @property
    def verified(self) -> bool:
        return (
            self.skipped is None and bool(self.seconds) and not self.problems and not self.timed_out
        )

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if k != "go"}
        data["median_seconds"] = round(self.median, 4) if self.seconds else None
        data["verified"] = self.verified
        return data


def clerk_rules_yaml(tree: Path, out: Path, kind: str, categories: dict[str, list[str]]) -> str:
    lines = [
        "roots:",
        f"  inbox: {{path: {json.dumps(str(tree))}, watch: false}}",
        f"  out: {{path: {json.dumps(str(out))}, watch: false}}",
        "rules:",
    ]
    for name, values in categories.items():
        dest = json.dumps(f"{out}/{name}/{{name}}")
        lines += [
            f"  - name: {name}",
            "    in: inbox",
            f"    match: [{{{kind}: {json.dumps(values)}}}]",
            f"    actions: [{{move: {dest}}}]",
        ]
    return "\n".join(lines) + "\n"


def compile_clerk() -> str:
    """Compile clerk's bytecode before timing it, as installing a package does.

    An editable install has no bytecode until an import writes it, and with
    PYTHONDONTWRITEBYTECODE set (as in some CI and sandbox environments) no import ever
    does: every run would then compile all of clerk from source, a cost no installed
    clerk pays. The dependencies in the virtualenv were compiled by pip already.
    """
    import compileall

    import clerk

    package = Path(clerk.__file__).parent
    compileall.compile_dir(str(package), quiet=1)
    return f"compiled clerk's bytecode in {package} (PYTHONDONTWRITEBYTECODE=" + (
        os.environ.get("PYTHONDONTWRITEBYTECODE", "") + ")"
    )


def clerk_go(clerk: str, kind: str, categories: dict[str, list[str]]) -> Go:
    """`clerk scan` with a fresh CLERK_HOME (so a fresh store) holding the rules."""

    def go(run_dir: Path, tree: Path, out: Path) -> Measured:
        home = run_dir / CLERK_HOME
        (home / "rules.d").mkdir(parents=True)
        (home / "rules.d" / "bench.yaml").write_text(clerk_rules_yaml(tree, out, kind, categories))
        env = {k: v for k, v in os.environ.items() if k not in ("CLERK_CONFIG", "CLERK_PROFILE")}
        env["CLERK_HOME"] = str(home)
        return measure([clerk, "scan"], output=run_dir / "run.log", env=env)

    return go


def organize_config(tree: Path, out: Path) -> str:
    lines = ["rules:"]
    for name, exts in EXT_CATEGORIES.items():
        lines += [
            f"  - name: {name}",
            f"    locations: {json.dumps(str(tree))}",
            "    subfolders: true",
            f"    filters: [{{extension: {json.dumps(exts)}}}]",
            f"    actions: [{{move: {json.dumps(str(out / name) + '/')}}}]",
        ]
    return "\n".join(lines) + "\n"


def organize_go(organize: str, timeout: float) -> Go:
    """`organize run` of the equivalent config, killed after `timeout` seconds."""

    def go(run_dir: Path, tree: Path, out: Path) -> Measured:
        config = run_dir / "organize.yaml"
        config.write_text(organize_config(tree, out))
        home = run_dir / "organize-home"
        # it writes an error log under the XDG state dir: keep that in the run dir
        env = dict(os.environ, HOME=str(home), XDG_STATE_HOME=str(home / "state"))
        env["XDG_CONFIG_HOME"] = str(home / "config")
        # errorsonly: no per-file console lines, the cheapest output organize offers
        argv = [organize, "run", str(config), "--format", "errorsonly"]
        return measure(argv, output=run_dir / "run.log", env=env, timeout=timeout)

    return go


def raw_go(mode: str) -> Go:
    categories = EXT_CATEGORIES if mode == "ext" else MIME_CATEGORIES

    def go(run_dir: Path, tree: Path, out: Path) -> Measured:
        argv = [sys.executable, str(RAW_LOOPS), mode, str(tree), str(out), json.dumps(categories)]
        return measure(argv, output=run_dir / "run.log")

    return go


def journaled_go() -> Go:
    """The ext raw loop plus clerk's journal and catalog writes, to a fresh clerk store."""

    def go(run_dir: Path, tree: Path, out: Path) -> Measured:
        store = run_dir / CLERK_HOME / "clerk.db"
        spec = json.dumps(EXT_CATEGORIES)
        argv = [sys.executable, str(RAW_LOOPS), "journaled", str(tree), str(out), spec, str(store)]
        return measure(argv, output=run_dir / "run.log")

    return go


# --- the benchmark -------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = Path(args.work_dir).absolute()
        self.runs: list[Run] = []
        self.sorted_by: dict[str, Sorted] = {}  # MIME phase results, to compare contenders

    def ext_phase(self, master: Tree, small: Tree | None) -> None:
        raw = Run("ext", "raw os.walk+os.rename", master.files, raw_go("ext"))
        clerk_go_ = clerk_go(self.args.clerk, "extension", EXT_CATEGORIES)
        clerk = Run("ext", "clerk scan", master.files, clerk_go_, journal=True)
        floor = Run("ext", JOURNALED_FLOOR, master.files, journaled_go(), journal=True)
        floor.catalog = True
        floor.note = "raw loop + clerk's journal and catalog writes (floor), SQLite on a thread"
        if self.args.skip_journaled_floor:
            floor.skipped = "skipped: --skip-journaled-floor"
        for _ in range(self.args.repeat):
            self.attempt(raw, master)
            if floor.skipped is None:
                self.attempt(floor, master)
            self.attempt(clerk, master)
        self.runs += [raw, floor, clerk, self.organize_run(master, small)]

    def organize_run(self, master: Tree, small: Tree | None) -> Run:
        organize = self.args.organize
        go = organize_go(organize, self.args.organize_timeout)
        run = Run("ext", "organize-tool 3.3.0", master.files, go)
        if self.args.skip_organize:
            run.skipped = "skipped: --skip-organize"
        elif not Path(organize).exists():
            run.skipped = "skipped: organize-tool not installed (run benchmarks/setup.sh)"
        if run.skipped:
            log(run.skipped)
            return run
        if small is not None:
            self.organize_startup(run, go)
            run.scale = master.files / small.files
            run.note = (
                f"run on {small.files} files; time extrapolated to {master.files} files as "
                f"start-up ({run.startup_seconds:.2f}s on an empty tree) + per-file time"
            )
        self.attempt(run, small or master)
        return run

    def organize_startup(self, run: Run, go: Go) -> None:
        """Organize's fixed cost, so that extrapolating per file does not multiply it."""
        empty = Tree(self.work / "master-empty", 0, {})
        empty.path.mkdir(parents=True, exist_ok=True)
        startup = Run("ext", "organize-tool (empty tree)", 0, go)
        self.attempt(startup, empty)
        if not startup.verified:
            raise SystemExit(f"organize fails on an empty tree: {startup.problems}")
        run.startup_seconds = startup.median

    def mime_phase(self, master: Tree) -> None:
        raw = Run("mime", "raw os.walk+libmagic+os.rename", master.files, raw_go("mime"))
        clerk_go_ = clerk_go(self.args.clerk, "mime", MIME_CATEGORIES)
        clerk = Run("mime", "clerk scan", master.files, clerk_go_, journal=True)
        for _ in range(self.args.repeat):
            self.attempt(raw, master)
            self.attempt(clerk, master)
        a, b = (self.sorted_by.get(r.contender) for r in (raw, clerk))
        if a is not None and b is not None and a.found != b.found:
            differ = sum(len(a.found[c] ^ b.found[c]) for c in a.found)
            clerk.problems.append(f"{differ} files sorted differently from the libmagic loop")
        self.runs += [raw, clerk]

    def attempt(self, run: Run, master: Tree) -> None:
        """One timed run on a fresh copy of master, then its verification."""
        assert run.go is not None
        slug = re.sub(r"[^a-z0-9.]+", "-", run.contender.lower()).strip("-")
        run_dir = self.work / "runs" / f"{run.phase}-{slug}"
        tree, out = fresh_copy(master.path, run_dir, sync=not self.args.no_sync)
        log(f"{run.phase}: {run.contender} on {master.files} files ...")
        try:
            measured = run.go(run_dir, tree, out)
        except OSError as exc:  # e.g. the executable is missing
            run.problems.append(f"cannot run: {exc}")
            return
        run.seconds.append(measured.seconds)
        run.max_rss_mib = max(run.max_rss_mib, measured.max_rss_mib)
        if measured.timed_out:
            run.timed_out = True
            run.note = f"killed after {self.args.organize_timeout:.0f}s: time is a lower bound"
        elif measured.returncode != 0:
            why = last_line(run_dir / "run.log")
            run.problems.append(f"exit status {measured.returncode} ({why}), logs in {run_dir}")
        else:
            run.problems += self.verify(run, master, run_dir, tree, out)
        log(f"  {measured.seconds:.2f}s, {measured.max_rss_mib:.0f} MiB, {run.problems or 'ok'}")
        if not self.args.keep and not run.problems:
            shutil.rmtree(run_dir)

    def verify(self, run: Run, master: Tree, run_dir: Path, tree: Path, out: Path) -> list[str]:
        categories = EXT_CATEGORIES if run.phase == "ext" else MIME_CATEGORIES
        result = inspect(tree, out, list(categories))
        run.moved = result.moved
        if run.phase == "ext":
            problems = check_ext(result, master)
        else:
            problems = check_mime(result, master)
            self.sorted_by[run.contender] = result
        if run.journal:
            problems += check_journal(run_dir / CLERK_HOME / "clerk.db", result)
        if run.catalog and not problems:
            problems += check_catalog(run_dir / CLERK_HOME / "clerk.db", result, master.files)
        return problems


# --- report ---------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    wanted: str
    value: float | None
    unit: str
    passed: bool | None  # None: not measured
    bound: str = ""  # ">=" when the value is a lower bound (organize killed)

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]
        got = "-" if self.value is None else f"{self.bound}{self.value:.2f}{self.unit}"
        return f"  {self.name:<38} {self.wanted:<12} got {got:<14} {verdict}"


def targets(runs: list[Run], help_ms: float | None) -> list[Target]:
    def find(phase: str, prefix: str) -> Run | None:
        run = next((r for r in runs if r.phase == phase and r.contender.startswith(prefix)), None)
        return run if run is not None and run.verified else None

    clerk_ext, clerk_mime = find("ext", "clerk"), find("mime", "clerk")
    raw_ext, raw_mime = find("ext", "raw"), find("mime", "raw")
    organize = next((r for r in runs if r.contender.startswith("organize")), None)
    org_ok = organize is not None and (organize.verified or organize.timed_out)

    def ratio(a: Run | None, b: Run | None) -> float | None:
        return a.median / b.median if a is not None and b is not None else None

    speedup = ratio(organize, clerk_ext) if org_ok else None
    vs_raw, vs_magic = ratio(clerk_ext, raw_ext), ratio(clerk_mime, raw_mime)
    clerks = [r for r in (clerk_ext, clerk_mime) if r is not None]
    rss = max((r.max_rss_mib for r in clerks), default=None)

    def test(value: float | None, ok: Callable[[float], bool]) -> bool | None:
        return None if value is None else ok(value)

    timed_out = organize is not None and organize.timed_out
    # organize killed: the speedup is a lower bound, a pass only if the bound is
    speedup_ok = test(speedup, lambda v: v >= ORGANIZE_SPEEDUP_MIN)
    return [
        Target(
            "clerk ext: speedup over organize",
            f">= {ORGANIZE_SPEEDUP_MIN:g}x",
            speedup,
            "x",
            None if timed_out and not speedup_ok else speedup_ok,
            ">=" if timed_out else "",
        ),
        Target(
            "clerk ext: time / raw rename loop",
            f"<= {EXT_VS_RAW_MAX:g}x",
            vs_raw,
            "x",
            test(vs_raw, lambda v: v <= EXT_VS_RAW_MAX),
        ),
        Target(
            "clerk mime: time / raw libmagic loop",
            f"<= {MIME_VS_RAW_MAX:g}x",
            vs_magic,
            "x",
            test(vs_magic, lambda v: v <= MIME_VS_RAW_MAX),
        ),
        Target(
            "clerk scan: peak RSS",
            f"< {RSS_MAX_MIB:g} MiB",
            rss,
            " MiB",
            test(rss, lambda v: v < RSS_MAX_MIB),
        ),
        Target(
            "clerk --help: median wall",
            f"< {HELP_MAX_MS:g} ms",
            help_ms,
            " ms",
            test(help_ms, lambda v: v < HELP_MAX_MS),
        ),
    ]


def informational(runs: list[Run]) -> dict[str, float | None]:
    """Ratios that are no target: how far the journaled floor is from each neighbour."""

    def median(phase: str, prefix: str) -> float | None:
        run = next((r for r in runs if r.phase == phase and r.contender.startswith(prefix)), None)
        return run.median if run is not None and run.verified else None

    raw, floor, clerk = (median("ext", p) for p in ("raw", JOURNALED_FLOOR, "clerk"))
    return {
        "journaled floor / raw rename loop": floor / raw if floor and raw else None,
        "clerk ext / journaled floor": clerk / floor if clerk and floor else None,
    }


def print_report(
    runs: list[Run], help_line: str, results: list[Target], ratios: dict[str, float | None]
) -> None:
    print(
        f"\n{'phase':<5} {'contender':<32} {'files':>7} {'seconds':>9} {'files/s':>9} "
        f"{'peak RSS':>9}  verified"
    )
    for run in runs:
        if run.skipped:
            print(f"{run.phase:<5} {run.contender:<32} {run.files:>7}  {run.skipped}")
            continue
        rate = run.files / run.median if run.seconds else 0
        if run.timed_out:
            verified = "no: killed"
        else:
            verified = "yes" if run.verified else "NO: " + "; ".join(run.problems)[:200]
        print(
            f"{run.phase:<5} {run.contender:<32} {run.files:>7} {run.median:>9.2f} "
            f"{rate:>9.0f} {run.max_rss_mib:>6.0f} MiB  {verified}"
        )
        notes = [run.note] if run.note else []
        if len(run.seconds) > 1:
            low, high = run.extrapolate(min(run.seconds)), run.extrapolate(max(run.seconds))
            spread = f"{low:.2f} .. {high:.2f}"
            notes.append(f"median of {len(run.seconds)} runs, {spread} s")
        for note in notes:
            print(f"      ({note})")
    print(f"\n{help_line}\n\ntargets")
    for target in results:
        print(target.line())
    print("\ninformational (not targets)")
    for name, value in ratios.items():
        print(f"  {name:<38} got {'-' if value is None else f'{value:.2f}x'}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    default_work = REPO / ".bench"
    default_organize = default_work / "organize-venv" / "bin" / "organize"
    default_clerk = shutil.which("clerk", path=str(Path(sys.executable).parent)) or "clerk"
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--files", type=int, default=100_000, help="files in the tree (N)")
    p.add_argument("--subdirs", type=int, default=100, help="subdirectories of the tree")
    p.add_argument("--repeat", type=int, default=1, help="runs of clerk and raw loops (median)")
    p.add_argument(
        "--organize-files",
        type=int,
        default=0,
        help="run organize on a tree of this many files and extrapolate per file "
        "(default: the full tree)",
    )
    p.add_argument(
        "--organize-timeout",
        type=float,
        default=900.0,
        help="kill organize after this many seconds (its time is then a lower bound)",
    )
    p.add_argument("--skip-organize", action="store_true")
    p.add_argument(
        "--skip-journaled-floor",
        action="store_true",
        help="do not run the raw loop + clerk's journal and catalog writes floor",
    )
    p.add_argument("--organize", default=str(default_organize), help="organize executable")
    p.add_argument("--clerk", default=default_clerk, help="clerk executable")
    p.add_argument("--help-runs", type=int, default=10, help="runs of `clerk --help` (median)")
    p.add_argument("--work-dir", default=str(default_work / "work"))
    p.add_argument("--results", default=str(default_work / "results-scan.json"))
    p.add_argument(
        "--no-sync", action="store_true", help="skip the sync after each copy (smoke tests)"
    )
    p.add_argument("--keep", action="store_true", help="keep every run's tree and logs")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.files < 1 or args.repeat < 1 or args.help_runs < 1:
        raise SystemExit("--files, --repeat and --help-runs must be at least 1")
    bench = Bench(args)
    log(compile_clerk())
    load_at_start = os.getloadavg()
    bench.work.mkdir(parents=True, exist_ok=True)
    master = make_master(bench.work / "master", args.files, args.subdirs)
    small = None
    if 0 < args.organize_files < args.files and not args.skip_organize:
        small = make_master(bench.work / "master-small", args.organize_files, args.subdirs)
    bench.ext_phase(master, small)
    bench.mime_phase(master)
    startup = Startup.measure(args.clerk, args.help_runs)
    results = targets(bench.runs, startup.median)
    ratios = informational(bench.runs)
    load = {"start": list(load_at_start), "end": list(os.getloadavg())}
    print_report(bench.runs, startup.line(), results, ratios)
    print(f"\nload average (1/5/15 min) at start {load['start']}, at end {load['end']}")
    write_results(args, bench, startup, results, ratios, load)
    for tree in ("master", "master-small", "master-empty"):
        if not args.keep and (bench.work / tree).exists():
            shutil.rmtree(bench.work / tree)
    failed_runs = [r for r in bench.runs if not r.skipped and not r.verified and not r.timed_out]
    failed_targets = [t for t in results if t.passed is False]
    return 1 if failed_runs or (args.strict and failed_targets) else 0


@dataclass
class Startup:
    """`clerk --help` wall times, beside the interpreter's own start-up for scale."""

    help_ms: list[float]
    python_ms: list[float]

    @classmethod
    def measure(cls, clerk: str, runs: int) -> Startup:
        log(f"timing `clerk --help` ({runs} runs) ...")
        return cls(
            time_startup([clerk, "--help"], runs),
            time_startup([sys.executable, "-c", "pass"], runs),
        )

    @property
    def median(self) -> float | None:
        return statistics.median(self.help_ms) if self.help_ms else None

    def line(self) -> str:
        if self.median is None:
            return "clerk --help: FAILED (could not run, or exit status != 0)"
        floor = statistics.median(self.python_ms) if self.python_ms else float("nan")
        return (
            f"clerk --help: median {self.median:.0f} ms of {len(self.help_ms)} runs "
            f"(python -c pass: {floor:.0f} ms)"
        )


def versions(organize: str) -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        import magic

        number = int(magic.version())  # 544 for 5.44
        found["libmagic"] = f"{number // 100}.{number % 100:02d}"
    except Exception as exc:  # the MIME phase will fail and say why
        found["libmagic"] = f"unavailable: {exc}"
    try:
        from importlib.metadata import version

        found["clerk"] = version("clerk")
    except Exception as exc:
        found["clerk"] = f"unknown: {exc}"
    if Path(organize).exists():
        found["organize"] = run_text([organize, "--version"])
    return found


def write_results(
    args: argparse.Namespace,
    bench: Bench,
    startup: Startup,
    results: list[Target],
    ratios: dict[str, float | None],
    load: dict[str, list[float]],
) -> None:
    data = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(bench.work) | versions(args.organize),
        "load_average": load,  # other work on the machine skews every number
        "params": {
            "files": args.files,
            "subdirs": args.subdirs,
            "repeat": args.repeat,
            "organize_files": args.organize_files or args.files,
        },
        "runs": [r.as_dict() for r in bench.runs],
        "help_ms": {
            "runs": startup.help_ms,
            "median": startup.median,
            "python_floor_median": statistics.median(startup.python_ms)
            if startup.python_ms
            else None,
        },
        "targets": [asdict(t) for t in results],
        "informational": ratios,  # not targets
    }
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    sys.exit(main())
