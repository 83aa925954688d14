"""Secret references: `${env:NAME}`, `${file:/path}`, `${credential:NAME}`.

Kept apart from clerk.config (which imports pydantic) so the engine and plugins can
resolve and redact secrets without paying for the config models.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from clerk.errors import ConfigError, Location, Problem

_SECRET_RE = re.compile(r"\$\{(env|file|credential):([^}]+)\}")


class SecretError(ConfigError):
    pass


def has_secret_refs(text: str) -> bool:
    return bool(_SECRET_RE.search(text))


def resolve_secrets(text: str) -> str:
    """Replace `${env:NAME}`, `${file:/path}` and `${credential:NAME}` with their values.

    Called only at execution time, on the way into a process or request; the resolved
    value is never stored or logged (the unresolved reference is).
    """

    def lookup(m: re.Match[str]) -> str:
        kind, name = m.group(1), m.group(2).strip()
        try:
            if kind == "env":
                return os.environ[name]
            if kind == "file":
                return Path(name).expanduser().read_text(encoding="utf-8").rstrip("\n")
            cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
            if not cred_dir:
                raise KeyError("CREDENTIALS_DIRECTORY is not set (not running under systemd?)")
            return (Path(cred_dir) / name).read_text(encoding="utf-8").rstrip("\n")
        except (KeyError, OSError) as exc:
            raise SecretError(
                [Problem(Location("<secret>"), f"cannot resolve ${{{kind}:{name}}}: {exc}")]
            ) from None

    return _SECRET_RE.sub(lookup, text)


def redact(text: str, secrets: list[str]) -> str:
    """Hide resolved secret values in text that may reach a log or the store."""
    for value in secrets:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text
