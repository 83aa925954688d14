"""The execution engine against its anchor and floor, in one run (issue 5's targets).

    .venv/bin/python benchmarks/bench_engine.py                 # from the repository root
    .venv/bin/python benchmarks/bench_engine.py --repeat 5 --synchronous full

1. Shell fan-out/fan-in: `start` -> N x `true` -> `end`, `--workers` at once, run by
   clerk's runner (every state change committed to a fresh store, see --synchronous),
   by Luigi 3.8 (local scheduler, the same number of workers, one marker file per task
   as its targets) and by `xargs -P WORKERS` (the floor: N `true` processes, no
   bookkeeping at all). Targets: clerk >= 7x Luigi's throughput, >= 0.5x xargs'.
2. In-process python: the same fan-out of `python` tasks calling a no-op with
   `isolation: thread`, every state change committed, `--python-workers` at once
   (default 8: in-process calls are cheap to run side by side, and a step then commits
   several of them at once). Target: >= 2,000 tasks/s.
   Dispatch latency (from the step that finds a task ready to its executor being
   called) p50/p99 is reported for both clerk runs.

Each clerk run is checked before its time counts: every task row COMPLETED on its first
attempt, and a task_started and a task_completed event per task, read back through a
new connection (so: committed). clerk and xargs run `--repeat` times, interleaved;
ratios use the medians. Luigi runs once (`--luigi-python`, default
.bench/luigi-venv/bin/python from `bash benchmarks/setup.sh`; `--skip-luigi`).
Results go to --results (default .bench/results-engine.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHELL_VS_LUIGI = 7.0
SHELL_VS_XARGS = 0.5
PYTHON_RATE = 2000.0
DEFAULT_LUIGI = REPO / ".bench" / "luigi-venv" / "bin" / "python"


def noop() -> None:
    """The python tasks' callable (`bench_engine:noop`)."""


def fan_definition(tasks: int, task: dict[str, Any]) -> dict[str, Any]:
    middle = [f"t{i}" for i in range(tasks)]
    return {"tasks": [
        {"name": "start", **task},
        *({"name": name, **task, "depends_on": ["start"]} for name in middle),
        {"name": "end", **task, "depends_on": middle},
    ]}  # fmt: skip


def bench_clerk(
    tasks: int, workers: int, task: dict[str, Any], synchronous: str = "normal"
) -> dict[str, Any]:
    """One run of the fan-out in a fresh store; its time, CPU and dispatch latency."""
    import resource

    from clerk.engine.model import build_workflow
    from clerk.engine.runner import Runner
    from clerk.engine.runs import RunStore
    from clerk.plugins.manager import make_plugin_manager
    from clerk.store import open_store

    with tempfile.TemporaryDirectory(dir=REPO / ".bench") as tmp:
        db = open_store(Path(tmp) / "clerk.db")
        db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        run_id = RunStore(db).create_run(build_workflow("fan", fan_definition(tasks, task)), "{}")
        runner = Runner(db, make_plugin_manager().registry().executors,
                        logs_dir=Path(tmp) / "logs", max_workers=workers)  # fmt: skip
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        status = runner.execute([run_id])[run_id]
        elapsed = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        db.close()
        problems = verify(Path(tmp) / "clerk.db", run_id, tasks + 2)
        latency = sorted(runner.dispatch_latency)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "status": status,
        "verified": not problems and status == "COMPLETED",
        "problems": problems[:5],
        "seconds": elapsed,
        "tasks": tasks + 2,
        "workers": workers,
        "tasks_per_s": (tasks + 2) / elapsed,
        "runner_cpu_us_per_task": cpu / (tasks + 2) * 1e6,
        "dispatch_ms_p50": percentile(latency, 0.50) * 1000,
        "dispatch_ms_p99": percentile(latency, 0.99) * 1000,
    }


