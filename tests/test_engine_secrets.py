"""Resolved secrets never reach the store, the task logs, `clerk runs` output or clerk's
own log lines: real processes, a real HTTP server, a real store scanned byte by byte."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from clerk.engine.api import Executor, TaskContext, TaskResult
from clerk.engine.fields import dump_fields
from clerk.engine.model import build_workflow
from clerk.engine.process import CappedLog
from clerk.engine.runner import Runner
from clerk.engine.runs import FAILED, RunStore
from clerk.store import open_store

PY = sys.executable
SECRET = "tok-9f3a7c1e-s3cr3t"

# prints the token (plain and reversed: the reversal proves the task got it), on both
# streams, and writes it into its outputs
ECHO = ("import os, sys, json; t = os.environ['TOKEN']; print('out', t); print(t[::-1]);"
        " print('err', t, file=sys.stderr);"
        " open(os.environ['CLERK_OUTPUTS'], 'w').write(json.dumps(dict(token=t)))")  # fmt: skip


class Refuse(BaseHTTPRequestHandler):
    """Answers 400 with the Authorization header in its reason phrase and body."""

    seen: list[str] = []

    def do_POST(self) -> None:
        auth = self.headers.get("Authorization", "")
        Refuse.seen.append(auth)
        body = f"refused: {auth}".encode()
        self.send_response(400, f"refused {auth}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Refuse.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def leaky(tmp_path: Path, write_rules: Any, server: str, clerk_home: Path) -> dict[str, str]:
    """A workflow whose every task handles the secret; the env to run clerk with."""
    (tmp_path / "secretfns.py").write_text(
        "def reject(token):\n    raise ValueError(f'rejected token {token}')\n"
    )
    write_rules(f"""
roots: {{}}
rules: []
workflows:
  leaky:
    tasks:
      - {{name: echo, executor: shell, command: [{PY}, -c, "{ECHO}"],
         env: {{TOKEN: "${{env:CLERK_TEST_TOKEN}}"}}}}
      - {{name: argv, executor: shell,
         command: [{PY}, -c, "import sys; print(sys.argv[1]); sys.exit(3)",
                   "${{env:CLERK_TEST_TOKEN}}"]}}
      - {{name: hook, executor: http, url: "{server}/hook",
         headers: {{Authorization: "Bearer ${{env:CLERK_TEST_TOKEN}}"}}}}
      - {{name: inproc, executor: python, call: "secretfns:reject", isolation: thread,
         kwargs: {{token: "${{env:CLERK_TEST_TOKEN}}"}}}}
      - {{name: isolated, executor: python, call: "secretfns:reject",
         kwargs: {{token: "${{env:CLERK_TEST_TOKEN}}"}}}}
""")
    (clerk_home / "config.yaml").write_text('alerts: ["failure_rate > 0.1 over 10m"]\n')
    return {"CLERK_TEST_TOKEN": SECRET, "PYTHONPATH": str(tmp_path)}


def files_holding(secret: str, *roots: Path) -> list[str]:
    needle = secret.encode()
    return [str(path) for root in roots for path in root.rglob("*")
            if path.is_file() and needle in path.read_bytes()]  # fmt: skip


def test_no_secret_in_store_logs_output_or_log_lines(
    clerk: Any, leaky: dict[str, str], clerk_home: Path, tmp_path: Path
) -> None:
    ran = clerk("-vv", "run", "leaky", "--wait", env=leaky)
    assert ran.returncode == 1, ran.stderr
    assert Refuse.seen == [f"Bearer {SECRET}"]  # the request did carry it
    outputs = [ran.stdout, ran.stderr]
    for args in (["runs", "show", "1"], ["runs", "show", "1", "--json"], ["runs", "logs", "1"],
                 ["runs", "list", "--json"], ["runs", "stats", "--json"]):  # fmt: skip
        result = clerk(*args, env=leaky, check=True)
        outputs += [result.stdout, result.stderr]
    assert not [text for text in outputs if SECRET in text]
    # CLERK_HOME (config, store, WAL), HOME (XDG dirs), the task's own directory
    assert files_holding(SECRET, clerk_home, Path.home(), tmp_path) == []
    assert files_holding(SECRET[::-1], clerk_home, Path.home())  # the logs were kept

    details = json.loads(clerk("runs", "show", "1", "--json", check=True).stdout)
    tasks = {t["task"]: t for t in details["tasks"]}
    assert tasks["echo"]["status"] == "COMPLETED"
    assert tasks["echo"]["outputs"] == {"token": "***"}
    assert tasks["argv"]["error"] == "exited with status 3"
    assert tasks["hook"]["error"] == "POST answered 400 refused Bearer ***"
    assert tasks["inproc"]["error"] == "ValueError: rejected token ***"
    assert tasks["isolated"]["error"] == "ValueError: rejected token ***"
    logs = clerk("runs", "logs", "1", check=True).stdout
    assert "out ***" in logs and "err ***" in logs and SECRET[::-1] in logs
    assert "refused: Bearer ***" in logs  # the http answer's body
    assert logs.count("ValueError: rejected token ***") == 2  # both tracebacks
    assert "alert" in [e["kind"] for e in _events(clerk_home)]  # an alert was stored too


def _events(clerk_home: Path) -> list[dict[str, Any]]:
    db = open_store(next(clerk_home.rglob("clerk.db")), migrate=False)
    rows = db.execute("SELECT kind, data FROM events").fetchall()
    db.close()
    return [{"kind": kind, "data": data} for kind, data in rows]


def test_a_log_redacts_a_secret_split_across_writes(tmp_path: Path) -> None:
    log = CappedLog(tmp_path / "out", 30, [SECRET, "ab"])  # too short to hide: kept
    for chunk in (b"ab: ", SECRET[:5].encode(), SECRET[5:].encode() + b" end ", b"x" * 40):
        log.write(chunk)
    log.close()
    text = (tmp_path / "out").read_text()
    assert text.startswith("ab: *** end xxxxxxxxxxxxxxxxxx\n[clerk: log capped at 30 bytes")
    assert SECRET not in text


class Leak(Executor):
    """Renders the secret, then fails the way a buggy plugin would: it raises."""

    def execute(self, context: TaskContext) -> TaskResult:
        raise RuntimeError(f"cannot use {context.render('${env:CLERK_TEST_TOKEN}')}")


def test_a_raising_executor_leaks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CLERK_TEST_TOKEN", SECRET)
    db = open_store(tmp_path / "clerk.db")
    store = RunStore(db)
    workflow = build_workflow("w", {"tasks": [{"name": "t", "executor": "leak"}]})
    run_id = store.create_run(workflow, dump_fields({}))
    with caplog.at_level(logging.DEBUG, logger="clerk"):
        Runner(db, {"leak": Leak}, logs_dir=tmp_path / "logs").execute([run_id])
    task = store.tasks(run_id)[0]
    assert (task.status, task.error) == (FAILED, "RuntimeError: cannot use ***")
    assert "executor for" in caplog.text and "cannot use ***" in caplog.text
    assert SECRET not in caplog.text
    db.close()
    assert files_holding(SECRET, tmp_path) == []
