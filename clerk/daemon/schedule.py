"""Lifecycle schedules: rules with `schedule:` (cron) or `every:` run as sweeps.

APScheduler 3 (BackgroundScheduler, memory job store) is only the timer: the rule files
say which jobs exist (re-read on reload), the store's `schedules` table says when each
last ran. A job's tick only posts a request to the daemon's worker thread, which runs
the sweep through the same engine as everything else. A run missed while the daemon was
down (the next fire time after the last run is already past) runs once at start.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlite_utils import Database

from clerk.rules.model import Rule, RuleSet

log = logging.getLogger("clerk.daemon.schedule")


@dataclass
class JobInfo:
    name: str
    spec: str
    last_run: float | None = None
    last_status: str | None = None
    last_summary: dict[str, Any] | None = None

    def as_dict(self, next_run: float | None) -> dict[str, Any]:
        return {
            "name": self.name,
            "schedule": self.spec,
            "last_run": self.last_run,
            "last_status": self.last_status,
            "last_summary": self.last_summary,
            "next_run": next_run,
        }


def spec_of(rule: Rule) -> str:
    return f"cron {rule.schedule}" if rule.schedule else f"every {rule.every:g}s"


class Schedules:
    """The timer for lifecycle rules. `fire(name)` is called on APScheduler's thread."""

    def __init__(self, db: Database, fire: Callable[[str], None]):
        self.db = db
        self.fire = fire
        self.jobs: dict[str, JobInfo] = {}
        self.scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(1)},
            # a tick missed (machine asleep, worker busy) fires once, late, not N times
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._started = False

    def sync(self, ruleset: RuleSet) -> list[str]:
        """Schedule exactly the enabled lifecycle rules; return the ones missed while down."""
        self.scheduler.remove_all_jobs()
        rows = self._rows()
        now = time.time()
        missed: list[str] = []
        self.jobs = {}
        for rule in ruleset.rules:
            if not rule.enabled or not rule.is_lifecycle:
                continue
            row = rows.get(rule.name) or self._first_seen(rule, now)
            info = JobInfo(rule.name, spec_of(rule), row.get("last_run"), row.get("last_status"),
                           _json(row.get("last_summary")))  # fmt: skip
            self.jobs[rule.name] = info
            base = row.get("last_run") or row.get("first_seen") or now
            overdue = self._overdue(rule, base, now)
            if overdue:
                missed.append(rule.name)
            self.scheduler.add_job(
                self.fire, self._trigger(rule, base, now, overdue), args=[rule.name],
                id=rule.name, name=rule.name, replace_existing=True,
            )  # fmt: skip
        if not self._started:
            self.scheduler.start()
            self._started = True
        return missed

    def _trigger(self, rule: Rule, base: float, now: float, overdue: bool) -> BaseTrigger:
        if rule.schedule:
            return CronTrigger.from_crontab(rule.schedule, timezone=self.scheduler.timezone)
        assert rule.every is not None
        # the next tick one interval after the last run (or after the catch-up run now)
        start = (now if overdue else base) + rule.every
        return IntervalTrigger(seconds=rule.every, start_date=self._dt(max(start, now)),
                               timezone=self.scheduler.timezone)  # fmt: skip

    def _overdue(self, rule: Rule, base: float, now: float) -> bool:
        if rule.every is not None:
            return now - base >= rule.every
        assert rule.schedule is not None
        trigger = CronTrigger.from_crontab(rule.schedule, timezone=self.scheduler.timezone)
        after = self._dt(base) + timedelta(microseconds=1000)
        upcoming = trigger.get_next_fire_time(None, after)
        return upcoming is not None and upcoming.timestamp() <= now

    def _dt(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, tz=self.scheduler.timezone)

    def _rows(self) -> dict[str, dict[str, Any]]:
        return {row["name"]: row for row in self.db.query("SELECT * FROM schedules")}

    def _first_seen(self, rule: Rule, now: float) -> dict[str, Any]:
        row = {"name": rule.name, "spec": spec_of(rule), "first_seen": now}
        with self.db.atomic():
            self.db.table("schedules").insert(row, pk="name", replace=True)
        return row

    def record(self, name: str, status: str, summary: dict[str, Any], when: float) -> None:
        """Called on the worker thread after a sweep."""
        info = self.jobs.get(name)
        if info is not None:
            info.last_run, info.last_status, info.last_summary = when, status, summary
        with self.db.atomic():
            self.db.table("schedules").upsert(
                {"name": name, "spec": info.spec if info else None, "last_run": when,
                 "last_status": status, "last_summary": json.dumps(summary)},
                pk="name",
            )  # fmt: skip

    def listing(self) -> list[dict[str, Any]]:
        """Jobs with their next run (safe from any thread: plain values, APScheduler locks)."""
        out = []
        for name, info in sorted(self.jobs.items()):
            job = self.scheduler.get_job(name) if self._started else None
            when = job.next_run_time.timestamp() if job and job.next_run_time else None
            out.append(info.as_dict(when))
        return out

    def shutdown(self) -> None:
        if self._started:
            self.scheduler.shutdown(wait=False)
            self._started = False


def _json(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def stored_jobs(db: Database, ruleset: RuleSet) -> list[dict[str, Any]]:
    """For `clerk jobs list` while the daemon is down: the rules plus the store's record."""
    rows = {}
    if "schedules" in db.table_names():
        rows = {row["name"]: row for row in db.query("SELECT * FROM schedules")}
    out = []
    for rule in ruleset.rules:
        if not rule.is_lifecycle or not rule.enabled:
            continue
        row = rows.get(rule.name, {})
        info = JobInfo(rule.name, spec_of(rule), row.get("last_run"), row.get("last_status"),
                       _json(row.get("last_summary")))  # fmt: skip
        out.append(info.as_dict(None))
    return out
