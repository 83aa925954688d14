"""Send one message to apprise URLs, resolving secrets at the last moment.

apprise logs URLs (rebuilt, or in pieces) at debug level and in some errors, and urllib3
logs each request line; a log filter hides the secret values of every send in progress,
so `clerk -vv` never prints them. Errors raised from here name URLs only through
`display_url`, and the services' reasons in them are redacted.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from clerk.secrets import SecretError, redact
from clerk_notify.urls import display_url, resolve

FORMATS = ("text", "markdown", "html")
TYPES = ("info", "success", "warning", "failure")


class NotifyError(Exception):
    """A notification was not delivered. The message never holds a resolved secret."""


@dataclass(frozen=True)
class Message:
    body: str
    title: str = ""
    body_format: str = "text"
    notify_type: str = "info"


def send(raw_urls: Sequence[str], message: Message, timeout: float) -> None:
    """Deliver `message` to every URL (as written, references unresolved).

    Each URL is tried even when an earlier one failed; then `NotifyError` lists the
    failures, each with the service's reason.
    """
    if not raw_urls:
        raise NotifyError("no notification URL: give url: or set plugins.settings.notify.urls")
    failures = []
    for raw in raw_urls:
        reason = _send_one(raw, message, timeout)
        if reason:
            failures.append(f"{display_url(raw)}: {reason}")
    if failures:
        sent = len(raw_urls) - len(failures)
        raise NotifyError(
            f"notification not sent ({sent} of {len(raw_urls)} delivered): " + "; ".join(failures)
        )


def _send_one(raw: str, message: Message, timeout: float) -> str | None:
    """None when delivered, else why not (secrets already hidden)."""
    try:
        target = resolve(raw)
    except SecretError as exc:
        return "; ".join(p.message for p in exc.problems)
    # heavy (all of apprise's services): only when something is sent; creates the loggers
    import apprise  # noqa: F401
    import requests  # noqa: F401 (apprise's HTTP client: its urllib3 logs request lines)

    with _hiding(target.secrets):
        try:
            reason = _deliver(target.url, message, timeout)
        except Exception as exc:  # apprise or requests: report it like a refused send
            reason = f"{type(exc).__name__}: {exc}"
    return redact(reason, list(target.secrets)) if reason else None


def _deliver(url: str, message: Message, timeout: float) -> str | None:
    import apprise

    service = apprise.Apprise.instantiate(url, asset=_asset(apprise))
    if service is None:
        return "not a URL apprise understands (see its wiki for the services and their URLs)"
    # apprise's own default is 4s each; the setting covers both phases of a request
    service.socket_connect_timeout = timeout
    service.socket_read_timeout = timeout
    notifier = apprise.Apprise(asset=_asset(apprise))
    notifier.add(service)
    result = notifier.notify(
        body=message.body,
        title=message.title,
        notify_type=message.notify_type,
        body_format=message.body_format,
    )
    return None if result else _failure_reason(result)


def _asset(apprise: Any) -> Any:
    try:  # keep apprise's persistent store (1.9+) off the disk: nothing of ours to cache
        return apprise.AppriseAsset(storage_mode="memory")
    except (TypeError, AttributeError):
        return apprise.AppriseAsset()


def _failure_reason(result: Any) -> str:
    """The service's own warnings when apprise reports them (2.x), else a general hint."""
    logs = getattr(result, "logs", None)
    if callable(logs):
        lines = [entry.message for entry in logs() if _level(entry.level) >= logging.WARNING]
        if lines:
            return " ".join(dict.fromkeys(str(line).strip() for line in lines))
    return "the service refused it or could not be reached (clerk -vv shows apprise's log)"


def _level(level: Any) -> int:
    if isinstance(level, int):
        return level
    return logging.getLevelNamesMapping().get(str(level).upper(), logging.WARNING)


class _Redactor(logging.Filter):
    """Hides the secrets of the sends in progress in every record it sees."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._active: Counter[str] = Counter()

    def add(self, secrets: Sequence[str]) -> None:
        with self._lock:
            self._active.update(secrets)

    def remove(self, secrets: Sequence[str]) -> None:
        with self._lock:
            self._active.subtract(secrets)
            self._active = +self._active  # drop the values no send holds any more

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            secrets = sorted(self._active, key=len, reverse=True)
        if not secrets:
            return True
        try:
            text = record.getMessage()
        except Exception:  # its handler would print the raw arguments: hide them all
            record.msg, record.args = "<a log record clerk-notify could not redact>", None
            return True
        if record.exc_info:  # a traceback would be formatted later, unredacted
            text += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = redact(text, secrets), None
        return True


_redactor = _Redactor()
_installing = threading.Lock()
# apprise, and the HTTP stack under it: urllib3 logs each request line, path included
_LOGGER_PREFIXES = ("apprise", "urllib3", "requests")


def _install_redactor() -> None:
    """Filter the loggers of those libraries and the root logger's handlers.

    A logger's filters do not see the records of its children (`urllib3` would miss
    `urllib3.connectionpool`), and a library may create loggers late; a handler's
    filters see every record it writes, whichever logger made it.
    """
    with _installing:
        names = [name for name in logging.root.manager.loggerDict if _watched(name)]
        loggers = [logging.getLogger(name) for name in [*_LOGGER_PREFIXES, *names]]
        for filterer in [*loggers, *logging.root.handlers]:
            if _redactor not in filterer.filters:
                filterer.addFilter(_redactor)


def _watched(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _LOGGER_PREFIXES)


@contextmanager
def _hiding(secrets: Sequence[str]) -> Iterator[None]:
    _install_redactor()  # after apprise is imported, so its loggers exist
    _redactor.add(secrets)
    try:
        yield
    finally:
        _redactor.remove(secrets)
