"""The `clerk-notify` drop-in package, pip-installed: discovery, its own tests, scan, daemon.

Notifications go through apprise's json:// URLs to a real HTTP server in this process;
the URLs are secret references (`${env:...}`) whose values must never reach the store
or clerk's output.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, plugin_env, run_clerk
from test_daemon_support import running_daemon, write_config

PACKAGE = REPO / "plugins" / "clerk-notify"
TOKEN = "T0ps3cr3t-w3bh00k"  # made up: the tests look for it everywhere
DEADLINE = 60.0  # a busy 2-core machine; a passing run takes a few seconds


class Receiver:
    """A local HTTP endpoint: records every POST body; 500 under /fail, else 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(500 if self.path.startswith("/fail") else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver.changed:
                    receiver.posts.append((self.path, json.loads(body)))
                    receiver.changed.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}{path}"

    def wait_for(self, count: int, timeout: float = DEADLINE) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.posts) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.posts)} of {count} notifications came")
                self.changed.wait(left)
            return list(self.posts)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def site(install_plugin: Callable[[str], Path]) -> Path:
    return install_plugin("clerk-notify")


def package_version() -> str:
    init = (PACKAGE / "clerk_notify" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "([^"]+)"', init, re.MULTILINE)
    assert found is not None
    return found.group(1)


def store_bytes(clerk_home: Path) -> bytes:
    """The store and its WAL/journal side files, as they are on disk."""
    return b"".join(p.read_bytes() for p in sorted(clerk_home.glob("clerk.db*")))


def test_plugins_list_discovers_the_installed_package(site: Path) -> None:
    result = run_clerk("plugins", "list", "--json", env=plugin_env(site), check=True)
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["notify"]["version"] == package_version()
    assert rows["notify"]["source"] == "entrypoint"
    assert rows["notify"]["hooks"] == ["alert", "configure", "register_actions"]
    bare = run_clerk("plugins", "list", "--json", env=plugin_env(), check=True)
    assert "notify" not in {row["name"] for row in json.loads(bare.stdout)}


def test_the_package_own_tests_pass_against_the_installed_package(site: Path) -> None:
    where = subprocess.run(
        [sys.executable, "-c", "import clerk_notify; print(clerk_notify.__file__)"],
        capture_output=True, text=True, env=plugin_env(site), cwd=PACKAGE / "tests",
        check=True, timeout=60,
    )  # fmt: skip
    assert where.stdout.strip() == str(site / "clerk_notify" / "__init__.py")  # not the source
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PACKAGE / "tests")],
        capture_output=True, text=True, env=plugin_env(site), cwd=REPO, timeout=300,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    summary = tests.stdout.strip().splitlines()[-1]
    assert re.match(r"^\d+ passed", summary), summary
    assert int(summary.split()[0]) >= 30  # the package's suite really ran


SCAN_RULES = """\
roots:
  inbox: {{path: {inbox}, watch: false}}
rules:
  - name: scans
    in: inbox
    match: [{{extension: pdf}}]
    actions:
      - notify: "New scan: {{name}} in {{dir}}"
        title: "scanned: {{stem}}"
        url: "${{env:NOTIFY_URL}}"
"""


@pytest.fixture
def inbox(tmp_path: Path, write_rules: Callable[[str], Path]) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("a.pdf", "b.pdf", "notes.txt"):
        (inbox / name).write_bytes(b"%PDF-1.4 " + name.encode())
    write_rules(SCAN_RULES.format(inbox=inbox))
    return inbox


def test_scan_notifies_once_per_matching_file_without_leaking_the_url(
    site: Path, inbox: Path, receiver: Receiver, clerk_home: Path
) -> None:
    env = plugin_env(site, NOTIFY_URL=receiver.url(f"/hook/{TOKEN}"))
    run_clerk("check", env=env, check=True)  # the action and its templates are valid
    dry = run_clerk("scan", "--dry-run", env=env, check=True)
    assert "${env:NOTIFY_URL}" in dry.stdout and receiver.posts == []
    result = run_clerk("-vv", "scan", "--json", env=env, check=True)
    summary = json.loads(result.stdout)
    assert (summary["matched"], summary["failed"]) == (2, 0)
    posts = receiver.wait_for(2)
    assert {path for path, _ in posts} == {f"/hook/{TOKEN}"}
    assert sorted((p["title"], p["message"]) for _, p in posts) == [
        ("scanned: a", f"New scan: a.pdf in {inbox}"),
        ("scanned: b", f"New scan: b.pdf in {inbox}"),
    ]
    assert "DEBUG" in result.stderr  # -vv really logged (apprise's lines, redacted)
    assert TOKEN not in result.stdout + result.stderr
    assert TOKEN.encode() not in store_bytes(clerk_home)


