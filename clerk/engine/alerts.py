"""Alerts: conditions on run metrics, checked when a run ends.

    alerts:
      - "duration > 2h"                   # a run that took longer
      - "failure_rate > 0.2 over 10m"     # of the runs that ended in the last 10 minutes
      - {when: "queue_depth > 1000", workflow: ocr, name: ocr-backlog}

`duration` is checked against the run that just ended; `failure_rate` (FAILED / ended)
and `queue_depth` (runs waiting: PENDING or PAUSED) over the store, optionally for one
workflow. A firing alert is logged, stored in the `events` table (kind `alert`) and
passed to the `alert` hook; a windowed alert does not fire again within its window.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from clerk.engine.runs import RunInfo, RunStore
from clerk.errors import SpecError
from clerk.store.events import fired_since, latest_events, record_event
from clerk.units import Comparison, parse_comparison, parse_duration

log = logging.getLogger("clerk.engine.alerts")

ALERT = "alert"  # the kind of an alert's row in the events timeline

METRICS = ("duration", "failure_rate", "queue_depth")
_CONDITION = re.compile(r"^\s*(\w+)\s*(.+?)(?:\s+over\s+(\S+))?\s*$")


@dataclass(frozen=True)
class AlertRule:
    name: str
    metric: str
    comparison: Comparison
    window: float | None = None  # seconds, for failure_rate
    workflow: str | None = None
    text: str = ""


@dataclass
class Alert:
    """A rule that fired: what was measured, against what, and where."""

    name: str
    condition: str
    value: float
    threshold: float
    workflow: str | None = None
    run_id: int | None = None
    ts: float = field(default_factory=time.time)

    @property
    def message(self) -> str:
        where = f" (run {self.run_id})" if self.run_id else ""
        what = f"{self.workflow}: " if self.workflow else ""
        return f"alert {self.name}: {what}{self.condition}; measured {self.value:g}{where}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "message": self.message}


def parse_rule(raw: Any) -> AlertRule:
    """A condition string, or `{when: CONDITION, workflow: NAME, name: NAME}`."""
    workflow = name = None
    if isinstance(raw, dict):
        workflow, name, raw = raw.get("workflow"), raw.get("name"), raw.get("when")
    if not isinstance(raw, str):
        raise SpecError(f"an alert is a condition like 'duration > 2h', got {raw!r}")
    m = _CONDITION.match(raw)
    if not m or m.group(1) not in METRICS:
        raise SpecError(f"alert {raw!r}: wants METRIC OP VALUE [over WINDOW], METRIC one of"
                        f" {', '.join(METRICS)}")  # fmt: skip
    metric, comparison_text, window = m.group(1), m.group(2), m.group(3)
    value_parser = parse_duration if metric == "duration" else float
    comparison = parse_comparison(comparison_text, value_parser, default_op=">")
    if metric == "failure_rate" and window is None:
        window = "1h"
    return AlertRule(name or metric, metric, comparison,
                     parse_duration(window) if window else None, workflow, raw.strip())  # fmt: skip


class AlertChecker:
    def __init__(self, store: RunStore, rules: list[AlertRule], hooks: Any = None):
        self.store = store
        self.rules = rules
        self.hooks = hooks

    def run_finished(
        self, run: RunInfo, defer: Callable[[Callable[[], None]], None] | None = None
    ) -> list[Alert]:
        """Check every rule after `run` ended; fire and return those that hold.

        Measured and stored at once (inside the runner's open step, so the figures are
        those of the moment the run ended); `defer`, when given, gets the log line and
        the `alert` hook call to make later (the runner: once the step is committed).
        """
        fired = []
        for rule in self.rules:
            if rule.workflow and rule.workflow != run.workflow:
                continue
            alert = self._evaluate(rule, run)
            if alert is not None:
                self._store(alert)
                notify = functools.partial(self._notify, alert)
                if defer is not None:
                    defer(notify)
                else:
                    notify()
                fired.append(alert)
        return fired

    def _evaluate(self, rule: AlertRule, run: RunInfo) -> Alert | None:
        value: float | None
        if rule.metric == "duration":
            if not (run.started and run.finished):
                return None
            value = run.finished - run.started
            run_id = run.id
        else:
            if self._fired_recently(rule):
                return None
            value = self._measure(rule)
            run_id = None
        if value is None or not rule.comparison.test(value):
            return None
        return Alert(rule.name, rule.text, value, rule.comparison.value, rule.workflow, run_id)

    def _measure(self, rule: AlertRule) -> float | None:
        if rule.metric == "queue_depth":
            return float(self.store.waiting_count(rule.workflow))
        since = time.time() - (rule.window or 3600)
        ended, failed = self.store.ended_since(since, rule.workflow)
        return failed / ended if ended else None

    def _fired_recently(self, rule: AlertRule) -> bool:
        since = time.time() - (rule.window or 0)
        return fired_since(self.store.conn, ALERT, f"alert:{rule.name}", since)

    def _store(self, alert: Alert) -> None:
        with self.store.batch():  # its own transaction, or part of the runner's step
            record_event(self.store.conn, ALERT, f"alert:{alert.name}", alert.as_dict(),
                         file_id=None, ts=alert.ts)  # fmt: skip

    def _notify(self, alert: Alert) -> None:
        log.warning("%s", alert.message)
        if self.hooks is not None and self.hooks.hook.alert.get_hookimpls():
            try:
                self.hooks.hook.alert(alert=alert)
            except Exception:  # a notifier's failure must not break the runner
                log.exception("plugin hook alert failed")


def stored_alerts(store: RunStore, limit: int = 100) -> list[dict[str, Any]]:
    return [json.loads(data) for data in latest_events(store.conn, ALERT, limit)]
