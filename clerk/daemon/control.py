"""The control socket: a unix socket in the runtime dir, mode 0600, JSON lines.

Each connection sends one request line `{"cmd": "status", ...}` and reads one reply line.
The peer's uid (SO_PEERCRED) must be the daemon's own or root: the socket's mode is the
first fence, the uid check the second (a directory with loose permissions, a socket
handed over by another process). `status` is answered on the server thread from plain
values, so it works while the worker is busy; every other command runs on the worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clerk.errors import ClerkError
from clerk.private import private_dir

if TYPE_CHECKING:
    from clerk.daemon.service import Daemon

log = logging.getLogger("clerk.daemon.control")

MAX_REQUEST = 64 * 1024
CLIENT_TIMEOUT = 5.0
WORKER_COMMANDS = frozenset({"reload", "pause", "resume", "reconcile", "jobs", "run_job"})


class DaemonNotRunning(ClerkError):
    pass


class ControlServer:
    def __init__(self, daemon: Daemon, path: Path, *, worker_timeout: float = 120.0):
        self.daemon = daemon
        self.path = path
        self.worker_timeout = worker_timeout
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    def bind(self) -> None:
        """Claim the socket path; refuses when another daemon answers there."""
        private_dir(self.path.parent)
        if self.path.exists() or self.path.is_symlink():
            if _answers(self.path):
                raise ClerkError(f"another clerk daemon is running (control socket {self.path})")
            self.path.unlink()  # stale: left by a daemon that was killed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)  # never a moment with a wider mode than 0600
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        sock.listen(16)
        self._sock = sock

    def start(self) -> None:
        if self._sock is None:
            self.bind()
        self._thread = threading.Thread(target=self._accept_loop, name="clerk-control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._closing:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(CLIENT_TIMEOUT)
            uid = peer_uid(conn)
            try:
                # read the request even from a stranger: replying and closing while it
                # is still sending would reset its connection before it reads the reply
                request = _read_line(conn)
                if uid not in (os.getuid(), 0):
                    log.warning("control socket: refused peer uid %s", uid)
                    reply = {"ok": False, "error": f"permission denied for uid {uid}"}
                else:
                    reply = self.answer(json.loads(request))
            except (OSError, ValueError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            except Exception as exc:  # a snapshot taken mid-reload: say so, keep serving
                log.warning("control request failed: %s", exc)
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            with contextlib.suppress(OSError):
                _send(conn, reply)

    def answer(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'a request is {"cmd": NAME, ...}'}
        name = request["cmd"]
        if name == "status":
            return {"ok": True, **self.daemon.status()}
        if name == "jobs":
            return {"ok": True, "jobs": self.daemon.jobs()}
        if name == "stop":
            self.daemon.request_stop()
            return {"ok": True}
        if name not in WORKER_COMMANDS:
            return {"ok": False, "error": f"unknown command {name!r}"}
        from clerk.daemon.service import Command

        args = {k: v for k, v in request.items() if k != "cmd"}
        command = Command(name, args)
        self.daemon.intake.put(command)
        try:
            return command.reply.get(timeout=self.worker_timeout)
        except Exception:
            return {"ok": False, "error": f"{name}: no answer from the worker in time"}


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too long")
    return data.split(b"\n", 1)[0]


def _send(conn: socket.socket, reply: dict[str, Any]) -> None:
    conn.sendall(json.dumps(reply, default=str).encode("utf-8") + b"\n")


def _answers(path: Path) -> bool:
    try:
        request(path, "status", timeout=2.0)
    except DaemonNotRunning:
        return False
    except ClerkError:
        return True  # something answers, even if it refuses us
    return True


def request(path: Path, cmd: str, *, timeout: float = 130.0, **args: Any) -> dict[str, Any]:
    """Send one command to the daemon; its reply. DaemonNotRunning when nobody listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    with sock:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(
                f"the clerk daemon is not running (no answer at {path}: {exc.strerror})"
            ) from None
        except PermissionError:
            raise ClerkError(f"permission denied: {path} (run as the daemon's user)") from None
        try:
            sock.sendall(json.dumps({"cmd": cmd, **args}).encode("utf-8") + b"\n")
            line = _read_line(sock)
        except OSError as exc:
            raise ClerkError(f"control socket {path}: {exc}") from None
    if not line:
        raise ClerkError(f"control socket {path}: the daemon closed the connection")
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise ClerkError(f"control socket {path}: unexpected reply")
    return reply
