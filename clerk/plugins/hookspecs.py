"""The hooks a clerk plugin can implement (pluggy project name `clerk`).

Collection hooks are named `register_*` and receive a `register` callback; call it once
per thing you add. Event hooks (`file_classified`, `op_done`) are notifications: their
return value is ignored and an exception in one is recorded, never fatal to clerk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from clerk.plugins.api import Action, Classifier, FileInfo, Filter, OpResult

hookspec = pluggy.HookspecMarker("clerk")
hookimpl = pluggy.HookimplMarker("clerk")


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


def hook_names() -> list[str]:
    """Every hook this module declares, for meta-tests and `clerk plugins list`."""
    return sorted(
        name
        for name, value in globals().items()
        if callable(value) and hasattr(value, "clerk_spec")
    )


__all__ = ["hook_names", "hookimpl", "hookspec"]
