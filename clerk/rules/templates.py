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
from clerk.roots import RootSet

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/]")
_FORMATTER = string.Formatter()
# `{size:99999999999}` asks format() for 100 GB. No field is wider than a file name.
MAX_WIDTH = 255
MAX_SPEC = 100
_MINI_SPEC = re.compile(
    r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[,_]?(?:\.(?P<precision>\d*))?[a-zA-Z%]?", re.DOTALL
)
_STRFTIME_WIDTH = re.compile(r"%[-_0^#]*(\d+)")

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
                problem = _width_problem(name, spec or "")
                if problem:
                    raise RenderError(problem)
            parts.append((literal, name, spec or ""))
    except ValueError as exc:
        raise RenderError(f"bad template {template!r}: {exc}") from None
    return tuple(parts)


def _width_problem(name: str, spec: str) -> str | None:
    if len(spec) > MAX_SPEC:
        return f"a format spec is at most {MAX_SPEC} characters, {{{name}:...}} has {len(spec)}"
    widths = [int(width) for width in _STRFTIME_WIDTH.findall(spec)]
    mini = _MINI_SPEC.fullmatch(spec)
    if mini:
        widths += [int(n) for n in (mini.group("width"), mini.group("precision")) if n]
    widest = max(widths, default=0)
    if widest > MAX_WIDTH:
        return (
            f"a field is at most {MAX_WIDTH} characters wide, {{{name}:{spec}}} asks for {widest}"
        )
    return None


def spec_problem(name: str, spec: str, sample: Any) -> str | None:
    """What is wrong with `{name:spec}` for a value like `sample` (None when it formats)."""
    try:
        format_value(sample, spec)
    except (ValueError, TypeError) as exc:
        return f"cannot format {{{name}:{spec}}}: {exc}"
    return None


def template_specs(template: str) -> list[tuple[str, str]]:
    """(field, format spec) for each field of a template (for `clerk check`)."""
    return [(name, spec) for _, name, spec in parse_template(template) if name is not None]


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
    if _UNSAFE.search(text) is not None:
        text = _UNSAFE.sub("_", text)
    if text in (".", ".."):
        return "_" * len(text)
    return text


class Renderer:
    """Renders templates for one rule set; knows the roots for the inside-a-root check."""

    def __init__(self, roots: RootSet):
        self.roots = roots
        self._dir_verdicts: dict[str, str] = {}

    def render_text(self, template: str, fields: Mapping[str, Any]) -> str:
        return self._render(template, fields, sanitize=False)

    def render_path(self, template: str, fields: Mapping[str, Any], base_dir: str) -> str:
        rendered = self._render(template, fields, sanitize=True)
        if rendered[:1] == "~":
            rendered = os.path.expanduser(rendered)
        if rendered[:1] != "/":
            rendered = os.path.join(base_dir, rendered)
        path = rendered if _is_normal(rendered) else os.path.normpath(rendered)
        if path[path.rfind("/") + 1 :] in ("", ".", ".."):
            raise RenderError(f"{template!r} rendered to {path!r}, which names no file")
        self.check_inside(path)
        return path

    def check_inside(self, path: str) -> None:
        """Refuse `path` unless it lies inside a root, by its name.

        Where symlinks on the way lead is not judged here: a verdict cached now would be
        stale when the file is placed. fileops judges that as it places the file, on the
        directory it writes into (`clerk.fileops.beneath`).
        """
        directory = path[: path.rfind("/")] or "/"
        verdict = self._dir_verdicts.get(directory)
        if verdict is None:
            verdict = self._judge_dir(directory)
            if len(self._dir_verdicts) > 10_000:
                self._dir_verdicts.clear()
            self._dir_verdicts[directory] = verdict
        if verdict:
            raise RenderError(f"destination {path!r} {verdict}")

    def _judge_dir(self, directory: str) -> str:
        """ "" if files may be placed in `directory`, else why not."""
        if self.roots.locate(directory) is None:
            return "is outside every root"
        return ""

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
            if value.__class__ is str and not spec:
                text = value  # the common case: {name}, {stem}, {ext}
            elif value is None:
                raise RenderError(f"field {{{name}}} has no value for this file")
            else:
                try:
                    text = format_value(value, spec)
                except (ValueError, TypeError) as exc:
                    raise RenderError(f"cannot format {{{name}:{spec}}}: {exc}") from None
            out.append(sanitize_component(text) if sanitize else text)
        return "".join(out)


def _is_normal(path: str) -> bool:
    """True when normpath would return `path` unchanged (saves it on the hot path)."""
    return (
        "//" not in path
        and "/./" not in path
        and "/../" not in path
        and not path.endswith(("/", "/.", "/.."))
    )
