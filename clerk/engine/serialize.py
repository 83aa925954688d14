"""A workflow as JSON, stored with each run: a run executes the definition it was made
with, even if the rule files change (or break) before it runs or resumes."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from clerk.engine.model import FailurePolicy, Resources, RetryPolicy, TaskSpec, Workflow


def workflow_to_json(workflow: Workflow) -> str:
    return json.dumps(asdict(workflow), ensure_ascii=True, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, frozenset | set):
        return sorted(value)
    return str(value)


def workflow_from_json(text: str) -> Workflow:
    data: dict[str, Any] = json.loads(text)
    tasks = {name: _task(raw) for name, raw in data.pop("tasks").items()}
    return Workflow(tasks=tasks, **data)


def _task(raw: dict[str, Any]) -> TaskSpec:
    return TaskSpec(
        **{
            **raw,
            "depends_on": tuple(raw["depends_on"]),
            "retry": RetryPolicy(**raw["retry"]),
            "resources": Resources(**raw["resources"]),
            "on_failure": FailurePolicy(
                frozenset(raw["on_failure"]["business_exit_codes"]),
                raw["on_failure"]["strategies"],
                raw["on_failure"]["default"],
            ),
        }
    )
