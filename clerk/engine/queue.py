"""Where the `run` action puts the runs it starts.

A rule's `run: WORKFLOW` action creates a PENDING run (a durable row) through the
current *run sink*. Whoever drives the rules engine decides what happens next:

- `clerk scan` (the default sink): the run goes into the store of the command's app;
  with the first run (and again when the process exits) a detached worker (`python -m
  clerk.engine.worker`) is started unless one is active; it executes every queued run
  and exits when none is left. So scan
  returns as soon as its file operations are done, and `clerk runs list` shows the
  runs it started.
- the daemon (later) installs a sink that hands runs to its own runner;
- tests install a sink with `run_sink(...)`.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunRequest:
    workflow: str
    fields: Mapping[str, Any]  # the file's template fields, params already merged in
    trigger: str = "manual"  # "rule:<name>" for the run action


@dataclass
class _SinkState:
    sink: Callable[[RunRequest], int] | None = None
    app: Any = None  # the app the default sink last served, and its workflows
    workflows: Any = None
    worker_checked: bool = False  # a worker was made sure of for this process


_state = _SinkState()


@contextmanager
def run_sink(sink: Callable[[RunRequest], int]) -> Iterator[None]:
    """Send runs to `sink` (returns the run id) while the block runs."""
    previous = _state.sink
    _state.sink = sink
    try:
        yield
    finally:
        _state.sink = previous


def set_run_sink(sink: Callable[[RunRequest], int] | None) -> None:
    """Install a sink for the life of the process (the daemon); None restores the default."""
    _state.sink = sink


def submit(request: RunRequest) -> int:
    """Create a PENDING run for `request`; returns its id."""
    if _state.sink is not None:
        return _state.sink(request)
    return _default_sink(request)


def queue_only(request: RunRequest) -> int:
    """A sink that only records the PENDING run (`clerk scan --no-run`)."""
    from clerk.engine.fields import dump_fields
    from clerk.engine.model import build_workflows, find_workflow
    from clerk.engine.runs import RunStore

    app = _current_app()
    if _state.app is not app:  # build the workflows once per app, not once per file
        _state.app, _state.workflows = app, build_workflows(app.rules().workflows)
    workflow = find_workflow(_state.workflows, request.workflow)
    return RunStore(app.store).create_run(workflow, dump_fields(request.fields),
                                          request.trigger)  # fmt: skip


def _default_sink(request: RunRequest) -> int:
    from clerk.engine.service import ensure_worker

    run_id = queue_only(request)
    app = _state.app
    if not _state.worker_checked:
        # Start the worker with the first run; once more at exit, for the runs queued
        # after a worker that was already finishing had looked for the last time.
        _state.worker_checked = True
        ensure_worker(app)
        atexit.register(ensure_worker, app)
    return run_id


def _current_app() -> Any:
    """The app of the running `clerk` command (honours --config), else one from the env."""
    import click

    from clerk.app import App

    context = click.get_current_context(silent=True)
    if context is not None and isinstance(context.find_root().obj, App):
        return context.find_root().obj
    return App()