def verify(store_path: Path, run_id: int, tasks: int) -> list[str]:
    """What is wrong with the run as the store has it (a new connection: committed)."""
    import sqlite3

    conn = sqlite3.connect(store_path)
    try:
        problems = []
        (status,) = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        if status != "COMPLETED":
            problems.append(f"run {status}")
        bad = conn.execute(
            "SELECT task, status, attempt FROM task_runs WHERE run_id = ? AND NOT (status ="
            " 'COMPLETED' AND attempt = 1 AND started IS NOT NULL AND finished IS NOT NULL)",
            (run_id,),
        ).fetchall()
        problems += [f"task {t}: {s} attempt {a}" for t, s, a in bad]
        for kind in ("task_started", "task_completed"):
            (count,) = conn.execute(
                "SELECT count(DISTINCT task) FROM run_events WHERE run_id = ? AND kind = ?",
                (run_id, kind),
            ).fetchone()
            if count != tasks:
                problems.append(f"{count} tasks with a {kind} event, not {tasks}")
        return problems
    finally:
        conn.close()


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(fraction * len(values)))]


def bench_xargs(tasks: int, workers: int) -> dict[str, Any]:
    lines = "".join("x\n" for _ in range(tasks)).encode()
    started = time.perf_counter()
    subprocess.run(["xargs", "-P", str(workers), "-n", "1", "true"], input=lines, check=True)
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "tasks": tasks, "tasks_per_s": tasks / elapsed}


LUIGI = textwrap.dedent("""
    import os, subprocess, sys, time, luigi

    N, WORKERS, OUT, MARKS = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]

    class Leaf(luigi.Task):
        i = luigi.IntParameter()
        def output(self): return luigi.LocalTarget(os.path.join(MARKS, f"leaf{self.i}"))
        def run(self):
            subprocess.run(["true"], check=True)
            open(self.output().path, "w").close()

    class Fan(luigi.Task):
        def requires(self): return [Leaf(i=i) for i in range(N)]
        def output(self): return luigi.LocalTarget(os.path.join(MARKS, "fan"))
        def run(self):
            subprocess.run(["true"], check=True)
            open(self.output().path, "w").close()

    start = time.perf_counter()
    ok = luigi.build([Fan()], workers=WORKERS, local_scheduler=True, log_level="ERROR")
    open(OUT, "w").write(str(time.perf_counter() - start) if ok else "failed")
""")


def bench_luigi(python: str, tasks: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=REPO / ".bench") as tmp:
        script, out, marks = Path(tmp) / "fan.py", Path(tmp) / "out", Path(tmp) / "marks"
        script.write_text(LUIGI)
        marks.mkdir()
        probe = [python, "-c", "import luigi; print(luigi.__version__)"]
        version = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run([python, str(script), str(tasks), str(workers), str(out), str(marks)],
                       check=True, capture_output=True)  # fmt: skip
        text = out.read_text()
        done = len(os.listdir(marks))
    if text == "failed" or done != tasks + 1:
        return {"skipped": f"luigi failed ({done} of {tasks + 1} targets made)"}
    elapsed = float(text)
    return {"version": version, "seconds": elapsed, "tasks": tasks + 1,
            "tasks_per_s": (tasks + 1) / elapsed}  # fmt: skip


