"""Glue between the app (config, plugins, store, rules) and the engine, for the CLI.

`clerk run WORKFLOW --wait` executes in the foreground (the run is claimed by the
command's process when it is created); without `--wait`, and for runs a rule's `run`
action queues, the run stays PENDING and a detached worker (`python -m
clerk.engine.worker`) executes every queued run, then exits. At most one worker per
store is active (an flock on `<store>.worker.lock`). The daemon will take that role.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clerk.engine.alerts import AlertRule, parse_rule
from clerk.engine.fields import dump_fields, file_fields
from clerk.engine.model import Workflow, build_workflows, find_workflow
from clerk.engine.runner import Runner
from clerk.engine.runs import RunStore
from clerk.errors import ClerkError, SpecError
from clerk.private import open_private, private_dir, private_file

if TYPE_CHECKING:
    from sqlite_utils import Database

    from clerk.app import App


def workflows(app: App) -> dict[str, Workflow]:
    return build_workflows(app.rules().workflows)


def parse_params(values: tuple[str, ...] | list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise ClerkError(f"--param wants KEY=VALUE, got {value!r}")
        params[key.strip()] = text
    return params


def create_run(
    app: App,
    workflow_name: str,
    *,
    file: str | None = None,
    params: Mapping[str, Any] | None = None,
    trigger: str = "manual",
    claim: bool = False,
) -> int:
    workflow = find_workflow(workflows(app), workflow_name)
    fields: dict[str, Any] = {}
    if file is not None:
        try:
            fields.update(file_fields(file))
        except OSError as exc:
            raise ClerkError(f"cannot use {file}: {exc.strerror or exc}") from None
    fields.update(params or {})
    return RunStore(app.store).create_run(
        workflow, dump_fields(fields), trigger, runner_pid=os.getpid() if claim else None
    )


def logs_dir(app: App) -> Path:
    return app.config.paths.state_dir / "runs"


def make_runner(app: App, db: Database | None = None, **options: Any) -> Runner:
    """`db`: a connection of the runner's own (the daemon's runner thread); else the app's."""
    return Runner(
        db if db is not None else app.store,
        app.registry.executors,
        logs_dir=logs_dir(app),
        hooks=app.pm,
        max_workers=app.config.settings.concurrency,
        alerts=alert_rules(app),
        **options,
    )


def alert_rules(app: App) -> list[AlertRule]:
    """`alerts:` from config.yaml."""
    raw = app.config.settings.alerts
    try:
        return [parse_rule(item) for item in raw]
    except SpecError as exc:
        raise ClerkError(f"config alerts: {exc}") from None


def worker_lock_path(app: App) -> Path:
    return Path(str(app.config.store_path) + ".worker.lock")


def try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on `path`, or None when another process has it."""
    private_dir(path.parent)
    fd = open_private(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def ensure_worker(app: App) -> int | None:
    """Make sure a worker will execute the queued runs; returns the pid if one started.

    Call after committing a run. A worker holds the lock while it works and looks for
    queued runs again after letting go of it, so a run committed before this check
    is seen either by the worker that holds the lock or by the one started here.
    """
    fd = try_lock(worker_lock_path(app))
    if fd is None:
        return None  # a worker is active and will see the run
    os.close(fd)
    return spawn_worker(app)


def spawn_worker(app: App) -> int:
    """Start a detached `python -m clerk.engine.worker`; returns its pid."""
    log_file = logs_dir(app) / "worker.log"
    private_dir(log_file.parent)
    argv = [sys.executable, "-m", "clerk.engine.worker"]
    if app.config_file:
        argv += ["--config", str(app.config_file)]
    if app.profile:
        argv += ["--profile", app.profile]
    with private_file(log_file, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env=os.environ.copy(),
        )  # fmt: skip
    return proc.pid
