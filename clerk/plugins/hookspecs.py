"""The hooks a clerk plugin can implement (pluggy project name `clerk`).

Collection hooks are named `register_*` and receive a `register` callback; call it once
per thing you add. Event hooks (`file_classified`, `op_done`) are notifications: their
return value is ignored and an exception in one is recorded, never fatal to clerk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from clerk.engine.alerts import Alert
    from clerk.engine.api import Executor
    from clerk.engine.runs import RunInfo, TaskRunInfo
    from clerk.plugins.api import Action, Classifier, FileInfo, Filter, OpResult

hookspec = pluggy.HookspecMarker("clerk")
hookimpl = pluggy.HookimplMarker("clerk")


@hookspec
def configure(settings: Mapping[str, Any]) -> None:
    """Receive this plugin's own settings from config.yaml, once, right after loading.

    ``settings`` is the mapping under ``plugins.settings.<plugin name>`` (the entry point
    name, or the file name without ``.py`` for a loose file); an empty mapping when the
    config has none. Values are given as written: a secret reference like
    ``${env:SLACK_URL}`` stays unresolved; resolve it with
    `clerk.plugins.api.resolve_secrets` at the moment it is used, and never log or store
    the result. Raise `SpecError` for settings that are wrong: the plugin is then
    reported as failed (by name, with the message) and clerk goes on without it, or
    refuses to start with ``plugins.strict: true``.
    """


@hookspec
def register_filters(register: Callable[[str, type[Filter]], None]) -> None:
    """Add filters usable under `match:` in rule files.

    Call ``register(name, FilterClass)`` for each filter. The class receives the YAML
    value written after the filter's name (``{name: value}``) in its constructor, raises
    `clerk.errors.SpecError` with a helpful message when that value is wrong, and
    implements `match(file) -> Verdict`. A later registration of the same name replaces
    an earlier one, so a plugin can override a built-in.
    """


@hookspec
def register_actions(register: Callable[[str, type[Action]], None]) -> None:
    """Add actions usable under `actions:` in rule files.

    Call ``register(name, ActionClass)``. An action is either a file operation
    (subclass `FileOpAction`, returning an `OpRequest` that clerk journals and performs
    safely) or an effect (subclass `EffectAction`, whose `apply` runs after the file
    operations before it have completed, with the file's final path).
    """


@hookspec
def register_classifiers(register: Callable[[Classifier], None]) -> None:
    """Add classifiers: they compute attributes of a file under a namespace.

    Call ``register(classifier_instance)``. Attributes become template fields
    (``{exif.taken:%Y}``) and can be matched with the `attr` filter
    (``{attr: {exif.camera: "Pixel*"}}``). A classifier runs only when a rule uses its
    namespace, and its result is cached in the catalog until the file changes.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands or groups to the `clerk` command line (``cli.command()``)."""


@hookspec
def file_classified(file: FileInfo) -> None:
    """Called after a file has been classified and the rules engine has seen it.

    `file` carries the path, stat, and whatever was computed (mime, hash, attributes).
    """


@hookspec
def op_done(result: OpResult) -> None:
    """Called after every journaled file operation finishes (done, skipped or failed)."""


@hookspec
def register_executors(register: Callable[[str, type[Executor]], None]) -> None:
    """Add executors usable as `executor:` in workflow tasks.

    Call ``register(name, ExecutorClass)``. The class (a `clerk.engine.api.Executor`)
    is built once per task of a run with the task's own keys (``command``, ``url``...)
    and raises `clerk.errors.SpecError` when they are wrong; its ``execute(context)``
    runs one attempt in a worker thread and returns a `TaskResult`. A later
    registration of the same name replaces an earlier one.
    """


@hookspec
def run_started(run: RunInfo) -> None:
    """Called when a run's first task starts (its status turns RUNNING).

    `run` is a snapshot (`id`, `workflow`, `status`, `inputs`, `created`, `started`).
    A notification: the return value is ignored and an exception is logged, never fatal.
    """


@hookspec
def run_finished(run: RunInfo) -> None:
    """Called once a run has ended: COMPLETED, FAILED or CANCELLED (`run.status`).

    `run.error` says why a run did not complete. A notification, like `run_started`.
    """


@hookspec
def task_finished(task_run: TaskRunInfo) -> None:
    """Called after every attempt of a task ends, whether it succeeded, failed or will
    be retried (`task_run.status` is COMPLETED, FAILED, CANCELLED or PENDING for a retry).

    It carries the exit code, error code and message, the recoverable flag, the
    resource usage (wall, user and system CPU, peak RSS) and the task's outputs.
    """


@hookspec
def alert(alert: Alert) -> None:
    """Called when an alert condition on run metrics holds (`alerts:` in config.yaml,
    like ``duration > 2h`` or ``failure_rate > 0.2 over 10m``).

    `alert` has `name`, `condition`, the measured `value`, the `threshold`, the
    `workflow` and `run_id` it concerns (if any) and a ready-made `message`. clerk has
    already logged and stored it; implement this to notify someone. A notification:
    the return value is ignored and an exception is logged, never fatal.
    """


def hook_names() -> list[str]:
    """Every hook this module declares, for meta-tests and `clerk plugins list`."""
    return sorted(
        name
        for name, value in globals().items()
        if callable(value) and hasattr(value, "clerk_spec")
    )


__all__ = ["hook_names", "hookimpl", "hookspec"]
