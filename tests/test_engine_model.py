"""Both workflow forms load into one model; what `clerk check` lets through builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from clerk.engine.model import (
    RetryPolicy,
    WorkflowError,
    build_workflow,
    build_workflows,
    find_workflow,
)
from clerk.engine.serialize import workflow_from_json, workflow_to_json
from clerk.plugins.manager import make_plugin_manager
from clerk.rules.check import check_rules
from clerk.rules.loader import load_rules

EXAMPLES = Path(__file__).resolve().parent.parent / "rules" / "examples"


def load(path: Path) -> dict:
    registry = make_plugin_manager().registry()
    ruleset, problems = load_rules([path], registry)
    problems += check_rules(ruleset, registry, check_paths=False)
    assert not [p for p in problems if p.severity == "error"], problems
    return build_workflows(ruleset.workflows)


def test_the_compact_form_of_the_scans_example() -> None:
    ocr = load(EXAMPLES / "scans.yaml")["ocr"]
    assert (ocr.form, ocr.parallelism, list(ocr.tasks)) == ("compact", 2, ["ocr", "text"])
    task = ocr.tasks["ocr"]
    assert task.executor == "shell"
    assert task.config["command"] == ["ocrmypdf", "--skip-text", "{path}", "{dir}/{stem}.ocr.pdf"]
    assert task.timeout == 300
    assert task.retry == RetryPolicy(max_retries=3, backoff=2, factor=2)
    assert (task.resources.cpu, task.resources.memory) == (1, 512 * 1024**2)
    assert ocr.tasks["text"].depends_on == ("ocr",)
    assert ocr.dependents("ocr") == ["text"]


def test_the_resource_form_of_the_videos_example_with_a_task_ref() -> None:
    workflows = load(EXAMPLES / "videos.yaml")
    transcode = workflows["transcode"]
    assert transcode.form == "Workflow" and transcode.parallelism == 1
    assert list(transcode.tasks) == ["probe", "transcode", "thumbnail"]
    assert transcode.tasks["transcode"].retry.max_retries == 2
    assert transcode.tasks["transcode"].resources.memory == 1024**3
    thumbnail = transcode.tasks["thumbnail"]  # from the Task resource, by taskRef
    assert thumbnail.depends_on == ("probe",) and thumbnail.timeout == 60
    assert thumbnail.config["command"][0] == "ffmpeg"
    single = workflows["thumbnail"]  # a Task is a workflow of one task
    assert single.form == "Task" and list(single.tasks) == ["thumbnail"]


def test_resource_defaults_working_dir_and_millicpu() -> None:
    workflow = build_workflow("w", {
        "apiVersion": "clerk/v1", "kind": "Workflow", "metadata": {"name": "w"},
        "spec": {"executor": "shell", "retryPolicy": {"maxRetries": 4, "maxBackoff": "10s"},
                 "tasks": [{"name": "a", "command": ["true"], "workingDir": "/tmp",
                            "resources": {"cpu": "500m"}}]},
    })  # fmt: skip
    task = workflow.tasks["a"]
    assert task.executor == "shell" and task.config == {"command": ["true"], "cwd": "/tmp"}
    assert task.retry.max_retries == 4 and task.retry.max_backoff == 10
    assert task.resources.cpu == 0.5


def test_tasks_come_in_dependency_order_and_cycles_are_refused() -> None:
    workflow = build_workflow("w", {"tasks": [
        {"name": "late", "executor": "shell", "command": ["true"], "depends_on": "early"},
        {"name": "early", "executor": "shell", "command": ["true"]},
    ]})  # fmt: skip
    assert list(workflow.tasks) == ["early", "late"]
    with pytest.raises(WorkflowError, match="dependency cycle among a, b"):
        build_workflow("w", {"tasks": [
            {"name": "a", "executor": "shell", "depends_on": ["b"]},
            {"name": "b", "executor": "shell", "depends_on": ["a"]},
        ]})  # fmt: skip
    with pytest.raises(WorkflowError, match="unknown task 'nope'"):
        build_workflow("w", {"tasks": [{"name": "a", "executor": "shell", "depends_on": ["nope"]}]})
    with pytest.raises(WorkflowError, match="timeout"):
        build_workflow("w", {"tasks": [{"name": "a", "executor": "shell", "timeout": "soon"}]})


def test_backoff_grows_by_the_factor_up_to_the_cap() -> None:
    policy = RetryPolicy(max_retries=9, backoff=1, factor=3, max_backoff=20)
    assert [policy.base_delay(n) for n in range(1, 5)] == [1, 3, 9, 20]


def test_a_workflow_survives_the_json_round_trip() -> None:
    workflow = load(EXAMPLES / "videos.yaml")["transcode"]
    assert workflow_from_json(workflow_to_json(workflow)) == workflow


def test_an_unknown_workflow_name_suggests_the_close_one() -> None:
    workflows = load(EXAMPLES / "scans.yaml")
    with pytest.raises(WorkflowError, match="did you mean 'ocr'"):
        find_workflow(workflows, "ocrr")
