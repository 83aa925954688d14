"""The engine's plugin hooks, exercised through the examples in docs/plugins.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from clerk.engine.fields import dump_fields
from clerk.engine.model import build_workflow
from clerk.engine.runner import Runner
from clerk.engine.runs import COMPLETED, FAILED, RunStore
from clerk.plugins.manager import make_plugin_manager
from clerk.store import open_store

DOCS = Path(__file__).resolve().parent.parent / "docs"
ENGINE_HOOKS = ("register_executors", "run_started", "run_finished", "task_finished")


def doc_example(hook: str) -> str:
    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    section = re.split(rf"^## `{hook}`$", text, flags=re.MULTILINE)[1]
    found = re.search(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert found, f"no python example under ## `{hook}`"
    return found.group(1)


@pytest.fixture
def pm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("CLERK_DISABLE_PLUGIN_AUTOLOAD")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for hook in ENGINE_HOOKS:
        (plugins / f"doc_{hook}.py").write_text(doc_example(hook), encoding="utf-8")
    manager = make_plugin_manager(plugins_dir=plugins)
    assert not manager.failures, [str(f) for f in manager.failures]
    return manager


def test_the_documented_executor_and_run_hooks_work(pm: Any, tmp_path: Path) -> None:
    db = open_store(tmp_path / "clerk.db")
    store = RunStore(db)
    executors = pm.registry().executors
    assert {"shell", "write"} <= set(executors)
    out = tmp_path / "hello.txt"
    good = build_workflow("greet", {"tasks": [
        {"name": "write", "executor": "write", "to": str(out), "text": "hello {who}"},
        {"name": "check", "executor": "shell", "command": ["test", "-s", str(out)],
         "depends_on": ["write"]},
    ]})  # fmt: skip
    bad = build_workflow("broken", {"tasks": [
        {"name": "nowhere", "executor": "write"},  # the executor refuses: no to:
        {"name": "flaky", "executor": "shell", "command": ["false"],
         "retry": {"max": 1, "backoff": "0.01s"}},
    ]})  # fmt: skip
    ids = [store.create_run(good, dump_fields({"who": "plugins"})),
           store.create_run(bad, dump_fields({}))]  # fmt: skip
    runner = Runner(db, executors, logs_dir=tmp_path / "logs", hooks=pm, max_workers=1)
    assert runner.execute(ids) == {ids[0]: COMPLETED, ids[1]: FAILED}

    assert out.read_text() == "hello plugins"
    write = next(t for t in store.tasks(ids[0]) if t.task == "write")
    assert write.outputs == {"bytes": 13}
    nowhere = next(t for t in store.tasks(ids[1]) if t.task == "nowhere")
    assert nowhere.error_code == "config" and "needs to:" in nowhere.error

    lines = (Path.home() / "clerk-runs.log").read_text(encoding="utf-8").splitlines()
    assert lines[:4] == [
        f"started run {ids[0]} of greet",
        "task write attempt 1: COMPLETED",
        "task check attempt 1: COMPLETED",
        f"run {ids[0]} COMPLETED",
    ]
    assert f"started run {ids[1]} of broken" in lines
    assert "task flaky attempt 1: PENDING" in lines  # failed, to be retried
    assert "task flaky attempt 2: FAILED" in lines
    assert lines[-1].startswith(f"run {ids[1]} FAILED task 'nowhere': executor 'write' refused")


def test_a_hook_that_raises_does_not_break_the_run(tmp_path: Path) -> None:
    from clerk.plugins.hookspecs import hookimpl

    class Broken:
        @hookimpl
        def task_finished(self, task_run: Any) -> None:
            raise RuntimeError("plugin bug")

    manager = make_plugin_manager()
    manager.register(Broken(), name="broken")
    db = open_store(tmp_path / "clerk.db")
    workflow = build_workflow("w", {"tasks": [{"name": "t", "executor": "shell",
                                               "command": ["true"]}]})  # fmt: skip
    run_id = RunStore(db).create_run(workflow, "{}")
    runner = Runner(db, manager.registry().executors, logs_dir=tmp_path, hooks=manager)
    assert runner.execute([run_id]) == {run_id: COMPLETED}