def luigi_python(requested: str | None) -> str | None:
    if requested:
        return requested
    return str(DEFAULT_LUIGI) if DEFAULT_LUIGI.exists() else None


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and best of repeated runs (each run kept too)."""
    rates = [r["tasks_per_s"] for r in runs]
    out: dict[str, Any] = {
        "tasks_per_s": statistics.median(rates),
        "tasks_per_s_best": max(rates),
        "tasks_per_s_worst": min(rates),
        "runs": runs,
    }
    for key in ("dispatch_ms_p50", "dispatch_ms_p99", "runner_cpu_us_per_task"):
        if key in runs[0]:
            out[key] = statistics.median(r[key] for r in runs)
    if "verified" in runs[0]:
        out["verified"] = all(r["verified"] for r in runs)
    return out


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="shell tasks in the fan-out")
    parser.add_argument("--python-tasks", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2, help="for the shell fan-out")
    parser.add_argument("--python-workers", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="runs of clerk and xargs")
    parser.add_argument("--synchronous", choices=["normal", "full"], default="normal",
                        help="SQLite synchronous of the store (normal: its default)")  # fmt: skip
    parser.add_argument("--luigi-python", default=os.environ.get("LUIGI_PYTHON"))
    parser.add_argument("--skip-luigi", action="store_true")
    parser.add_argument("--results", type=Path, default=REPO / ".bench" / "results-engine.json")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args()
    (REPO / ".bench").mkdir(exist_ok=True)
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "load_start": load(), "settings": vars(args) | {
                                   "results": str(args.results)}}  # fmt: skip
    shell = {"executor": "shell", "command": ["true"]}
    python = {"executor": "python", "call": "bench_engine:noop", "isolation": "thread"}
    clerk_runs, xargs_runs = [], []
    for _ in range(args.repeat):
        clerk_runs.append(bench_clerk(args.tasks, args.workers, shell, args.synchronous))
        xargs_runs.append(bench_xargs(args.tasks, args.workers))
    results["clerk_shell"] = summary(clerk_runs)
    results["xargs"] = summary(xargs_runs)
    results["clerk_python_thread"] = summary([
        bench_clerk(args.python_tasks, args.python_workers, python, args.synchronous)
        for _ in range(args.repeat)
    ])  # fmt: skip
    python_path = None if args.skip_luigi else luigi_python(args.luigi_python)
    if python_path is None:
        results["luigi"] = {"skipped": "luigi not installed (bash benchmarks/setup.sh)"
                            if not args.skip_luigi else "--skip-luigi"}  # fmt: skip
    else:
        results["luigi"] = bench_luigi(python_path, args.tasks, args.workers)
    results["load_end"] = load()
    results["targets"] = targets(results)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    failed = [t for t in results["targets"] if t["verdict"] == "FAIL"]
    unverified = not (results["clerk_shell"]["verified"]
                      and results["clerk_python_thread"]["verified"])  # fmt: skip
    return 1 if unverified or (args.strict and failed) else 0


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    shell = results["clerk_shell"]["tasks_per_s"]
    out = [
        _target("clerk shell / xargs -P", shell / results["xargs"]["tasks_per_s"],
                SHELL_VS_XARGS),
        _target("clerk in-process python, tasks/s",
                results["clerk_python_thread"]["tasks_per_s"], PYTHON_RATE),
    ]  # fmt: skip
    luigi = results["luigi"]
    if "tasks_per_s" in luigi:
        out.insert(0, _target("clerk shell / luigi", shell / luigi["tasks_per_s"], SHELL_VS_LUIGI))
    else:
        out.insert(0, {"name": "clerk shell / luigi", "verdict": f"skipped: {luigi['skipped']}"})
    return out


def _target(name: str, value: float, at_least: float) -> dict[str, Any]:
    return {"name": name, "value": value, "at_least": at_least,
            "verdict": "PASS" if value >= at_least else "FAIL"}  # fmt: skip


def report(results: dict[str, Any]) -> None:
    print(f"load average {results['load_start']} -> {results['load_end']}")
    rows = [(f"clerk shell x{results['settings']['workers']}", results["clerk_shell"]),
            (f"xargs -P {results['settings']['workers']}", results["xargs"]),
            ("luigi", results["luigi"]),
            (f"clerk python x{results['settings']['python_workers']}",
             results["clerk_python_thread"])]  # fmt: skip
    for name, r in rows:
        if "tasks_per_s" not in r:
            print(f"{name:22} skipped: {r['skipped']}")
            continue
        line = f"{name:22} {r['tasks_per_s']:8.1f} tasks/s"
        if "tasks_per_s_best" in r:
            best, worst = r["tasks_per_s_best"], r["tasks_per_s_worst"]
            line += f" (median; best {best:.1f}, worst {worst:.1f})"
        if "dispatch_ms_p50" in r:
            p50, p99 = r["dispatch_ms_p50"], r["dispatch_ms_p99"]
            line += f"; dispatch p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        if "verified" in r:
            line += "; store verified" if r["verified"] else "; STORE CHECK FAILED"
        print(line)
    for t in results["targets"]:
        if "value" in t:
            print(f"{t['verdict']:4} {t['name']}: {t['value']:.2f} (target >= {t['at_least']:g})")
        else:
            print(f"{t['verdict']} ({t['name']})")


if __name__ == "__main__":
    sys.exit(main())
