"""Schedules: rules with `schedule:` (cron) or `every:` run as sweeps over their roots;
workflows with `schedule:` or `every:` start a run.

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

from clerk.rules.model import RuleSet
from clerk.store.schedules import record_first_seen, record_job_run, schedule_rows

log = logging.getLogger("clerk.daemon.schedule")


WORKFLOW_PREFIX = "workflow:"


@dataclass(frozen=True)
class Timed:
    """Something that runs on a timer: a lifecycle rule or a scheduled workflow."""

    key: str  # the job's id, and its row in the `schedules` table
    name: str
    kind: str  # "rule" | "workflow"
    schedule: str | None
    every: float | None


def timed_jobs(ruleset: RuleSet) -> list[Timed]:
    """The enabled lifecycle rules, then the workflows with a schedule."""
    jobs = [Timed(r.name, r.name, "rule", r.schedule, r.every)
            for r in ruleset.rules if r.enabled and r.is_lifecycle]  # fmt: skip
    for name, workflow in scheduled_workflows(ruleset).items():
        jobs.append(Timed(WORKFLOW_PREFIX + name, name, "workflow", workflow.schedule,
                          workflow.every))  # fmt: skip
    return jobs


def scheduled_workflows(ruleset: RuleSet) -> dict[str, Any]:
    from clerk.engine.model import WorkflowError, build_workflow

    tasks = {name: d for name, d in ruleset.workflows.items()
             if isinstance(d, dict) and d.get("kind") == "Task"}  # fmt: skip
    found = {}
    for name, definition in ruleset.workflows.items():
        try:
            workflow = build_workflow(name, definition, tasks)
        except WorkflowError:
            continue  # `clerk check` reports it (and the daemon refuses to start on it)
        if workflow.schedule or workflow.every:
            found[name] = workflow
    return found


@dataclass
class JobInfo:
    name: str
    spec: str
    kind: str = "rule"
    last_run: float | None = None
    last_status: str | None = None
    last_summary: dict[str, Any] | None = None

    def as_dict(self, next_run: float | None) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "schedule": self.spec,
            "last_run": self.last_run,
            "last_status": self.last_status,
            "last_summary": self.last_summary,
            "next_run": next_run,
        }


def spec_of(job: Timed) -> str:
    return f"cron {job.schedule}" if job.schedule else f"every {job.every:g}s"


class Schedules:
    """The timer for lifecycle rules and scheduled workflows. `fire(key)` is called on
    APScheduler's thread."""

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
        """Schedule exactly the timed jobs of the rules; return the keys of those missed
        while the daemon was down."""
        self.scheduler.remove_all_jobs()
        rows = schedule_rows(self.db)
        now = time.time()
        missed: list[str] = []
        self.jobs = {}
        for job in timed_jobs(ruleset):
            row = rows.get(job.key) or record_first_seen(self.db, job.key, spec_of(job), now)
            info = JobInfo(job.name, spec_of(job), job.kind, row.get("last_run"),
                           row.get("last_status"), _json(row.get("last_summary")))  # fmt: skip
            self.jobs[job.key] = info
            base = row.get("last_run") or row.get("first_seen") or now
            overdue = self._overdue(job, base, now)
            if overdue:
                missed.append(job.key)
            self.scheduler.add_job(
                self.fire, self._trigger(job, base, now, overdue), args=[job.key],
                id=job.key, name=job.key, replace_existing=True,
            )  # fmt: skip
        if not self._started:
            self.scheduler.start()
            self._started = True
        return missed

    def _trigger(self, rule: Timed, base: float, now: float, overdue: bool) -> BaseTrigger:
        if rule.schedule:
            return CronTrigger.from_crontab(rule.schedule, timezone=self.scheduler.timezone)
        assert rule.every is not None
        # the next tick one interval after the last run (or after the catch-up run now)
        start = (now if overdue else base) + rule.every
        return IntervalTrigger(seconds=rule.every, start_date=self._dt(max(start, now)),
                               timezone=self.scheduler.timezone)  # fmt: skip

    def _overdue(self, rule: Timed, base: float, now: float) -> bool:
        if rule.every is not None:
            return now - base >= rule.every
        assert rule.schedule is not None
        trigger = CronTrigger.from_crontab(rule.schedule, timezone=self.scheduler.timezone)
        after = self._dt(base) + timedelta(microseconds=1000)
        upcoming = trigger.get_next_fire_time(None, after)
        return upcoming is not None and upcoming.timestamp() <= now

    def _dt(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, tz=self.scheduler.timezone)

    def record(self, name: str, status: str, summary: dict[str, Any], when: float) -> None:
        """Called on the worker thread after a sweep."""
        info = self.jobs.get(name)
        if info is not None:
            info.last_run, info.last_status, info.last_summary = when, status, summary
        record_job_run(self.db, name, info.spec if info else None, when, status, summary)

    def listing(self) -> list[dict[str, Any]]:
        """Jobs with their next run (safe from any thread: plain values, APScheduler locks)."""
        out = []
        for key, info in sorted(self.jobs.items()):
            job = self.scheduler.get_job(key) if self._started else None
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
    rows = schedule_rows(db)
    out = []
    for job in timed_jobs(ruleset):
        row = rows.get(job.key, {})
        info = JobInfo(job.name, spec_of(job), job.kind, row.get("last_run"),
                       row.get("last_status"), _json(row.get("last_summary")))  # fmt: skip
        out.append(info.as_dict(None))
    return out
