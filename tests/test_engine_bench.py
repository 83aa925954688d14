"""The engine benchmark runs end to end at a small size and checks its own results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bench_engine_smoke(tmp_path: Path) -> None:
    results = tmp_path / "engine.json"
    bench = str(REPO / "benchmarks" / "bench_engine.py")
    argv = [sys.executable, bench, "--tasks", "20", "--python-tasks", "40", "--repeat", "1",
            "--skip-luigi", "--results", str(results)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(results.read_text())
    for name, tasks in (("clerk_shell", 22), ("clerk_python_thread", 42)):
        run = data[name]["runs"][0]
        assert data[name]["verified"] and run["tasks"] == tasks and run["problems"] == []
        assert run["dispatch_ms_p99"] >= run["dispatch_ms_p50"] > 0
    assert data["xargs"]["tasks_per_s"] > 0
    assert data["luigi"] == {"skipped": "--skip-luigi"}
    verdicts = {t["name"]: t["verdict"] for t in data["targets"]}
    assert verdicts["clerk shell / luigi"] == "skipped: --skip-luigi"
    assert {verdicts["clerk shell / xargs -P"], verdicts["clerk in-process python, tasks/s"]} <= {
        "PASS", "FAIL"}  # fmt: skip
    assert "clerk shell" in done.stdout and "dispatch p50" in done.stdout
