"""Run statistics and progress/ETA, computed from real runs in a real store."""

from __future__ import annotations

from pathlib import Path

from clerk.engine.fields import dump_fields
from clerk.engine.model import build_workflow
from clerk.engine.runner import Runner
from clerk.engine.runs import RunStore
from clerk.engine.stats import percentile, run_progress, workflow_stats
from clerk.plugins.manager import make_plugin_manager
from clerk.store import open_store


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert (percentile(values, 0.5), percentile(values, 0.95)) == (10.0, 19.0)
    assert percentile([3.0], 0.95) == 3.0 and percentile([], 0.5) is None


def test_stats_and_progress_from_the_history(tmp_path: Path) -> None:
    db = open_store(tmp_path / "clerk.db")
    store = RunStore(db)
    runner = Runner(db, make_plugin_manager().registry().executors, logs_dir=tmp_path)
    ok = build_workflow("ok", {"tasks": [
        {"name": "a", "executor": "shell", "command": ["sleep", "{pause}"]},
        {"name": "b", "executor": "shell", "command": ["true"], "depends_on": ["a"]},
    ]})  # fmt: skip
    bad = build_workflow("bad", {"tasks": [{"name": "x", "executor": "shell",
                                            "command": ["false"]}]})  # fmt: skip
    ids = [store.create_run(ok, dump_fields({"pause": p})) for p in ("0.1", "0.2", "0.3")]
    ids.append(store.create_run(bad, "{}"))
    runner.execute(ids)
    pending = store.create_run(ok, dump_fields({"pause": "0"}))

    stats = {row["workflow"]: row for row in workflow_stats(store)}
    assert stats["ok"]["runs"] == 4 and stats["ok"]["active"] == 1
    assert (stats["ok"]["completed"], stats["ok"]["success_rate"]) == (3, 1.0)
    assert 0.2 <= stats["ok"]["p50"] < 1.5 and stats["ok"]["p95"] >= stats["ok"]["p50"]
    assert stats["ok"]["throughput_per_min"] > 0
    assert (stats["bad"]["failed"], stats["bad"]["error_rate"]) == (1, 1.0)
    assert stats["bad"]["p50"] is None
    assert workflow_stats(store, since=store.run(pending).created + 1) == []

    done = run_progress(store, ids[0])
    assert (done["status"], done["done"], done["total"], done["eta"]) == ("COMPLETED", 2, 2, None)
    waiting = run_progress(store, pending)
    durations = sorted(store.run(i).finished - store.run(i).started for i in ids[:3])
    assert (waiting["done"], waiting["total"]) == (0, 2)
    assert waiting["eta"] == round(durations[1], 1)  # the median of the history
