"""`clerk run`, `clerk runs list|show|logs`, and runs started by `clerk scan`, through
the real command in subprocesses (and the detached worker it starts)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PY = sys.executable


@pytest.fixture
def setup(tmp_path: Path, write_rules: Callable[[str, str], Path]) -> Path:
    """An inbox root and workflows: `copy` (writes the input's name to out/), `fail`."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    copy = out.parent / "copy.py"
    copy.write_text("import sys, pathlib\n"
                    "pathlib.Path(sys.argv[1], sys.argv[2] + '.seen').write_text(sys.argv[3])\n"
                    "print('copied', sys.argv[2])\n")  # fmt: skip
    write_rules(f"""
roots:
  inbox: {inbox}
rules:
  - name: texts
    in: inbox
    match: {{extension: txt}}
    actions:
      - run: {{workflow: copy, params: {{note: "from {{stem}}"}}}}
workflows:
  copy:
    tasks:
      - name: copy
        executor: shell
        command: [{PY}, {copy}, {out}, "{{name}}", "{{note}}"]
  fail:
    tasks:
      - {{name: boom, executor: shell, command: [{PY}, -c, "import sys; sys.exit(4)"]}}
""")
    return tmp_path


def wait_for_runs(clerk: Any, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    """Poll `runs list --json` until `count` runs have ended (the worker is detached)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = json.loads(clerk("runs", "list", "--json", check=True).stdout)
        done = [r for r in runs if r["status"] in ("COMPLETED", "FAILED", "CANCELLED")]
        if len(done) >= count or time.monotonic() > deadline:
            return runs
        time.sleep(0.1)


def test_run_wait_show_list_and_logs(clerk: Any, setup: Path) -> None:
    note = setup / "in.txt"
    note.write_text("x")
    result = clerk("run", "copy", "--file", str(note), "--param", "note=hi", "--wait")
    assert result.returncode == 0, result.stderr
    assert "run 1 COMPLETED" in result.stdout
    assert (setup / "out" / "in.txt.seen").read_text() == "hi"

    shown = json.loads(clerk("runs", "show", "1", "--json", check=True).stdout)
    assert shown["run"]["status"] == "COMPLETED"
    assert shown["run"]["inputs"]["path"] == str(note)
    (task,) = shown["tasks"]
    assert (task["task"], task["status"], task["exit_code"]) == ("copy", "COMPLETED", 0)
    assert task["wall"] > 0 and task["max_rss"] > 0
    assert [e["kind"] for e in shown["events"]][-1] == "run_completed"

    listed = json.loads(clerk("runs", "list", "--status", "completed", "--json").stdout)
    assert [r["id"] for r in listed] == [1]
    logs = clerk("runs", "logs", "1", "copy", check=True).stdout
    assert "copied in.txt" in logs
    text = clerk("runs", "show", "1", check=True).stdout
    assert "run 1: copy COMPLETED" in text and "task_completed copy" in text


def test_a_failed_run_exits_1_and_says_why(clerk: Any, setup: Path) -> None:
    result = clerk("run", "fail", "--wait")
    assert result.returncode == 1
    assert "run 1 FAILED: task 'boom': exited with status 4" in result.stdout
    listed = json.loads(clerk("runs", "list", "--status", "failed", "--json").stdout)
    assert listed[0]["error"] == "task 'boom': exited with status 4"


def test_mistakes_are_messages_not_tracebacks(clerk: Any, setup: Path) -> None:
    result = clerk("run", "cpy")
    assert result.returncode == 1 and "did you mean 'copy'" in result.stderr
    result = clerk("run", "copy", "--param", "novalue")
    assert result.returncode == 1 and "--param wants KEY=VALUE" in result.stderr
    clerk("run", "fail", "--wait")
    result = clerk("runs", "show", "42")
    assert result.returncode == 1 and "no run 42" in result.stderr


def test_run_without_wait_is_executed_by_a_detached_worker(clerk: Any, setup: Path) -> None:
    note = setup / "later.txt"
    note.write_text("x")
    result = clerk("run", "copy", "--file", str(note), "--param", "note=bg", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"run": 1, "status": "PENDING"}
    (run,) = wait_for_runs(clerk, 1)
    assert run["status"] == "COMPLETED"
    assert (setup / "out" / "later.txt.seen").read_text() == "bg"


def test_scan_queues_a_run_per_matching_file_and_a_worker_runs_them(
    clerk: Any, setup: Path
) -> None:
    names = ["a.txt", "$(touch pwned).txt", "-rf.txt", "x;y.txt", "skip.pdf"]
    for name in names:
        (setup / "inbox" / name).write_text("x")
    result = clerk("scan")
    assert result.returncode == 0, result.stderr
    runs = wait_for_runs(clerk, 4)
    assert len(runs) == 4
    assert {r["status"] for r in runs} == {"COMPLETED"}
    assert {r["trigger"] for r in runs} == {"rule:texts"}
    seen = sorted(p.name for p in (setup / "out").iterdir())
    assert seen == sorted(f"{n}.seen" for n in names if n.endswith(".txt"))
    assert (setup / "out" / "-rf.txt.seen").read_text() == "from -rf"
    assert not (setup / "inbox" / "pwned").exists()


def test_follow_shows_progress_until_the_run_ends(clerk: Any, setup: Path) -> None:
    note = setup / "f.txt"
    note.write_text("x")
    assert clerk("run", "copy", "--file", str(note), "--param", "note=n").returncode == 0
    result = clerk("runs", "follow", "1", "--interval", "0.05")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("run 1 COMPLETED: 1/1 tasks in ")
    assert "COMPLETED 1/1 tasks" in lines[-2]
    stats = json.loads(clerk("runs", "stats", "--json", check=True).stdout)
    assert [(s["workflow"], s["completed"], s["success_rate"]) for s in stats] == [("copy", 1, 1.0)]


def test_scan_no_run_only_queues(clerk: Any, setup: Path, clerk_home: Path) -> None:
    (setup / "inbox" / "a.txt").write_text("x")
    result = clerk("scan", "--no-run")
    assert result.returncode == 0, result.stderr
    runs = json.loads(clerk("runs", "list", "--json", check=True).stdout)
    assert [r["status"] for r in runs] == ["PENDING"]
    assert not (setup / "out" / "a.txt.seen").exists()
    # the queued run is executed by the next worker, e.g. the one a later run starts
    (setup / "inbox" / "b.txt").write_text("y")
    assert clerk("scan").returncode == 0
    # every run that scan queued has its row once scan returns (a.txt's rule may have
    # queued another run of its own): wait for all of them, not for the first two
    queued = json.loads(clerk("runs", "list", "--json", check=True).stdout)
    runs = wait_for_runs(clerk, len(queued))
    assert {r["status"] for r in runs} == {"COMPLETED"}, runs


def test_alert_conditions_come_from_config(clerk: Any, setup: Path, clerk_home: Path) -> None:
    (clerk_home / "config.yaml").write_text('alerts: ["queue_depth > 1000"]\n')
    assert clerk("check").returncode == 0
    (clerk_home / "config.yaml").write_text("alerts: [7]\n")
    result = clerk("run", "copy", "--param", "note=n")
    assert result.returncode != 0 and "Traceback" not in result.stderr


def test_run_actions_go_to_the_run_sink_the_engine_was_given(setup: Path) -> None:
    """Whoever drives the rules engine says where its `run:` actions' runs go (the
    daemon its runner, scan the store): an engine given no sink starts none."""
    from clerk.app import App
    from clerk.engine.queue import RunRequest
    from clerk.engine.runs import RunStore
    from clerk.rules.engine import Engine

    (setup / "inbox" / "a.txt").write_text("x")
    app = App()
    ruleset = app.rules()
    requests: list[RunRequest] = []

    def sink(request: RunRequest) -> int:
        requests.append(request)
        return 41 + len(requests)

    summary = app.engine(ruleset, run_sink=sink).scan()
    assert summary.failed == 0, summary.errors
    (request,) = requests
    assert (request.workflow, request.trigger) == ("copy", "rule:texts")
    assert (request.fields["name"], request.fields["note"]) == ("a.txt", "from a")
    assert RunStore(app.store).runs() == []  # the sink had it, nobody else
    (setup / "inbox" / "b.txt").write_text("y")
    bare = Engine(ruleset, app.registry, app.store, fileops=app.fileops(ruleset))
    summary = bare.scan([str(setup / "inbox" / "b.txt")])
    assert summary.failed == 1
    assert any("starts no runs" in error for error in summary.errors), summary.errors
    assert requests == [request] and RunStore(app.store).runs() == []


def test_the_execution_engine_does_not_import_click() -> None:
    """Commands live in commands/; the engine is driven through what it is given."""
    import ast

    engine_room = Path(__file__).resolve().parent.parent / "clerk" / "engine"
    importing = []
    for path in engine_room.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            if any(n == "click" or n.startswith(("click.", "clerk.cli", "clerk.commands"))
                   for n in names):  # fmt: skip
                importing.append(path.name)
    assert importing == []
