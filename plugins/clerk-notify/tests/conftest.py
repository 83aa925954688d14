"""A real local HTTP endpoint for apprise's json:// and form:// URLs, and a clean clerk env."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import clerk_notify
import pytest
from clerk_notify.settings import NotifySettings

from clerk.plugins.api import Target
from clerk.roots import Root, RootSet
from clerk.rules.facts import FactSource
from clerk.rules.fileinfo import FileInfo
from clerk.rules.templates import Renderer

DEADLINE = 20.0  # seconds: generous for a busy 2-core machine


@dataclass
class Received:
    path: str
    content_type: str
    body: bytes

    def fields(self) -> dict[str, Any]:
        """The notification as posted: JSON (json://) or form fields (form://)."""
        if self.content_type.startswith("application/json"):
            return dict(json.loads(self.body))
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


class Receiver:
    """Records every POST; answers 500 under /fail, 200 elsewhere."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = 500 if self.path.startswith("/fail") else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver._changed:
                    receiver.requests.append(
                        Received(self.path, self.headers.get("Content-Type", ""), body)
                    )
                    receiver._changed.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, scheme: str, path: str) -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = DEADLINE) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.requests)} of {count} requests arrived")
                self._changed.wait(left)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound, never listening (no other process gets it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture(autouse=True)
def clean_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Own HOME/CLERK_HOME/XDG dirs, no autoloaded plugins, default plugin settings."""
    base = tmp_path_factory.mktemp("env")
    for var, sub in (("HOME", "home"), ("CLERK_HOME", "clerk"), ("XDG_CONFIG_HOME", "config"),
                     ("XDG_DATA_HOME", "data"), ("XDG_STATE_HOME", "state"),
                     ("XDG_CACHE_HOME", "cache")):  # fmt: skip
        (base / sub).mkdir()
        monkeypatch.setenv(var, str(base / sub))
    monkeypatch.setenv("CLERK_DISABLE_PLUGIN_AUTOLOAD", "1")
    clerk_notify.settings.use(NotifySettings())
    yield
    clerk_notify.settings.use(NotifySettings())


def make_target(tmp_path: Path, name: str = "scan 1.pdf", rule: str = "scans") -> Target:
    """A real file in a real root, as the rules engine hands it to an action."""
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    path = inbox / name
    path.write_bytes(b"%PDF-1.4 not really")
    root = Root("inbox", str(inbox))
    file = FileInfo(root, str(path), name, os.lstat(path), FactSource(None, {}))
    return Target(file, str(path), file.fields({}), Renderer(RootSet([root])), rule)
