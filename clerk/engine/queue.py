"""Where the `run` action puts the runs it starts: the run sink its engine was given.

A rule's `run: WORKFLOW` action creates a PENDING run (a durable row) through the run
sink of the rules engine that applies it (`Engine(run_sink=...)`, handed to the action
as `Target.run_sink`). Whoever drives the engine decides what happens next:

- `clerk scan` (`App.engine`'s default, `StoreRuns`): the run goes into the store of
  the command's app; with the first run (and again when the process exits) a detached
  worker (`python -m clerk.engine.worker`) is started unless one is active; it executes
  every queued run and exits when none is left. So scan returns as soon as its file
  operations are done, and `clerk runs list` shows the runs it started. `clerk scan
  --no-run` passes a `StoreRuns` that starts no worker.
- the daemon passes `DaemonRuns.submit`, which hands runs to its own runner;
- tests pass any callable taking a `RunRequest` and returning the run's id.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clerk.app import App
    from clerk.engine.model import Workflow


@dataclass(frozen=True)
class RunRequest:
    workflow: str
    fields: Mapping[str, Any]  # the file's template fields, params already merged in
    trigger: str = "manual"  # "rule:<name>" for the run action


#: creates a PENDING run for the request; returns its id
RunSink = Callable[[RunRequest], int]


class StoreRuns:
    """The run sink of `clerk scan`: each run is a PENDING row in `app`'s store, of a
    workflow of `workflows` (the raw `RuleSet.workflows` of the engine's rule set).

    `start_worker`: the first run (and the process's exit, for runs queued after a
    worker that was already finishing had looked for the last time) makes sure a
    detached worker will execute them; without it, runs are only queued.
    """

    def __init__(self, app: App, workflows: Mapping[str, Any], *, start_worker: bool = True):
        self.app = app
        self.raw_workflows = workflows
        self.start_worker = start_worker
        self._workflows: dict[str, Workflow] | None = None  # built with the first run
        self._worker_checked = False

    def __call__(self, request: RunRequest) -> int:
        from clerk.engine.fields import dump_fields
        from clerk.engine.model import build_workflows, find_workflow
        from clerk.engine.runs import RunStore

        if self._workflows is None:  # once per sink, not once per file
            self._workflows = build_workflows(self.raw_workflows)
        workflow = find_workflow(self._workflows, request.workflow)
        run_id = RunStore(self.app.store).create_run(workflow, dump_fields(request.fields),
                                                     request.trigger)  # fmt: skip
        if self.start_worker and not self._worker_checked:
            from clerk.engine.service import ensure_worker

            self._worker_checked = True
            ensure_worker(self.app)
            atexit.register(ensure_worker, self.app)
        return run_id
