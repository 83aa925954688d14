"""The `notify` action: send a templated message about the file through apprise.

- notify: "New scan: {name} in {dir}"
  title: "clerk: {root}"                # optional, templated
  url: "${env:SLACK_URL}"               # optional: one URL or a list; default: settings
  format: markdown                      # text (default) | markdown | html
  type: warning                         # info (default) | success | warning | failure
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clerk.errors import RenderError
from clerk.plugins.api import EffectAction, SpecError, Target
from clerk.rules.templates import parse_template
from clerk_notify.send import FORMATS, TYPES, Message, send
from clerk_notify.settings import current, url_list
from clerk_notify.urls import display_url

DEFAULT_TITLE = "clerk: {name}"
PREVIEW = 60  # characters of the body shown by describe()


class Notify(EffectAction):
    """`notify: "New scan: {name}"` sends that message to apprise URLs (`url:` or settings)."""

    options = frozenset({"title", "url", "format", "type"})

    def __init__(self, value: Any, options: Mapping[str, Any] | None = None):
        super().__init__(value, options)
        self.body = _template(value, "notify", "a message, like 'New scan: {name}'")
        self.title = _template(self.opts.get("title", DEFAULT_TITLE), "notify title", "a title")
        # None: the configured `urls`, looked up when sending (settings may be reloaded)
        self.urls = url_list(self.opts["url"], "url") if "url" in self.opts else None
        if self.urls == ():
            raise SpecError(
                "notify url: an empty list sends nowhere; leave url: out to use the configured urls"
            )
        if self.urls is None and not current().urls:
            raise SpecError(
                "notify needs a destination: url: 'json://host/path' (or a secret reference"
                " like '${env:SLACK_URL}'), or plugins.settings.notify.urls in config.yaml"
            )
        self.body_format = _choice(self.opts.get("format", "text"), "format", FORMATS)
        self.notify_type = _choice(self.opts.get("type", "info"), "type", TYPES)

    def templates(self) -> list[str]:
        return [self.body, self.title]

    def destinations(self) -> tuple[str, ...]:
        return self.urls if self.urls is not None else current().urls

    def message(self, target: Target) -> Message:
        return Message(
            body=target.render(self.body),
            title=target.render(self.title),
            body_format=self.body_format,
            notify_type=self.notify_type,
        )

    def describe(self, target: Target) -> str:
        body = target.render(self.body)
        if len(body) > PREVIEW:
            body = body[: PREVIEW - 1] + "…"
        where = ", ".join(display_url(url) for url in self.destinations()) or "nowhere"
        return f"notify {where}: {body!r}"

    def apply(self, target: Target) -> str | None:
        urls = self.destinations()
        send(urls, self.message(target), current().timeout)
        return f"notified {', '.join(display_url(url) for url in urls)}"


def _template(value: Any, what: str, example: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{what} wants {example}, got {value!r}")
    try:
        parse_template(value)
    except RenderError as exc:
        raise SpecError(f"{what}: {exc}") from None
    return value


def _choice(value: Any, what: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SpecError(f"notify {what} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)
