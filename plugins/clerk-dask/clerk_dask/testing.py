"""A throwaway Dask cluster of real processes, for tests (ours and a plugin user's).

    with dask_cluster(tmp_dir, worker_path=[tasks_dir]) as cluster:
        ... cluster.address ...  # "tcp://127.0.0.1:PORT"

`dask scheduler` (on a free port of 127.0.0.1, told by its scheduler file) and one
`dask worker` run as subprocesses, each in its own process group, which is killed
when the block ends: no process outlives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    log_dir: Path

    def logs(self) -> str:
        """Both processes' logs, for an assertion message."""
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')}"
            for path in sorted(self.log_dir.glob("*.log"))
        )


@contextlib.contextmanager
def dask_cluster(
    directory: Path,
    *,
    worker_path: Sequence[Path] = (),
    threads: int = 2,
    start_timeout: float = 60.0,
) -> Iterator[DaskCluster]:
    """Start a scheduler and one worker (`threads` threads); `worker_path` is the
    worker's PYTHONPATH (the modules its tasks import)."""
    directory.mkdir(parents=True, exist_ok=True)
    scheduler_file = directory / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    scheduler = _spawn(
        ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--dashboard-address", ":0", "--scheduler-file", str(scheduler_file)],
        directory / "scheduler.log", env,
    )  # fmt: skip
    processes = [scheduler]
    try:
        address = _wait_for_address(scheduler_file, scheduler, start_timeout)
        # Only `worker_path`: the worker proves it needs no clerk-dask of its own.
        path = os.pathsep.join(map(str, worker_path))
        worker = _spawn(
            ["distributed.cli.dask_worker", address, "--nthreads", str(threads),
             "--nworkers", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
             "--local-directory", str(directory / "worker")],
            directory / "worker.log", {**env, "PYTHONPATH": path},
        )  # fmt: skip
        processes.append(worker)
        cluster = DaskCluster(address, scheduler, worker, directory)
        _wait_for_worker(cluster, start_timeout)
        yield cluster
    finally:
        for proc in reversed(processes):
            stop(proc)


def _spawn(module_args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", *module_args], stdin=subprocess.DEVNULL, stdout=handle,
            stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=log.parent,
        )  # fmt: skip


def _wait_for_address(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {proc.returncode}")
        with contextlib.suppress(OSError, ValueError, KeyError):
            address: str = json.loads(path.read_text())["address"]
            return address
        _pause(proc, 0.1)
    raise TimeoutError(f"dask scheduler did not write {path} in {timeout:g}s")


def _wait_for_worker(cluster: DaskCluster, timeout: float) -> None:
    from distributed import Client

    with Client(cluster.address, timeout=timeout, set_as_default=False) as client:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise TimeoutError(f"no dask worker joined in {timeout:g}s\n{cluster.logs()}") from None


def _pause(proc: subprocess.Popen[bytes], seconds: float) -> None:
    """Wait a little for a file to appear, returning early if the process exits."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(seconds)


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process's group, SIGKILL it after `grace`; reap the leader."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
            break
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever the leader left in its group
