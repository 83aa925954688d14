"""clerk-notify: notifications through apprise (chat webhooks, email, desktop...).

Adds the `notify` action for rules and sends every alert (`alerts:` in config.yaml) to
the configured `alert_urls`. Settings: `plugins.settings.notify` (see settings.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clerk.plugins.api import hookimpl
from clerk_notify.action import Notify
from clerk_notify.send import Message, NotifyError, send
from clerk_notify.settings import NotifySettings, current, parse_settings, use

if TYPE_CHECKING:
    from collections.abc import Callable

    from clerk.engine.alerts import Alert

__version__ = "0.1.0"

log = logging.getLogger("clerk_notify")


@hookimpl
def configure(settings: Mapping[str, Any]) -> None:
    use(parse_settings(settings))


@hookimpl
def register_actions(register: Callable[[str, type[Notify]], None]) -> None:
    register("notify", Notify)


@hookimpl
def alert(alert: Alert) -> None:
    """Send the alert to `alert_urls`; nothing to do when none are configured."""
    settings = current()
    if not settings.alert_urls:
        log.debug("alert %s: no alert_urls configured, not sent", alert.name)
        return
    message = Message(body=alert.message, title=f"clerk alert: {alert.name}", notify_type="warning")
    send(settings.alert_urls, message, settings.timeout)


__all__ = [
    "Message",
    "Notify",
    "NotifyError",
    "NotifySettings",
    "__version__",
    "alert",
    "configure",
    "register_actions",
    "send",
]
