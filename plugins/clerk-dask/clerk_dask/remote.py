"""What runs on a dask worker: a task's callable, or its command in a process group.

Standard library only (plus `distributed`, which every worker has): clerk_dask has
this module pickled *by value* (cloudpickle), so workers need neither clerk nor
clerk-dask installed, only the packages the tasks themselves import.

Both functions answer with plain data (str, bytes, numbers), never a user's objects or
exception classes, so the answer unpickles on the clerk side even when the task's own
package is not installed there.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import IO, Any

_POLL = 0.1  # how often a running command looks at its deadline and memory
_CANCEL_POLL = 0.5  # how often it asks the scheduler whether clerk cancelled it
_DRAIN = 1.0  # how long to read pipes still held open by a process that escaped


def call_function(
    call: str, fields: Mapping[str, Any], tasks: Mapping[str, Any], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """Import `module:function`, call it with the fields it asks for and `kwargs`.

    Returns `{"outputs": JSON text}` or `{"error": "Type: message", "traceback": text}`.
    """
    try:
        function = resolve(call)
        arguments = select_arguments(function, fields, tasks)
        arguments.update(kwargs)
        value = function(**arguments)
        outputs = value if isinstance(value, dict) else {} if value is None else {"result": value}
        return {"outputs": json.dumps(outputs, default=str), "host": socket.gethostname()}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                "host": socket.gethostname()}  # fmt: skip


def resolve(call: str) -> Any:
    module_name, _, attribute = call.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{call} is not callable")
    return target


def select_arguments(
    function: Any, fields: Mapping[str, Any], tasks: Mapping[str, Any]
) -> dict[str, Any]:
    """The run fields (and `tasks`) the function's signature asks for; all with **kwargs."""
    parameters = inspect.signature(function).parameters
    available = {k: v for k, v in fields.items() if k.isidentifier()}
    available["tasks"] = dict(tasks)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return available
    return {name: available[name] for name in parameters if name in available}


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    timeout: float | None,
    kill_grace: float,
    log_limit: int,
    memory_limit: int | None,
    cancel_event: str | None,
) -> dict[str, Any]:
    """Run `argv` in its own process group on this worker and report how it ended.

    The whole group is killed on timeout, on memory over `memory_limit`, and when the
    distributed Event named `cancel_event` is set (that is how clerk cancels: a dask
    future cannot interrupt a running task). stdout/stderr come back capped at
    `log_limit` bytes each; `$CLERK_OUTPUTS` names a file for the task's JSON outputs.
    """
    scratch = tempfile.mkdtemp(prefix="clerk-dask-")
    outputs_path = os.path.join(scratch, "outputs.json")
    try:
        full_env = {**os.environ, **env, "CLERK_OUTPUTS": outputs_path}
        try:
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=full_env, cwd=cwd, start_new_session=True,
                close_fds=True,
            )  # fmt: skip
        except OSError as exc:
            return {"spawn_error": f"cannot start {argv[0]!r}: {exc.strerror or exc}",
                    "host": socket.gethostname()}  # fmt: skip
        watch = _Watch(proc, timeout, kill_grace, log_limit, memory_limit, cancel_event)
        answer = watch.run()
        answer["outputs"] = _read_text(outputs_path)
        return answer
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


class _Capture:
    """Reads one pipe in a thread, keeping the first `limit` bytes and counting the rest."""

    def __init__(self, stream: IO[bytes], limit: int):
        self.stream = stream
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for chunk in iter(lambda: self.stream.read1(65536), b""):  # type: ignore[attr-defined]
                room = max(0, self.limit - len(self.data))
                self.data += chunk[:room]
                self.dropped += len(chunk) - min(room, len(chunk))

    def finish(self) -> None:
        self.thread.join(_DRAIN)  # a stray process may keep the pipe open: do not wait on it
        with contextlib.suppress(OSError):
            self.stream.close()


class _Watch:
    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        timeout: float | None,
        kill_grace: float,
        log_limit: int,
        memory_limit: int | None,
        cancel_event: str | None,
    ):
        self.proc = proc
        self.started = time.monotonic()
        self.deadline = self.started + timeout if timeout else None
        self.kill_grace = kill_grace
        self.memory_limit = memory_limit
        self.cancel = _cancel_flag(cancel_event)
        self.next_cancel_check = self.started + _CANCEL_POLL
        self.reason: str | None = None  # why we killed it: timeout | cancelled | memory
        self.kill_at: float | None = None
        self.peak_rss = 0
        assert proc.stdout is not None and proc.stderr is not None
        self.stdout = _Capture(proc.stdout, log_limit)
        self.stderr = _Capture(proc.stderr, log_limit)

    def run(self) -> dict[str, Any]:
        pidfd = os.pidfd_open(self.proc.pid)
        try:
            while not select.select([pidfd], [], [], _POLL)[0]:
                self._enforce()
        finally:
            os.close(pidfd)
        _kill_group(self.proc.pid)  # leftovers, while the zombie leader still holds the pgid
        _, status, rusage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.stdout.finish()
        self.stderr.finish()
        return {
            "exit_code": self.proc.returncode,
            "reason": self.reason,
            "stdout": bytes(self.stdout.data),
            "stderr": bytes(self.stderr.data),
            "stdout_dropped": self.stdout.dropped,
            "stderr_dropped": self.stderr.dropped,
            "wall": time.monotonic() - self.started,
            "cpu_user": rusage.ru_utime,
            "cpu_sys": rusage.ru_stime,
            "max_rss": max(rusage.ru_maxrss * 1024, self.peak_rss),
            "peak_rss": self.peak_rss,
            "host": socket.gethostname(),
        }

    def _enforce(self) -> None:
        now = time.monotonic()
        if self.reason is None:
            if self.deadline is not None and now >= self.deadline:
                self._terminate("timeout", now)
            elif self._cancelled(now):
                self._terminate("cancelled", now)
            elif self._over_memory():
                self.reason = "memory"  # no grace: it would only grow meanwhile
                _kill_group(self.proc.pid)
        elif self.kill_at is not None and now >= self.kill_at:
            _kill_group(self.proc.pid)
            self.kill_at = None

    def _cancelled(self, now: float) -> bool:
        if self.cancel is None or now < self.next_cancel_check:
            return False
        self.next_cancel_check = now + _CANCEL_POLL
        try:
            return bool(self.cancel.is_set())
        except Exception:  # the scheduler is unreachable: the timeout still holds
            return False

    def _over_memory(self) -> bool:
        if not self.memory_limit:
            return False
        self.peak_rss = max(self.peak_rss, group_rss(self.proc.pid))
        return self.peak_rss > self.memory_limit

    def _terminate(self, reason: str, now: float) -> None:
        self.reason = reason
        if self.kill_grace > 0:
            _kill_group(self.proc.pid, signal.SIGTERM)
            self.kill_at = now + self.kill_grace
        else:
            _kill_group(self.proc.pid)


def _cancel_flag(name: str | None) -> Any:
    if not name:
        return None
    try:
        from distributed import Event

        return Event(name)
    except Exception:  # not inside a dask worker (or no scheduler): no remote cancel
        return None


def _kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_rss(pgid: int) -> int:
    """Resident memory of every process in a process group, in bytes (Linux /proc)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid:  # field 5: the process group
            total += int(fields[21]) * page  # field 24: rss in pages
    return total
