"""Alert conditions on run metrics fire the `alert` hook (the docs' example plugin),
are stored and are not repeated within their window."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from clerk.engine.alerts import parse_rule, stored_alerts
from clerk.engine.model import build_workflow
from clerk.engine.runner import Runner
from clerk.engine.runs import RunStore
from clerk.errors import SpecError
from clerk.plugins.manager import make_plugin_manager
from clerk.store import open_store

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
def pm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    section = re.split(r"^## `alert`$", text, flags=re.MULTILINE)[1]
    code = re.search(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert code
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "doc_alert.py").write_text(code.group(1), encoding="utf-8")
    monkeypatch.delenv("CLERK_DISABLE_PLUGIN_AUTOLOAD")
    return make_plugin_manager(plugins_dir=plugins)


def test_conditions_parse_with_their_units() -> None:
    rule = parse_rule("duration > 2h")
    assert (rule.metric, rule.comparison.op, rule.comparison.value) == ("duration", ">", 7200)
    rule = parse_rule({"when": "failure_rate >= 0.2 over 10m", "workflow": "ocr", "name": "x"})
    assert (rule.name, rule.window, rule.workflow, rule.comparison.value) == ("x", 600, "ocr", 0.2)
    assert parse_rule("queue_depth > 1000").window is None
    with pytest.raises(SpecError, match="METRIC OP VALUE"):
        parse_rule("latency > 2s")


def test_alerts_fire_once_per_window_and_reach_the_hook(pm: Any, tmp_path: Path) -> None:
    db = open_store(tmp_path / "clerk.db")
    store = RunStore(db)
    rules = [parse_rule({"when": "duration > 0.2s", "workflow": "slow", "name": "duration"}),
             parse_rule("failure_rate > 0.4 over 10m"),
             parse_rule({"when": "queue_depth >= 1", "workflow": "slow"})]  # fmt: skip
    runner = Runner(db, pm.registry().executors, logs_dir=tmp_path, hooks=pm, alerts=rules)
    slow = build_workflow("slow", {"tasks": [{"name": "t", "executor": "shell",
                                              "command": ["sleep", "0.3"]}]})  # fmt: skip
    bad = build_workflow("bad", {"tasks": [{"name": "t", "executor": "shell",
                                            "command": ["false"]}]})  # fmt: skip
    first = store.create_run(slow, "{}")
    store.create_run(slow, "{}")  # queued behind: queue depth 1 for `slow`
    runner.execute([first])
    failed = [store.create_run(bad, "{}") for _ in range(2)]
    runner.execute(failed)

    names = [a["name"] for a in reversed(stored_alerts(store))]
    # duration fires per run; failure_rate once in its window (at 1 of 2 ended runs:
    # 0.5, not again at 2 of 3); queue_depth only on `slow`
    assert names == ["duration", "queue_depth", "failure_rate"]
    lines = (Path.home() / "clerk-alerts.log").read_text(encoding="utf-8").splitlines()
    head, _, rest = lines[0].partition("; measured ")
    assert head == "alert duration: slow: duration > 0.2s"
    assert float(rest.split()[0]) >= 0.3 and rest.endswith(f"(run {first})")
    assert lines[2].startswith("alert failure_rate: failure_rate > 0.4 over 10m; measured 0.5")
