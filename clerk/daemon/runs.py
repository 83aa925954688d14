"""The daemon's workflow runner: runs start at once, in the daemon, not in a worker.

While the daemon runs, a rule's `run:` action (and a scheduled workflow) hands its run
to `DaemonRuns.submit` (the daemon's engine's run sink, see clerk.engine.queue): the run
is created claimed by the daemon and the runner thread takes it within a poll. The
thread owns its own store connection and an engine `Runner`; it also adopts runs queued
by the CLI (`clerk run` without `--wait`), and the daemon holds the worker lock so no
detached worker competes.

Start: runs whose runner died (kill -9 of an earlier daemon) are let go of first and
adopted before any new run; the Runner kills what their tasks left running and runs
the interrupted tasks again once (see `Runner._recover`; completed tasks never run again).
Stop: no run is taken any more; the runs in flight are paused so that no new task
starts, and the running tasks get until the stop deadline to finish. Then the runs go
back to the queue (RUNNING or PENDING, unclaimed) for the next start. A task still
running at the deadline is left to the next start's recovery, which kills its process
group and runs it again (unless it says `on_interrupt: fail`).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from clerk.engine.fields import dump_fields
from clerk.engine.model import Workflow, build_workflows, find_workflow
from clerk.engine.queue import RunRequest
from clerk.engine.runs import PAUSED, PENDING, RUNNING, RunStore

if TYPE_CHECKING:
    from clerk.app import App
    from clerk.engine.runner import Runner
    from clerk.rules.model import RuleSet

log = logging.getLogger("clerk.daemon.runs")

POLL = 0.25  # how often the runner looks for requests and new runs while runs are open
IDLE_POLL = 1.0  # how often it looks for runs queued by the CLI while idle
REVIVE_AFTER = 30.0  # a runner thread that died is restarted at most this often


class DaemonRuns:
    def __init__(self, app: App):
        self.app = app
        self.workflows: dict[str, Workflow] = {}
        self._submitted: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._paused_for_stop: set[int] = set()
        self.active = 0  # runs the runner holds (read by `status` from other threads)
        self.submitted = 0
        self.recovered: list[int] = []
        self.crashed: str | None = None  # why the runner thread died
        self._started_at = 0.0

    def use(self, ruleset: RuleSet) -> None:
        """The workflows of the current rules (on load and reload)."""
        self.workflows = build_workflows(ruleset.workflows)

    # --- the main thread -------------------------------------------------------------------
    def start(self) -> None:
        """Let go of the runs an earlier daemon left, then start the runner thread."""
        from clerk.engine.service import try_lock, worker_lock_path

        self._lock_fd = try_lock(worker_lock_path(self.app))
        if self._lock_fd is None:
            log.warning("a detached worker is executing runs; the daemon shares the queue")
        self.recovered = RunStore(self.app.store).release_orphans()
        if self.recovered:
            log.warning("recovering run(s) %s, interrupted when their runner stopped",
                        self.recovered)  # fmt: skip
        self._start_thread()

    def _start_thread(self) -> None:
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._serve, name="clerk-runs", daemon=True)
        self._thread.start()

    def revive(self) -> str | None:
        """Restart the runner thread if it died (it should not); why it was down, if so."""
        if self._thread is None or self._thread.is_alive() or self._stopping.is_set():
            return None
        if time.monotonic() - self._started_at < REVIVE_AFTER:
            return None  # a runner that cannot start is not restarted in a tight loop
        why = self.crashed or "the runner thread ended"
        self.crashed = None
        self._start_thread()
        return why

    def submit(self, request: RunRequest) -> int:
        """The run sink: create the run, claimed by the daemon, and wake the runner."""
        workflow = find_workflow(self.workflows, request.workflow)
        run_id = RunStore(self.app.store).create_run(
            workflow, dump_fields(request.fields), request.trigger, runner_pid=os.getpid()
        )
        self.submitted += 1
        self._submitted.put(run_id)
        self._wake.set()
        return run_id

    def stop_taking(self) -> None:
        """No new run, no new task (safe from a signal handler: it only sets events)."""
        self._stopping.set()
        self._wake.set()

    def stop(self, timeout: float) -> bool:
        """Take no more runs; wait up to `timeout` for the running tasks. True if clean."""
        self.stop_taking()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("tasks still running after %.0fs: left to the next start's"
                            " recovery (their runs stay claimed by this process)",
                            timeout)  # fmt: skip
                return False
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        return True

    def status(self) -> dict[str, Any]:
        return {"active": self.active, "submitted": self.submitted,
                "recovered": len(self.recovered)}  # fmt: skip

    # --- the runner thread -----------------------------------------------------------------
    def _serve(self) -> None:
        from clerk.engine.service import make_runner
        from clerk.store import open_store

        try:
            db = open_store(self.app.config.store_path, migrate=False)
        except Exception as exc:
            self.crashed = f"{type(exc).__name__}: {exc}"
            log.exception("the runner cannot open the store")
            return
        try:
            store = RunStore(db)
            try:
                runner = make_runner(self.app, db=db)
            except Exception as exc:  # e.g. bad `alerts:` in config.yaml
                self.crashed = f"{type(exc).__name__}: {exc}"
                log.exception("the runner cannot start")
                return
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    runner.execute([], adopt=lambda: self._adopt(runner, store), poll=POLL)
                except Exception:  # a bug in a run must not end the daemon's runner
                    log.exception("the runner failed; going on")
                self.active = 0
                runner.results.clear()  # finished runs live in the store, not here
                if not self._stopping.is_set():
                    self._wake.wait(IDLE_POLL)
            self._requeue(store)
        finally:
            db.close()

    def _adopt(self, runner: Runner, store: RunStore) -> list[int]:
        """Called by the runner every poll, on this thread: the runs to take on."""
        held = runner.held()  # on the runner's own thread, between its steps
        self.active = len(held)
        if self._stopping.is_set():
            for run_id, paused in held.items():
                if run_id not in self._paused_for_stop and not paused:
                    self._paused_for_stop.add(run_id)
                    runner.pause(run_id)
            return []
        ids = store.queued()  # orphans let go of at start (oldest first), the CLI's runs
        while True:
            try:
                ids.append(self._submitted.get_nowait())
            except queue.Empty:
                return ids

    def _requeue(self, store: RunStore) -> None:
        """Runs paused for the stop go back to the queue for the next start."""
        for run_id in sorted(self._paused_for_stop):
            info = store.run(run_id)
            if info is None or info.status != PAUSED:
                continue
            status = RUNNING if info.started else PENDING
            store.update_run(run_id, "run_requeued", {"reason": "the daemon stopped"},
                             status=status, runner_pid=None)  # fmt: skip
            log.info("run %d goes back to the queue (daemon stopping)", run_id)
