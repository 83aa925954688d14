"""The python and http executors, and task outputs feeding later tasks' templates."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from clerk.engine.fields import dump_fields
from clerk.engine.model import build_workflow
from clerk.engine.runner import Runner
from clerk.engine.runs import COMPLETED, FAILED, RunStore
from clerk.plugins.manager import make_plugin_manager
from clerk.store import open_store

PY = sys.executable

MODULE = """
import os, time

def count(path, tasks, factor=1):
    with open(path) as f:
        lines = f.read().count("\\n")
    return {"lines": lines * factor, "pid": os.getpid(), "upstream": sorted(tasks)}

def everything(**fields):
    return sorted(fields)

def boom(path):
    raise ValueError(f"cannot read {path}")

def nap(seconds):
    time.sleep(float(seconds))

def leak(token):
    raise ValueError(f"bad token {token}")
"""


class Harness:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.db = open_store(tmp / "clerk.db")
        self.store = RunStore(self.db)
        self.executors = make_plugin_manager().registry().executors

    def run(self, tasks: list[dict[str, Any]], fields: dict[str, Any] | None = None) -> int:
        run_id = self.store.create_run(build_workflow("w", {"tasks": tasks}),
                                       dump_fields(fields or {}))  # fmt: skip
        Runner(self.db, self.executors, logs_dir=self.tmp / "logs", kill_grace=0.2).execute(
            [run_id]
        )
        return run_id

    def task(self, run_id: int, name: str) -> Any:
        return next(t for t in self.store.tasks(run_id) if t.task == name)


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    (tmp_path / "mytasks.py").write_text(MODULE)
    return Harness(tmp_path)


def test_a_python_task_gets_its_fields_and_its_outputs_feed_a_shell_task(
    harness: Harness, tmp_path: Path
) -> None:
    data = tmp_path / "data.txt"
    data.write_text("a\nb\nc\n")
    out = tmp_path / "out.txt"
    run_id = harness.run([
        {"name": "first", "executor": "shell", "command": [PY, "-c", "pass"]},
        {"name": "count", "executor": "python", "call": "mytasks:count", "cwd": str(tmp_path),
         "kwargs": {"factor": 2}, "depends_on": ["first"]},
        {"name": "report", "executor": "shell", "depends_on": ["count"],
         "command": [PY, "-c", "import sys; open(sys.argv[1], 'w').write(sys.argv[2])",
                     str(out), "{stem}: {tasks.count.outputs.lines} lines"]},
    ], {"path": str(data), "stem": "data"})  # fmt: skip
    count = harness.task(run_id, "count")
    assert count.status == COMPLETED, count.error
    assert count.outputs["lines"] == 6 and count.outputs["upstream"] == ["first"]
    assert count.pid == count.outputs["pid"]  # it ran in its own process
    assert out.read_text() == "data: 6 lines"


def test_a_function_taking_kwargs_gets_every_field(harness: Harness, tmp_path: Path) -> None:
    task = {"name": "all", "executor": "python", "call": "mytasks:everything", "cwd": str(tmp_path)}
    run_id = harness.run([task], {"path": "/x", "name": "x", "a.b": 1})
    assert harness.task(run_id, "all").outputs == {"result": ["name", "path", "tasks"]}


def test_an_exception_fails_the_attempt_with_its_message(harness: Harness, tmp_path: Path) -> None:
    run_id = harness.run([{"name": "boom", "executor": "python", "call": "mytasks:boom",
                           "cwd": str(tmp_path), "retry": {"max": 1, "backoff": "0.01s"}}],
                         {"path": "/nowhere"})  # fmt: skip
    info = harness.task(run_id, "boom")
    assert (info.status, info.error_code, info.attempt) == (FAILED, "exception", 2)
    assert info.error == "ValueError: cannot read /nowhere"
    assert "Traceback" in Path(info.stderr_log).read_text()


def test_a_python_task_is_killed_at_its_timeout(harness: Harness, tmp_path: Path) -> None:
    run_id = harness.run([{"name": "nap", "executor": "python", "call": "mytasks:nap",
                           "cwd": str(tmp_path), "kwargs": {"seconds": 30},
                           "timeout": "0.5s"}])  # fmt: skip
    info = harness.task(run_id, "nap")
    assert (info.status, info.error_code) == (FAILED, "timeout")


def test_shell_tasks_emit_outputs_through_clerk_outputs(harness: Harness, tmp_path: Path) -> None:
    # braces are template syntax: literal ones are doubled
    emit = ("import json, os; json.dump({{'pages': 12, 'lang': 'deu'}},"
            " open(os.environ['CLERK_OUTPUTS'], 'w'))")  # fmt: skip
    bad = "import os; open(os.environ['CLERK_OUTPUTS'], 'w').write('[1, 2]')"
    out = tmp_path / "out.txt"
    run_id = harness.run([
        {"name": "ocr", "executor": "shell", "command": [PY, "-c", emit]},
        {"name": "use", "executor": "shell", "depends_on": ["ocr"],
         "command": ["sh", "-c", 'printf %s "$1" > "$2"', "sh",
                     "{tasks.ocr.outputs.pages}/{tasks.ocr.outputs.lang}", str(out)]},
        {"name": "bad", "executor": "shell", "command": [PY, "-c", bad],
         "retry": {"max": 3}},
    ])  # fmt: skip
    assert harness.task(run_id, "ocr").outputs == {"pages": 12, "lang": "deu"}
    assert out.read_text() == "12/deu"
    info = harness.task(run_id, "bad")
    assert (info.status, info.error_code, info.attempt) == (FAILED, "outputs", 1)
    assert "JSON object" in info.error


class Hook(BaseHTTPRequestHandler):
    """Answers with the status in the path (/status/500), records every request."""

    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.seen.append({"path": self.path, "auth": self.headers["Authorization"],
                          "body": json.loads(body)})  # fmt: skip
        status = int(self.path.rsplit("/", 1)[1]) if self.path.startswith("/status/") else 200
        answer = json.dumps({"ok": status == 200, "id": len(Hook.seen)}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Hook.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_posts_rendered_json_and_keeps_the_answer(
    harness: Harness, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "t0ken")
    run_id = harness.run([
        {"name": "hook", "executor": "http", "url": server + "/hook/{stem}",
         "headers": {"Authorization": "Bearer ${env:HOOK_TOKEN}"},
         "body": {"file": "{name}", "tags": ["{stem}", 3]}},
        {"name": "default", "executor": "http", "url": server + "/plain",
         "depends_on": ["hook"]},
    ], {"name": "a b.pdf", "stem": "a b"})  # fmt: skip
    hook = harness.task(run_id, "hook")
    assert hook.status == COMPLETED and hook.exit_code == 200
    assert hook.outputs == {"status": 200, "body": {"ok": True, "id": 1}}
    first, second = Hook.seen
    assert first == {"path": "/hook/a%20b",
                     "auth": "Bearer t0ken",
                     "body": {"file": "a b.pdf", "tags": ["a b", 3]}}  # fmt: skip
    assert second["body"]["fields"] == {"name": "a b.pdf", "stem": "a b"}
    assert second["body"]["tasks"]["hook"]["body"] == {"ok": True, "id": 1}


def test_http_errors_retry_only_when_it_can_help(harness: Harness, server: str) -> None:
    run_id = harness.run([
        {"name": "flaky", "executor": "http", "url": server + "/status/503",
         "retry": {"max": 2, "backoff": "0.01s"}},
        {"name": "missing", "executor": "http", "url": server + "/status/404",
         "retry": {"max": 2, "backoff": "0.01s"}},
        {"name": "down", "executor": "http", "url": "http://127.0.0.1:9/x", "timeout": "2s",
         "retry": {"max": 1, "backoff": "0.01s"}},
    ])  # fmt: skip
    flaky, missing, down = (harness.task(run_id, n) for n in ("flaky", "missing", "down"))
    assert (flaky.status, flaky.attempt, flaky.exit_code) == (FAILED, 3, 503)
    assert flaky.error == "POST answered 503 Service Unavailable"
    assert (missing.attempt, missing.recoverable, missing.error_code) == (1, False, "http")
    assert (down.attempt, down.error_code) == (2, "http") and "request failed" in down.error


def test_resolved_secrets_never_reach_the_stored_error(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLERK_TEST_TOKEN", "hunter2-secret")
    task = {"name": "leak", "executor": "python", "call": "mytasks:leak", "cwd": str(tmp_path),
            "kwargs": {"token": "${env:CLERK_TEST_TOKEN}"}}  # fmt: skip
    run_id = harness.run([task])
    info = harness.task(run_id, "leak")
    assert info.error == "ValueError: bad token ***"
    definition = harness.store.conn.execute("SELECT definition FROM runs").fetchone()[0]
    assert "hunter2" not in definition and "${env:CLERK_TEST_TOKEN}" in definition
