"""The plugin's settings: `plugins.settings.notify` in config.yaml.

    plugins:
      settings:
        notify:
          urls: ["${env:SLACK_URL}"]           # default destinations of the notify action
          alert_urls: ["${file:/etc/clerk/ops-url}"]   # where alerts go
          timeout: 10s                          # per request (connect, then read)

URLs are kept as written: secret references are resolved only when a message is sent.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clerk.plugins.api import SpecError
from clerk.secrets import has_secret_refs
from clerk.units import parse_duration

DEFAULT_TIMEOUT = 10.0
KEYS = ("alert_urls", "timeout", "urls")
# an apprise URL starts with its service's schema: json://, slack://, mailtos://, ...
_SCHEMA = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class NotifySettings:
    urls: tuple[str, ...] = ()
    alert_urls: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT


_current = NotifySettings()


def current() -> NotifySettings:
    """The settings `configure` received (defaults before that)."""
    return _current


def use(settings: NotifySettings) -> None:
    global _current
    _current = settings


def parse_settings(raw: Mapping[str, Any]) -> NotifySettings:
    """Validate the mapping under `plugins.settings.notify`; `SpecError` when wrong."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"notify settings are a mapping of {', '.join(KEYS)}")
    for key in raw:
        if key not in KEYS:
            raise SpecError(f"notify: unknown setting {key!r}{_did_you_mean(str(key))}")
    return NotifySettings(
        urls=url_list(raw.get("urls", []), "urls"),
        alert_urls=url_list(raw.get("alert_urls", []), "alert_urls"),
        timeout=_timeout(raw.get("timeout", DEFAULT_TIMEOUT)),
    )


def url_list(value: Any, what: str) -> tuple[str, ...]:
    """One URL or a list of them, each an apprise URL or holding a secret reference."""
    items = value if isinstance(value, list) else [value]
    urls = []
    for index, item in enumerate(items):
        where = f"{what}[{index}]" if isinstance(value, list) else what
        if not isinstance(item, str) or not item.strip():
            raise SpecError(
                f"notify {where}: wants an apprise URL or a list of them, like"
                f" 'json://host/path' or '${{env:SLACK_URL}}', got {_kind(item)}"
            )
        url = item.strip()
        # the URL itself is not repeated: written literally, it may still be a secret
        if not has_secret_refs(url) and not _SCHEMA.match(url):
            raise SpecError(
                f"notify {where}: is not an apprise URL (SCHEMA://...) nor a secret"
                " reference like ${env:NAME}"
            )
        urls.append(url)
    return tuple(urls)


def _kind(value: Any) -> str:
    return "an empty string" if isinstance(value, str) else f"a {type(value).__name__}"


def _timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SpecError(f"notify timeout: wants a duration like 10s, got {value!r}")
    try:
        seconds = parse_duration(value)
    except SpecError as exc:
        raise SpecError(f"notify timeout: {exc}") from None
    if seconds <= 0:
        raise SpecError(f"notify timeout: must be more than 0s, got {value!r}")
    return seconds


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, KEYS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (known: {', '.join(KEYS)})"
