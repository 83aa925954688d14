"""The execution engine against the floor: a fan-out/fan-in workflow of `true` tasks.

    .venv/bin/python benchmarks/bench_engine.py [--tasks 1000] [--workers 2] [--json]

One run: `start` -> N x `true` -> `end`, executed by clerk's runner with `--workers`
workers and every state change committed to a fresh store (WAL, synchronous=FULL), and
`xargs -P WORKERS` running the same N `true` processes (the floor: no bookkeeping at
all). Issue 5 asks for >= 50% of the xargs throughput and >= 7x Luigi's (Luigi 3.8,
local scheduler, 2 workers) -- Luigi is run when `--luigi-python` points at a python
that has it, e.g. a venv made with `python3 -m venv .bench/luigi && .bench/luigi/bin/pip
install luigi==3.*`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def bench_clerk(tasks: int, workers: int) -> dict[str, Any]:
    from clerk.engine.model import build_workflow
    from clerk.engine.runner import Runner
    from clerk.engine.runs import RunStore
    from clerk.plugins.manager import make_plugin_manager
    from clerk.store import open_store

    with tempfile.TemporaryDirectory() as tmp:
        db = open_store(Path(tmp) / "clerk.db")
        store = RunStore(db)
        middle = [f"t{i}" for i in range(tasks)]
        definition = {"tasks": [
            {"name": "start", "executor": "shell", "command": ["true"]},
            *({"name": n, "executor": "shell", "command": ["true"], "depends_on": ["start"]}
              for n in middle),
            {"name": "end", "executor": "shell", "command": ["true"], "depends_on": middle},
        ]}  # fmt: skip
        run_id = store.create_run(build_workflow("fan", definition), "{}")
        runner = Runner(db, make_plugin_manager().registry().executors,
                        logs_dir=Path(tmp) / "logs", max_workers=workers)  # fmt: skip
        started = time.perf_counter()
        status = runner.execute([run_id])[run_id]
        elapsed = time.perf_counter() - started
        rows = db.execute(
            "SELECT count(*) FROM task_runs WHERE run_id = ? AND status = 'COMPLETED'", [run_id]
        ).fetchone()[0]
        events = db.execute("SELECT count(*) FROM run_events WHERE run_id = ?", [run_id])
        return {"status": status, "seconds": elapsed, "tasks": tasks + 2,
                "completed_rows": rows, "events": events.fetchone()[0],
                "tasks_per_s": (tasks + 2) / elapsed}  # fmt: skip


def bench_xargs(tasks: int, workers: int) -> dict[str, Any]:
    started = time.perf_counter()
    subprocess.run(["xargs", "-P", str(workers), "-n", "1", "true"],
                   input="\n".join("x" for _ in range(tasks)).encode(), check=True)  # fmt: skip
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "tasks": tasks, "tasks_per_s": tasks / elapsed}


LUIGI = textwrap.dedent("""
    import subprocess, sys, time, luigi

    N = int(sys.argv[1]); WORKERS = int(sys.argv[2]); OUT = sys.argv[3]

    class Done(luigi.Target):
        done = set()
        def __init__(self, name): self.name = name
        def exists(self): return self.name in Done.done

    class Leaf(luigi.Task):
        i = luigi.IntParameter()
        def output(self): return Done(f"leaf{self.i}")
        def run(self):
            subprocess.run(["true"], check=True); Done.done.add(f"leaf{self.i}")

    class Fan(luigi.Task):
        def requires(self): return [Leaf(i=i) for i in range(N)]
        def output(self): return Done("fan")
        def run(self): subprocess.run(["true"], check=True); Done.done.add("fan")

    start = time.perf_counter()
    ok = luigi.build([Fan()], workers=WORKERS, local_scheduler=True, log_level="ERROR")
    open(OUT, "w").write(str(time.perf_counter() - start) if ok else "failed")
""")


def bench_luigi(python: str, tasks: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        script, out = Path(tmp) / "fan.py", Path(tmp) / "out"
        script.write_text(LUIGI)
        subprocess.run([python, str(script), str(tasks), str(workers), str(out)], check=True,
                       capture_output=True)  # fmt: skip
        elapsed = float(out.read_text())
    return {"seconds": elapsed, "tasks": tasks + 1, "tasks_per_s": (tasks + 1) / elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--luigi-python", default=os.environ.get("LUIGI_PYTHON"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "clerk": bench_clerk(args.tasks, args.workers),
        "xargs": bench_xargs(args.tasks, args.workers),
    }
    if args.luigi_python:
        results["luigi"] = bench_luigi(args.luigi_python, args.tasks, args.workers)
    clerk_rate = results["clerk"]["tasks_per_s"]
    results["clerk_vs_xargs"] = clerk_rate / results["xargs"]["tasks_per_s"]
    if "luigi" in results:
        results["clerk_vs_luigi"] = clerk_rate / results["luigi"]["tasks_per_s"]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name in ("clerk", "xargs", "luigi"):
            if name in results:
                r = results[name]
                print(f"{name:6} {r['tasks']:5} tasks in {r['seconds']:6.2f}s"
                      f" = {r['tasks_per_s']:7.1f} tasks/s")  # fmt: skip
        print(f"clerk / xargs: {results['clerk_vs_xargs']:.2f} (target >= 0.5)")
        if "clerk_vs_luigi" in results:
            print(f"clerk / luigi: {results['clerk_vs_luigi']:.2f} (target >= 7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
