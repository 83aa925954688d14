"""`clerk runs cancel|pause|resume|retry`: act on a run wherever it is being executed.

A run executed by a live runner (the worker, `clerk run --wait`, later the daemon) gets
a request (`runs.requested`) that the runner takes within a quarter second. A run
nobody executes (queued, paused, or orphaned by a crash) is changed here directly.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from clerk.engine.recovery import runner_alive
from clerk.engine.runs import (
    CANCELLED,
    FAILED,
    FINISHED,
    PAUSED,
    PENDING,
    RUNNING,
    RunInfo,
    RunStore,
)
from clerk.errors import ClerkError

if TYPE_CHECKING:
    from clerk.app import App


def _run(store: RunStore, run_id: int) -> RunInfo:
    info = store.run(run_id)
    if info is None:
        raise ClerkError(f"no run {run_id} (see `clerk runs list`)")
    return info


def _owned(store: RunStore, info: RunInfo) -> bool:
    """True when a live runner executes the run; an orphan is let go of on the way."""
    if info.runner_pid is None:
        return False
    if runner_alive(info.runner_pid, info.runner_host):
        return True
    store.release_orphans()
    return False


def _request(store: RunStore, run_id: int, what: str) -> None:
    store.update_run(run_id, f"{what}_requested", requested=what)


def cancel(app: App, run_id: int) -> str:
    """Cancel a run; returns how it stands (CANCELLED, or the request is pending)."""
    store = RunStore(app.store)
    info = _run(store, run_id)
    if info.status in FINISHED:
        raise ClerkError(f"run {run_id} has already ended ({info.status})")
    if _owned(store, info):
        _request(store, run_id, "cancel")
        return wait_for(store, run_id, FINISHED)
    from clerk.engine.runner import RunClaimed
    from clerk.engine.service import make_runner

    runner = make_runner(app)
    try:
        runner.load(run_id)  # take it over: kills what a crashed runner left running
    except RunClaimed:  # a runner took it meanwhile: ask it instead
        _request(store, run_id, "cancel")
        return wait_for(store, run_id, FINISHED)
    runner.cancel(run_id, "cancelled on request")
    runner.execute([])
    return _run(store, run_id).status


def pause(app: App, run_id: int) -> str:
    store = RunStore(app.store)
    info = _run(store, run_id)
    if info.status in FINISHED or info.status == PAUSED:
        raise ClerkError(f"run {run_id} is {info.status}: nothing to pause")
    if _owned(store, info):
        _request(store, run_id, "pause")
        return wait_for(store, run_id, {PAUSED, *FINISHED})
    store.pause_unclaimed(run_id)
    return _run(store, run_id).status


def resume(app: App, run_id: int) -> str:
    from clerk.engine.service import ensure_worker

    store = RunStore(app.store)
    info = _run(store, run_id)
    if info.status != PAUSED:
        raise ClerkError(f"run {run_id} is {info.status}, not PAUSED")
    if _owned(store, info):
        _request(store, run_id, "resume")
        return wait_for(store, run_id, {PENDING, RUNNING, *FINISHED})
    status = RUNNING if info.started else PENDING
    store.update_run(run_id, "run_resumed", status=status)
    ensure_worker(app)
    return status


def retry(app: App, run_id: int, *, claim: bool = False) -> None:
    """Queue a FAILED or CANCELLED run again: tasks that did not complete run afresh
    (their attempts start from 1); completed ones keep their results."""
    store = RunStore(app.store)
    info = _run(store, run_id)
    if info.status not in (FAILED, CANCELLED):
        raise ClerkError(f"run {run_id} is {info.status}; only FAILED or CANCELLED runs retry")
    store.requeue_failed(run_id, runner_pid=os.getpid() if claim else None)


def wait_for(store: RunStore, run_id: int, statuses: set[str] | frozenset[str],
             timeout: float = 30.0) -> str:  # fmt: skip
    """Poll the run until its status is one of `statuses` (or the timeout passes)."""
    deadline = time.monotonic() + timeout
    while True:
        status = _run(store, run_id).status
        if status in statuses or time.monotonic() > deadline:
            return status
        time.sleep(0.05)
