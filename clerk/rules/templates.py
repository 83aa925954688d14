"""Render `{field}` templates safely.

No code runs from a rule file: a template is literal text and `{field:spec}` slots,
parsed with `string.Formatter.parse` only, and fields are looked up by their whole name
(`exif.taken` is one key, never attribute access, so `{name.__class__}` is just an
unknown field). Datetimes take strftime specs (`{mtime:%Y}`), other values the
format-spec mini-language. In paths, every value that comes from a file is sanitized
(no `/`, NUL, control characters, `.` or `..`) and the final path must resolve inside a
declared root, symlinks included.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from clerk.errors import RenderError
from clerk.rules.model import RootSet

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/]")
_FORMATTER = string.Formatter()

Part = tuple[str, str | None, str]  # literal, field name (None = none), format spec


@lru_cache(maxsize=4096)
def parse_template(template: str) -> tuple[Part, ...]:
    """Split a template into literal text and fields. Raises `RenderError` if malformed."""
    parts: list[Part] = []
    try:
        for literal, name, spec, conversion in _FORMATTER.parse(template):
            if name is not None:
                if conversion:
                    raise RenderError(f"conversions like !{conversion} are not allowed")
                if name == "" or name.isdigit():
                    raise RenderError("fields need a name, like {name} or {mtime:%Y}")
                if "{" in (spec or ""):
                    raise RenderError(f"nested fields are not allowed in {{{name}:{spec}}}")
            parts.append((literal, name, spec or ""))
    except ValueError as exc:
        raise RenderError(f"bad template {template!r}: {exc}") from None
    return tuple(parts)


def template_fields(template: str) -> list[str]:
    """The field names a template uses (for `clerk check`)."""
    return [name for _, name, _ in parse_template(template) if name is not None]


def format_value(value: Any, spec: str) -> str:
    if isinstance(value, datetime | date):
        if spec:
            return value.strftime(spec)
        if isinstance(value, datetime):
            return value.isoformat(timespec="seconds")
        return value.isoformat()
    if isinstance(value, list | tuple | set):
        value = ",".join(str(v) for v in value)
    try:
        return format(value, spec)
    except (ValueError, TypeError):
        if isinstance(value, str):
            raise
        return format(str(value), spec)


def sanitize_component(text: str) -> str:
    """Make a field value safe to put inside one path component."""
    cleaned = _UNSAFE.sub("_", text)
    if cleaned in (".", ".."):
        return "_" * len(cleaned)
    return cleaned


class Renderer:
    """Renders templates for one rule set; knows the roots for the inside-a-root check."""

    def __init__(self, roots: RootSet, extra_roots: tuple[str, ...] = ()):
        self.roots = roots
        self._real_roots = [
            os.path.realpath(p) for p in [r.path for r in roots] + list(extra_roots)
        ]
        self._real_dirs: dict[str, str] = {}

    def render_text(self, template: str, fields: Mapping[str, Any]) -> str:
        return self._render(template, fields, sanitize=False)

    def render_path(self, template: str, fields: Mapping[str, Any], base_dir: str) -> str:
        rendered = self._render(template, fields, sanitize=True)
        if rendered.startswith("~"):
            rendered = os.path.expanduser(rendered)
        if not os.path.isabs(rendered):
            rendered = os.path.join(base_dir, rendered)
        path = os.path.normpath(rendered)
        if path.endswith("/") or os.path.basename(path) in ("", ".", ".."):
            raise RenderError(f"{template!r} rendered to {path!r}, which names no file")
        self.check_inside(path)
        return path

    def check_inside(self, path: str) -> None:
        """Refuse `path` unless it lies inside a root, after resolving symlinks."""
        if self.roots.locate(path) is None:
            raise RenderError(f"destination {path!r} is outside every root")
        real_parent = self._real_dir(os.path.dirname(path))
        if not any(_is_within(real_parent, r) for r in self._real_roots):
            raise RenderError(f"destination {path!r} resolves outside every root (symlink)")

    def _real_dir(self, directory: str) -> str:
        cached = self._real_dirs.get(directory)
        if cached is None:
            cached = os.path.realpath(directory)
            if len(self._real_dirs) > 10_000:
                self._real_dirs.clear()
            self._real_dirs[directory] = cached
        return cached

    def forget_dir(self, directory: str) -> None:
        """Drop cached resolution (a directory was created or replaced)."""
        self._real_dirs.pop(directory, None)

    def _render(self, template: str, fields: Mapping[str, Any], *, sanitize: bool) -> str:
        out: list[str] = []
        for literal, name, spec in parse_template(template):
            out.append(literal)
            if name is None:
                continue
            try:
                value = fields[name]
            except KeyError:
                raise RenderError(f"unknown field {{{name}}} in {template!r}") from None
            if value is None:
                raise RenderError(f"field {{{name}}} has no value for this file")
            try:
                text = format_value(value, spec)
            except (ValueError, TypeError) as exc:
                raise RenderError(f"cannot format {{{name}:{spec}}}: {exc}") from None
            out.append(sanitize_component(text) if sanitize else text)
        return "".join(out)


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