def test_a_failed_notification_is_recorded_against_the_file_without_the_secret(
    site: Path, inbox: Path, receiver: Receiver, clerk_home: Path
) -> None:
    env = plugin_env(site, NOTIFY_URL=receiver.url(f"/fail/{TOKEN}"))
    result = run_clerk("-vv", "scan", "--json", env=env)
    summary = json.loads(result.stdout)
    assert summary["failed"] == 2, result.stdout
    assert len(receiver.wait_for(2)) == 2  # both were tried
    output = result.stdout + result.stderr
    assert "notification not sent (0 of 1 delivered): ${env:NOTIFY_URL}" in output
    assert "error=500" in output
    assert TOKEN not in output
    store = store_bytes(clerk_home)
    assert b"notification not sent" in store  # recorded against the files...
    assert TOKEN.encode() not in store  # ...without the secret


def test_check_refuses_wrong_settings_and_unknown_template_fields(
    site: Path, inbox: Path, clerk_home: Path, write_rules: Callable[[str], Path]
) -> None:
    env = plugin_env(site)
    write_config(clerk_home, "plugins:\n  settings:\n    notify:\n      url: [json://h/p]\n")
    result = run_clerk("check", env=env)
    assert result.returncode == 1
    assert "plugin 'notify' (entrypoint) failed to load: configure: SpecError: notify:" \
        " unknown setting 'url'; did you mean 'urls'?" in result.stdout  # fmt: skip
    write_config(clerk_home, "plugins:\n  settings:\n    notify:\n      timeout: 2s\n")
    write_rules(SCAN_RULES.format(inbox=inbox).replace("{stem}", "{nosuch}"))
    result = run_clerk("check", env=env)
    assert result.returncode == 1
    assert re.search(r"rules\.yaml:\d+:\d+: unknown field \{nosuch\} in 'scanned: ", result.stdout)


WORKFLOW_RULES = """\
roots:
  inbox: {{path: {inbox}, settle: 0.2s}}
rules:
  - name: ingest
    in: inbox
    match: [{{extension: txt}}]
    actions:
      - run: ingest
workflows:
  ingest:
    tasks:
      - {{name: load, executor: shell, command: ["{python}", -c, "raise SystemExit(3)"]}}
"""

ALERT_CONFIG = """\
reconcile_interval: 1h
alerts:
  - {when: "failure_rate >= 0.5 over 10m", name: ingest-failing}
plugins:
  settings:
    notify:
      alert_urls: ["${env:ALERT_URL}"]
      timeout: 10s
"""


def test_a_daemon_alert_reaches_the_alert_url(
    site: Path,
    tmp_path: Path,
    receiver: Receiver,
    clerk_home: Path,
    write_rules: Callable[[str], Path],
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_rules(WORKFLOW_RULES.format(inbox=inbox, python=sys.executable))
    write_config(clerk_home, ALERT_CONFIG)
    env = plugin_env(site, ALERT_URL=receiver.url(f"/alerts/{TOKEN}"))
    with running_daemon(tmp_path, extra_env=env) as (daemon, _):
        (inbox / "batch-1.txt").write_text("rows")
        try:
            [(path, posted)] = receiver.wait_for(1)
        except AssertionError:
            raise AssertionError(f"no alert; daemon log:\n{daemon.log()}") from None
        assert path == f"/alerts/{TOKEN}"
        assert posted["title"] == "clerk alert: ingest-failing"
        assert posted["message"].startswith("alert ingest-failing: failure_rate >= 0.5 over 10m")
        assert posted["type"] == "warning"
    assert TOKEN not in daemon.log()
    assert TOKEN.encode() not in store_bytes(clerk_home)
