"""A run's template fields: stored as JSON, rendered into arguments at execution time.

Fields come from the file that triggered the run (path, name, stem, ext, dir, size,
mtime, ...) and from `--param k=v` / `run: {params: ...}`; params win on a clash.
Datetimes survive the JSON round trip so `{mtime:%Y}` works in a task's command.

Secret references (`${env:NAME}`, `${file:/path}`, `${credential:NAME}`) are resolved
only where the workflow author wrote them, never inside a field's value: a file named
`${env:HOME}` reaches the command as those very characters.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from clerk.config import resolve_secrets
from clerk.rules.templates import format_value, parse_template

_SECRET_KINDS = ("env", "file", "credential")
_DATETIME = "$datetime"


def file_fields(path: str) -> dict[str, Any]:
    """The standard fields of a file given on the command line (`clerk run --file`)."""
    path = os.path.abspath(path)
    name = os.path.basename(path)
    dot = name.rfind(".")
    stem, ext = (name[:dot], name[dot + 1 :]) if dot > 0 else (name, "")
    st = os.stat(path)
    return {
        "path": path,
        "name": name,
        "stem": stem,
        "ext": ext,
        "dir": os.path.dirname(path),
        "size": st.st_size,
        "mtime": datetime.fromtimestamp(st.st_mtime).astimezone(),
    }


def dump_fields(fields: Mapping[str, Any]) -> str:
    return json.dumps({k: _encode(v) for k, v in fields.items()}, ensure_ascii=True)


def load_fields(text: str | None) -> dict[str, Any]:
    return decode_fields(json.loads(text) if text else {})


def decode_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Fields as `dump_fields` wrote them, parsed JSON -> their values (datetimes back)."""
    return {k: _decode(v) for k, v in raw.items()}


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {_DATETIME: value.isoformat()}
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {_DATETIME}:
        return datetime.fromisoformat(value[_DATETIME])
    return value


def render(
    template: str,
    fields: Mapping[str, Any],
    secrets: list[str] | None = None,
    escape: Callable[[str], str] | None = None,
) -> str:
    """Render `template` as text (no sanitizing: argv elements are not paths).

    `escape` is applied to each field's value (URL quoting in the http executor), never
    to the template's own text. Resolved secret values are appended to `secrets`, so
    callers can redact them.
    Raises `RenderError` for an unknown field, `SecretError` for an unresolvable secret.
    """
    from clerk.errors import RenderError

    out: list[str] = []
    for literal, name, spec in parse_template(template):
        if name is not None and name in _SECRET_KINDS and literal.endswith("$"):
            out.append(literal[:-1])
            value = resolve_secrets(f"${{{name}:{spec}}}")
            if secrets is not None:
                secrets.append(value)
            out.append(value)
            continue
        out.append(literal)
        if name is None:
            continue
        if name not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise RenderError(f"unknown field {{{name}}} in {template!r} (fields: {known})")
        value = fields[name]
        if value is None:
            raise RenderError(f"field {{{name}}} has no value in this run")
        text = value if isinstance(value, str) and not spec else format_value(value, spec)
        out.append(escape(text) if escape else text)
    return "".join(out)
