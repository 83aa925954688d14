"""Run statistics (`clerk runs stats`) and progress with an ETA (`clerk runs follow`).

The ETA comes from history: the median duration of this workflow's past COMPLETED runs,
minus the time this run has been going; without history, the mean duration of the
tasks done so far times the tasks left.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from clerk.engine.runs import COMPLETED, FAILED, FINISHED, TASK_DONE, RunStore


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (p50 = the median of an odd count)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def workflow_stats(store: RunStore, since: float | None = None) -> list[dict[str, Any]]:
    """Per workflow: counts, success and error rates, throughput, p50/p95 durations."""
    by_workflow: dict[str, list[tuple[Any, ...]]] = {}
    for row in store.run_times(since):
        by_workflow.setdefault(row[0], []).append(row)
    return [_stats(name, rows) for name, rows in sorted(by_workflow.items())]


def _stats(workflow: str, rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    finished = [r for r in rows if r[1] in FINISHED]
    completed = [r for r in finished if r[1] == COMPLETED]
    durations = [r[4] - r[3] for r in completed if r[3] and r[4]]
    span = (max(r[4] for r in finished) - min(r[2] for r in finished)) if finished else 0
    return {
        "workflow": workflow,
        "runs": len(rows),
        "active": len(rows) - len(finished),
        "completed": len(completed),
        "failed": sum(1 for r in finished if r[1] == FAILED),
        "cancelled": sum(1 for r in finished if r[1] not in (COMPLETED, FAILED)),
        "success_rate": _ratio(len(completed), len(finished)),
        "error_rate": _ratio(sum(1 for r in finished if r[1] == FAILED), len(finished)),
        "throughput_per_min": round(len(finished) / span * 60, 2) if span > 0 else None,
        "p50": _round(percentile(durations, 0.50)),
        "p95": _round(percentile(durations, 0.95)),
    }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def run_progress(store: RunStore, run_id: int) -> dict[str, Any]:
    """Tasks done of total, elapsed seconds and the ETA (seconds left, None if unknown)."""
    info = store.run(run_id)
    if info is None:
        raise KeyError(run_id)
    tasks = store.tasks(run_id)
    done = [t for t in tasks if t.status in TASK_DONE]
    now = info.finished or time.time()
    elapsed = now - info.started if info.started else 0.0
    return {
        "status": info.status,
        "done": len(done),
        "total": len(tasks),
        "elapsed": round(elapsed, 3),
        "eta": None if info.status in FINISHED else _eta(store, info.workflow, elapsed, tasks),
    }


def _eta(store: RunStore, workflow: str, elapsed: float, tasks: list[Any]) -> float | None:
    past = store.completed_durations(workflow, limit=50)
    if past:
        return round(max(0.0, statistics.median(past) - elapsed), 1)
    walls = [t.wall for t in tasks if t.status == COMPLETED and t.wall]
    left = sum(1 for t in tasks if t.status not in TASK_DONE)
    return round(statistics.mean(walls) * left, 1) if walls else None
