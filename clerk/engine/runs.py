"""The run store as the engine uses it: runs of a `Workflow`, and their runners' lives.

Every statement on the run tables is in clerk/store/runs.py (`RunRecords`); this
subclass adds only what needs the engine's own types and knowledge, which the store
room must not import: a `Workflow` stored as JSON and read back, and which recorded
runners are still alive (clerk/engine/recovery.py).
"""

from __future__ import annotations

from clerk.engine.model import Workflow
from clerk.store.runs import (
    CANCELLED,
    COMPLETED,
    FAILED,
    FINISHED,
    PAUSED,
    PENDING,
    RUNNING,
    SKIPPED,
    STATUSES,
    TASK_DONE,
    RunInfo,
    RunRecords,
    TaskRunInfo,
)

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "FINISHED",
    "PAUSED",
    "PENDING",
    "RUNNING",
    "SKIPPED",
    "STATUSES",
    "TASK_DONE",
    "RunInfo",
    "RunStore",
    "TaskRunInfo",
]


class RunStore(RunRecords):
    """Reads and writes runs in a store opened with `clerk.store.open_store`."""

    def create_run(
        self,
        workflow: Workflow,
        inputs_json: str,
        trigger: str = "manual",
        *,
        runner_pid: int | None = None,
    ) -> int:
        """A PENDING run of `workflow` with a PENDING row per task, in one transaction.

        `runner_pid`: the process that will execute it (claimed from the start, so a
        worker looking for queued runs leaves it alone).
        """
        from clerk.engine.serialize import workflow_to_json

        return self.insert_run(workflow.name, workflow.tasks, workflow_to_json(workflow),
                               inputs_json, trigger, runner_pid=runner_pid)  # fmt: skip

    def definition(self, run_id: int) -> Workflow:
        from clerk.engine.serialize import workflow_from_json

        return workflow_from_json(self.definition_json(run_id))

    def release_orphans(self) -> list[int]:
        """Unclaim unfinished runs whose runner died (kill -9, power loss); their ids.

        The next runner to adopt them kills what their tasks left running and runs the
        interrupted tasks again once (see `Runner._recover`).
        """
        from clerk.engine.recovery import runner_alive

        orphans = [run_id for run_id, pid, host in self.claimed_unfinished()
                   if not runner_alive(pid, host)]  # fmt: skip
        for run_id in orphans:
            self.update_run(run_id, "runner_lost", None, runner_pid=None)
        return orphans
