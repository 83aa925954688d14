"""The `http` executor: send a request to a webhook (urllib; no extra dependency).

    - name: notify
      executor: http
      url: "https://hooks.example.org/clerk"
      method: POST                              # default POST
      headers: {Authorization: "Bearer ${env:HOOK_TOKEN}"}
      body: {file: "{name}", pages: "{tasks.ocr.outputs.pages}"}

`body` is sent as JSON with its strings rendered as templates; without one, the run's
fields and the outputs of its completed tasks are sent. A 2xx answer completes the
task, with outputs `{"status": ..., "body": ...}` (the body parsed as JSON when it is,
else as text, at most 64 KiB). 408, 429 and 5xx answers and network errors are
recoverable (retried per the task's retry policy); other statuses are not. The
request's timeout is the task's `timeout` (default 30s).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from clerk.engine.api import CONFIG, HTTP, TIMEOUT, Executor, TaskContext, TaskResult
from clerk.engine.fields import dump_fields
from clerk.engine.process import CappedLog
from clerk.errors import ClerkError, SpecError

DEFAULT_TIMEOUT = 30.0
MAX_BODY = 64 * 1024
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_RETRYABLE = {408, 429}


class HttpExecutor(Executor):
    keys = ("url", "method", "headers", "body")

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        url = config.get("url")
        if not isinstance(url, str) or not url.strip():
            raise SpecError("an http task needs url: (like https://example.org/hook)", key="url")
        if not url.split("{", 1)[0].startswith(("http://", "https://")) and url[0] != "{":
            raise SpecError(f"url: wants http:// or https://, got {url!r}", key="url")
        method = str(config.get("method", "POST")).upper()
        if method not in METHODS:
            raise SpecError(f"method: wants one of {', '.join(METHODS)}, got {method!r}",
                            key="method")  # fmt: skip
        headers = config.get("headers") or {}
        if not isinstance(headers, dict):
            raise SpecError("headers: wants a mapping", key="headers")
        self.url, self.method = url, method
        self.headers = {str(k): str(v) for k, v in headers.items()}
        self.body = config.get("body")

    def execute(self, context: TaskContext) -> TaskResult:
        try:
            request = self._request(context)
        except (ClerkError, ValueError) as exc:
            return TaskResult(False, error_code=CONFIG, message=str(exc), recoverable=False)
        log = CappedLog(context.stdout_log, context.log_limit, context.secrets)
        try:
            return self._send(request, context, log)
        finally:
            log.close()
            context.stderr_log.touch()

    def _request(self, context: TaskContext) -> urllib.request.Request:
        url = context.render(self.url, escape=_quote)
        if not url.startswith(("http://", "https://")):
            raise ClerkError(f"url rendered to {url!r}, which is not http(s)")
        headers = {k: context.render(v) for k, v in self.headers.items()}
        data = None
        if self.method != "GET":
            body = _render(self.body, context) if self.body is not None else _default(context)
            data = json.dumps(body, default=str).encode()
            headers.setdefault("Content-Type", "application/json")
        # the scheme was checked above: http(s) only, never file:
        return urllib.request.Request(url, data=data, headers=headers, method=self.method)  # noqa: S310

    def _send(self, request: Any, context: TaskContext, log: CappedLog) -> TaskResult:
        timeout = context.timeout or DEFAULT_TIMEOUT
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                status, raw = response.status, response.read(MAX_BODY)
        except urllib.error.HTTPError as exc:
            raw = exc.read(MAX_BODY)
            log.write(raw)
            message = f"{request.method} answered {exc.code} {exc.reason}"
            retryable = exc.code in _RETRYABLE or exc.code >= 500
            return TaskResult(False, exc.code, HTTP, message, retryable)
        except TimeoutError:
            return TaskResult(False, None, TIMEOUT, f"no answer within {timeout:g}s", True)
        except ValueError as exc:  # http.client refuses the URL (InvalidURL)
            return TaskResult(False, None, CONFIG, f"bad request: {exc}", False)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return TaskResult(False, None, HTTP, f"request failed: {reason}", True)
        log.write(raw)
        return TaskResult(True, status, outputs={"status": status, "body": _parse(raw)})


def _quote(value: str) -> str:
    """A field's value inside a URL: every reserved character percent-encoded."""
    return urllib.parse.quote(value, safe="")


def _render(value: Any, context: TaskContext) -> Any:
    if isinstance(value, str):
        return context.render(value)
    if isinstance(value, list):
        return [_render(v, context) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, context) for k, v in value.items()}
    return value


def _default(context: TaskContext) -> dict[str, Any]:
    return {
        "fields": json.loads(dump_fields(context.fields)),
        "tasks": {name: dict(outputs) for name, outputs in context.upstream.items()},
    }


def _parse(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
