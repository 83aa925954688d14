"""What a plugin implements: filters, actions and classifiers.

A plugin registers classes (filters, actions) or instances (classifiers) through the
`register_*` hooks in `clerk.plugins.hookspecs`. Errors in the YAML a user wrote are
reported by raising `SpecError` from the constructor; errors while handling a file are
ordinary exceptions: clerk records them against the file and goes on.

Example::

    from clerk.plugins.api import Filter, Verdict, hookimpl

    class Even(Filter):
        "Match files whose size is even (`even: true`)."
        def __init__(self, value):
            if not isinstance(value, bool):
                raise SpecError("even wants true or false")
            self.want = value
        def match(self, file):
            return Verdict((file.size % 2 == 0) == self.want, f"size {file.size}")

    @hookimpl
    def register_filters(register):
        register("even", Even)
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from clerk.errors import RenderError, SpecError
from clerk.fileops.types import OpRequest, OpResult
from clerk.plugins.hookspecs import hookimpl
from clerk.rules.fileinfo import FileInfo
from clerk.secrets import SecretError, resolve_secrets

if TYPE_CHECKING:
    from clerk.engine.queue import RunSink
    from clerk.rules.templates import Renderer


@dataclass(slots=True)
class Verdict:
    """A filter's answer: matched or not, why (for `clerk explain`), and any fields.

    `reason` is for people (`"age 10d 0h is not > 30d"`); `seen` (the file's value) and
    `wanted` (what the filter asks for) are for machines: JSON-able values or datetimes,
    plain numbers for quantities (`864035`, `[{"op": ">", "value": 2592000}]`).
    """

    matched: bool
    reason: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    seen: Any = None
    wanted: Any = None

    def __bool__(self) -> bool:
        return self.matched


class Filter(ABC):
    """Base of every filter. `cost` orders the checks inside an `all`: cheap first.

    cost 0: name/stat only; 1: the catalog; 2: reads the file's head or sniffs MIME;
    3: reads the whole file (hash) or runs a classifier.
    """

    cost: ClassVar[int] = 0

    def __init__(self, value: Any):
        self.value = value

    def provides(self) -> frozenset[str]:
        """Template fields this filter adds when it matches (regex groups, ...)."""
        return frozenset()

    def namespaces(self) -> frozenset[str]:
        """Classifier namespaces this filter reads (so `clerk check` can verify them)."""
        return frozenset()

    def attributes(self) -> frozenset[str]:
        """Classifier attributes this filter reads, as `namespace.attribute` names
        (so `clerk check` can catch a misspelt one instead of never matching)."""
        return frozenset()

    def copies(self) -> str | None:
        """If this filter asks whether a file is a duplicate (`FileInfo.copies`), the
        order it picks originals by (one of `clerk.rules.copies.ORIGINAL_BY`): a run
        then remembers every file it meets, so that each is judged against them all."""
        return None

    @abstractmethod
    def match(self, file: FileInfo) -> Verdict:
        """Decide whether `file` matches."""


@dataclass(slots=True)
class Target:
    """The file an action works on, as it will be when the action runs.

    For a chain like `[move, tag]`, the tag's target is the moved file.
    """

    file: FileInfo
    path: str  # where the file is (or will be) when this action runs
    fields: Mapping[str, Any]
    renderer: Renderer
    rule: str
    dry_run: bool = False
    #: where a `run:` action puts the runs it starts (the engine's; None: it starts none)
    run_sink: RunSink | None = None

    def render(self, template: str) -> str:
        """Render a template into text (not a path); fields are not sanitized."""
        return self.renderer.render_text(template, self.fields)

    def render_path(self, template: str, *, relative_to: str | None = None) -> str:
        """Render a destination path: components sanitized, must land inside a root.

        A template without a `/` (like `{stem}-old.{ext}`) is relative to
        `relative_to` (the file's directory by default). Raises `RenderError`.
        """
        base = relative_to if relative_to is not None else os.path.dirname(self.path)
        return self.renderer.render_path(template, self.fields, base_dir=base)


class Action(ABC):  # noqa: B024 (abstract by convention: subclass one of the two below)
    """Base of every action. Subclass `FileOpAction` or `EffectAction`, not this.

    In a rule file an action is a mapping with the action's name as one key and its
    options as sibling keys::

        - move: "~/Archive/{name}"
          on_conflict: rename

    The constructor gets the value under the name (`"~/Archive/{name}"`) and the
    options (`{"on_conflict": "rename"}`); the loader has already refused option names
    not listed in `options`. Raise `SpecError` for a bad value.
    """

    #: option names this action accepts beside its value
    options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, value: Any, options: Mapping[str, Any] | None = None):
        self.value = value
        self.opts: dict[str, Any] = dict(options or {})

    def templates(self) -> list[str]:
        """The templates this action renders, for `clerk check` (fields, roots)."""
        return []

    def path_templates(self) -> list[str]:
        """The subset of `templates()` that render destination paths."""
        return []


class FileOpAction(Action):
    """An action that moves, copies, links or removes the file, through fileops."""

    @abstractmethod
    def request(self, target: Target) -> OpRequest | None:
        """The operation to perform (None: nothing to do for this file)."""


class EffectAction(Action):
    """An action with an effect other than a file operation (tag, notify, run...)."""

    @abstractmethod
    def describe(self, target: Target) -> str:
        """What `apply` would do, in a few words (dry runs and `clerk explain`)."""

    @abstractmethod
    def apply(self, target: Target) -> str | None:
        """Do it. Return a short note for the summary, or None."""


class Classifier(ABC):
    """Computes attributes of a file under `namespace` (fields `namespace.key`)."""

    namespace: ClassVar[str]
    #: attribute names this classifier can produce, for `clerk check` on templates
    attributes: ClassVar[frozenset[str]] = frozenset()

    def applies(self, file: FileInfo) -> bool:
        """A cheap pre-check (extension, size); return False to skip `classify`."""
        return True

    @abstractmethod
    def classify(self, file: FileInfo) -> dict[str, Any]:
        """Return the attributes (JSON-able values, or datetimes) of `file`."""


__all__ = [
    "Action",
    "Classifier",
    "EffectAction",
    "FileInfo",
    "FileOpAction",
    "Filter",
    "OpRequest",
    "OpResult",
    "RenderError",
    "SecretError",
    "SpecError",
    "Target",
    "Verdict",
    "hookimpl",
    "resolve_secrets",
]
