"""Helpers for the daemon tests: a real `clerk daemon` subprocess and a notify socket."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

PYTHON = sys.executable
DEFAULT_TIMEOUT = 30.0  # generous: a loaded 2-core machine; tests finish well before


def wait_until(
    condition: Callable[[], object], timeout: float = DEFAULT_TIMEOUT, what: str = "condition"
) -> object:
    """Poll `condition` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class NotifyListener:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self) -> None:
        # sun_path is limited to 108 bytes: pytest's tmp_path can be longer
        self.dir = tempfile.mkdtemp(prefix="clerk-notify-")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append(fields)

    def count(self, key: str, value: str | None = None) -> int:
        with self._lock:
            return sum(1 for m in self.messages if key in m and (value is None or m[key] == value))

    def wait_for(
        self, key: str, value: str = "1", *, after: int = 0, timeout: float = DEFAULT_TIMEOUT
    ) -> int:
        """Wait for a message with KEY=VALUE at index >= after; return its index."""

        def find() -> int | None:
            with self._lock:
                for index in range(after, len(self.messages)):
                    if self.messages[index].get(key) == value:
                        return index + 1  # truthy even for index 0
            return None

        return int(wait_until(find, timeout, f"{key}={value} from the daemon")) - 1  # type: ignore[call-overload]

    def __len__(self) -> int:
        with self._lock:
            return len(self.messages)

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class DaemonProcess:
    def __init__(self, log_path: Path, env: dict[str, str], argv_prefix: Sequence[str] = ()):
        self.log_path = log_path
        self.env = env
        self.argv_prefix = list(argv_prefix)  # runs the daemon through it (setpriv ... --)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.argv_prefix, PYTHON, "-m", "clerk", "daemon"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@contextmanager
def running_daemon(
    tmp_path: Path,
    *,
    ready: bool = True,
    extra_env: dict[str, str] | None = None,
    argv_prefix: Sequence[str] = (),
) -> Iterator[tuple[DaemonProcess, NotifyListener]]:
    """A daemon with NOTIFY_SOCKET set; waits for READY=1; SIGKILLed if a test leaves it.
    `argv_prefix` runs it through another command (`setpriv ... --`)."""
    listener = NotifyListener()
    env = {**os.environ, "NOTIFY_SOCKET": listener.path, **(extra_env or {})}
    daemon = DaemonProcess(tmp_path / "daemon.log", env, argv_prefix).start()
    try:
        if ready:
            try:
                listener.wait_for("READY")
            except AssertionError:
                raise AssertionError(f"daemon not ready; log:\n{daemon.log()}") from None
        yield daemon, listener
    finally:
        daemon.kill()
        listener.close()


def write_config(clerk_home: Path, text: str) -> None:
    (clerk_home / "config.yaml").write_text(text, encoding="utf-8")


def files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def journal(clerk_home: Path, kind: str = "move") -> list[dict[str, object]]:
    db = sqlite_utils.Database(clerk_home / "clerk.db")
    try:
        return list(db.query("SELECT src, dst, state FROM ops WHERE kind = ?", [kind]))
    finally:
        db.close()
