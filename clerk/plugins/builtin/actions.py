"""The built-in actions, registered through `register_actions` like any plugin's."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, cast

from clerk.errors import ClerkError, SpecError
from clerk.fileops.types import CONFLICT_POLICIES, Conflict, OpKind, OpRequest
from clerk.plugins.api import Action, EffectAction, FileOpAction, Target
from clerk.plugins.hookspecs import hookimpl
from clerk.rules.templates import parse_template

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def _template(value: Any, action: str, key: str = "to") -> str:
    if isinstance(value, dict):
        if set(value) - {key}:
            extra = ", ".join(sorted(set(value) - {key}))
            raise SpecError(f"{action}: unknown key(s) {extra}; write `{action}: TEMPLATE`")
        value = value.get(key)
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{action} wants a destination template, like '~/Archive/{{name}}'")
    parse_template(value)  # RenderError (a ClerkError) for malformed templates
    return value


class _Placing(FileOpAction):
    """An action that places the file (or a copy, or a link) at a rendered destination."""

    kind: ClassVar[OpKind]
    options = frozenset({"on_conflict"})

    def __init__(self, value: Any, options: Mapping[str, Any] | None = None):
        super().__init__(value, options)
        self.template = _template(value, self.kind)
        policy = self.opts.get("on_conflict", "rename")
        if policy not in CONFLICT_POLICIES:
            raise SpecError(
                f"on_conflict must be one of {', '.join(CONFLICT_POLICIES)}, got {policy!r}"
            )
        self.on_conflict = cast(Conflict, policy)

    def templates(self) -> list[str]:
        return [self.template]

    def path_templates(self) -> list[str]:
        return [self.template]

    def destination(self, target: Target) -> str:
        # a trailing / means "into this directory, keeping the name"
        template = self.template + "{name}" if self.template.endswith("/") else self.template
        return target.render_path(template)

    def request(self, target: Target) -> OpRequest | None:
        dst = self.destination(target)
        if dst == target.path:
            return None  # already where it belongs
        return OpRequest(self.kind, target.path, dst, on_conflict=self.on_conflict)


class MoveAction(_Placing):
    """`move: "~/Archive/{mtime:%Y}/{name}"`: move the file (a trailing / keeps its name)."""

    kind = "move"


class CopyAction(_Placing):
    """`copy: "~/Backup/{relpath}"`: copy the file; later actions still act on the original."""

    kind = "copy"


class SymlinkAction(_Placing):
    """`symlink: "~/Links/{name}"`: create a symbolic link there pointing to the file."""

    kind = "symlink"


class HardlinkAction(_Placing):
    """`hardlink: "~/Links/{name}"`: create a hard link there (same file system only)."""

    kind = "hardlink"


class RenameAction(_Placing):
    """`rename: "{mtime:%F}-{name}"`: a new name in the same directory."""

    kind = "rename"

    def __init__(self, value: Any, options: Mapping[str, Any] | None = None):
        super().__init__(value, options)
        literal = "".join(part[0] for part in parse_template(self.template))
        if "/" in literal:
            raise SpecError("rename takes a new name, not a path; use move to change directory")

    def path_templates(self) -> list[str]:
        return []  # always in the file's own directory

    def destination(self, target: Target) -> str:
        return target.render_path(self.template, relative_to=os.path.dirname(target.path))


class ArchiveAction(_Placing):
    """`archive: "~/Archive/{stem}.tar.gz"`: pack the file into a new archive, then remove it.

    Formats by suffix: .zip .tar .tar.gz/.tgz .tar.bz2 .tar.xz. `keep_source: true` keeps
    the original.
    """

    kind = "archive"
    options = frozenset({"on_conflict", "keep_source"})

    def __init__(self, value: Any, options: Mapping[str, Any] | None = None):
        super().__init__(value, options)
        if not self.template.lower().endswith(ARCHIVE_SUFFIXES):
            raise SpecError(f"archive destination must end in one of {', '.join(ARCHIVE_SUFFIXES)}")
        self.keep_source = bool(self.opts.get("keep_source", False))

    def request(self, target: Target) -> OpRequest | None:
        request = super().request(target)
        if request is not None:
            request.options["keep_source"] = self.keep_source
        return request


class TrashAction(FileOpAction):
    """`trash: {}`: move the file to the trash (undoable; see docs/safety.md)."""

    def __init__(self, value: Any, options: Mapping[str, Any] | None = None):
        super().__init__(value, options)
        if value not in (None, {}, True):
            raise SpecError("trash takes no value: write `trash: {}`")

    def request(self, target: Target) -> OpRequest | None:
        return OpRequest("trash", target.path)


class DeleteAction(FileOpAction):
    """`delete: {permanent: true}`: remove the file for good. Without `permanent`, refused."""

    options = frozenset({"permanent"})

    def __init__(self, value: Any, options: Mapping[str, Any] | None = None):
        super().__init__(value, options)
        permanent = self.opts.get("permanent")
        if isinstance(value, dict):
            unknown = set(value) - {"permanent"}
            if unknown:
                raise SpecError(f"delete: unknown key(s) {', '.join(sorted(unknown))}")
            permanent = value.get("permanent", permanent)
        if permanent is not True:
            raise SpecError(
                "delete removes files for good and needs `delete: {permanent: true}`; "
                "use `trash: {}` for a delete that can be undone"
            )

    def request(self, target: Target) -> OpRequest | None:
        return OpRequest("delete", target.path, options={"permanent": True})


class TagAction(EffectAction):
    """`tag: [invoice, 2024]` adds tags (templates allowed); `{add: [...], remove: [...]}`."""

    def __init__(self, value: Any, options: Mapping[str, Any] | None = None):
        super().__init__(value, options)
        add: Any = value
        remove: Any = []
        if isinstance(value, dict):
            unknown = set(value) - {"add", "remove"}
            if unknown:
                raise SpecError(f"tag: unknown key(s) {', '.join(sorted(unknown))}")
            add, remove = value.get("add", []), value.get("remove", [])
        self.add = self._list(add)
        self.remove = self._list(remove)
        if not self.add and not self.remove:
            raise SpecError("tag wants a tag or a list of tags")
        for template in self.add + self.remove:
            parse_template(template)

    @staticmethod
    def _list(value: Any) -> list[str]:
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str | int) and not isinstance(v, bool) and str(v) for v in items):
            raise SpecError(f"tags are non-empty strings, got {value!r}")
        return [str(v) for v in items]

    def templates(self) -> list[str]:
        return self.add + self.remove

    def describe(self, target: Target) -> str:
        parts = []
        if self.add:
            parts.append("+" + ",".join(target.render(t) for t in self.add))
        if self.remove:
            parts.append("-" + ",".join(target.render(t) for t in self.remove))
        return "tag " + " ".join(parts)

    def apply(self, target: Target) -> str | None:
        tags = target.file.tags
        tags.update(tag for tag in (target.render(t) for t in self.add) if tag)
        tags.difference_update(target.render(t) for t in self.remove)
        return None


class RunAction(EffectAction):
    """`run: ocr` or `run: {workflow: ocr, params: {lang: deu}}`: start a run of a workflow.

    The file (at its path after the actions before this one) is the run's input: its
    template fields (path, name, stem, dir, regex groups, known attributes) become the
    run's fields, and `params` (templates, rendered for this file) are added to them.
    The run is queued as a durable row through the engine's run sink (`target.run_sink`);
    see clerk/engine/queue.py for who executes it.
    """

    options = frozenset({"params"})

    def __init__(self, value: Any, options: Mapping[str, Any] | None = None):
        super().__init__(value, options)
        params: Any = self.opts.get("params", {})
        if isinstance(value, dict):
            unknown = set(value) - {"workflow", "params"}
            if unknown:
                raise SpecError(f"run: unknown key(s) {', '.join(sorted(unknown))}")
            params = value.get("params", params)
            value = value.get("workflow")
        if not isinstance(value, str) or not value.strip() or "{" in value:
            raise SpecError("run wants a workflow name: `run: ocr` or `run: {workflow: ocr}`")
        if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int | float) and not isinstance(v, bool)
            for k, v in params.items()
        ):
            raise SpecError("run: params wants a mapping of names to text, like {lang: deu}")
        self.workflow = value
        self.params = {k: str(v) for k, v in params.items()}
        for template in self.params.values():
            parse_template(template)

    def templates(self) -> list[str]:
        return list(self.params.values())

    def describe(self, target: Target) -> str:
        return f"run {self.workflow}"

    def apply(self, target: Target) -> str | None:
        from clerk.engine.queue import RunRequest

        if target.run_sink is None:
            raise ClerkError("this engine starts no runs (it was given no run sink)")
        fields = _run_fields(target)
        fields.update({name: target.render(t) for name, t in self.params.items()})
        run_id = target.run_sink(RunRequest(self.workflow, fields, trigger=f"rule:{target.rule}"))
        return f"run {self.workflow} queued as run {run_id}"


def _run_fields(target: Target) -> dict[str, Any]:
    """The file's fields as plain values, without computing anything costly."""
    file, fields = target.file, target.fields
    values: dict[str, Any] = {"path": target.path}
    for key in fields:
        if key in ("mime", "hash"):
            known = file.mime_if_known if key == "mime" else file.hash_if_known
            if known is not None:
                values[key] = known
            continue
        try:
            values[key] = fields[key]
        except Exception:  # noqa: S112 (a field this file cannot give is simply absent)
            continue
    for namespace, attrs in file.known_attrs.items():
        if isinstance(attrs, dict):
            values.update({f"{namespace}.{k}": v for k, v in attrs.items()})
    return values


BUILTIN_ACTIONS: dict[str, type[Action]] = {
    "move": MoveAction,
    "copy": CopyAction,
    "rename": RenameAction,
    "symlink": SymlinkAction,
    "hardlink": HardlinkAction,
    "trash": TrashAction,
    "delete": DeleteAction,
    "tag": TagAction,
    "archive": ArchiveAction,
    "run": RunAction,
}


@hookimpl(trylast=True)
def register_actions(register: Callable[[str, type[Action]], None]) -> None:
    for name, cls in BUILTIN_ACTIONS.items():
        register(name, cls)
