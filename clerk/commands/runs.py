"""`clerk run WORKFLOW` and the `clerk runs` group. Thin: the engine modules do the work."""

from __future__ import annotations

import time
from typing import Any

import click

from clerk.cli import app
from clerk.errors import ClerkError
from clerk.output import (
    Seconds,
    json_option,
    listing_options,
    print_json,
    print_rows,
    printable,
    with_times,
)
from clerk.units import format_duration, format_time


@click.command()
@click.argument("workflow")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False),
              help="Input file: its path, name, stem, dir... become template fields.")  # fmt: skip
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A template field for the run (repeatable).")  # fmt: skip
@click.option("--wait", is_flag=True, help="Execute in the foreground until the run ends.")
@json_option
@click.pass_context
def run(
    ctx: click.Context,
    workflow: str,
    file: str | None,
    params: tuple[str, ...],
    wait: bool,
    as_json: bool,
) -> None:
    """Start a run of WORKFLOW.

    Without --wait the run is queued, a detached worker executes it, and its id is
    printed; see it with `clerk runs show ID`. With --wait the exit code says how it
    ended: 0 COMPLETED, 1 FAILED or CANCELLED.
    """
    from clerk.engine.runs import COMPLETED, RunStore
    from clerk.engine.service import create_run, ensure_worker, make_runner, parse_params

    a = app(ctx)
    run_id = create_run(a, workflow, file=file, params=parse_params(params), claim=wait)
    if not wait:
        ensure_worker(a)
        if as_json:
            print_json({"run": run_id, "status": "PENDING"})
        else:
            click.echo(f"run {run_id} queued; see: clerk runs show {run_id}")
        return
    status = make_runner(a).execute([run_id])[run_id]
    store = RunStore(a.store)
    if as_json:
        print_json(_run_details(store, run_id))
    else:
        _print_tasks(store, run_id)
        info = store.run(run_id)
        error = f": {info.error}" if info and info.error else ""
        click.echo(f"run {run_id} {status}{error}")
    if status != COMPLETED:
        ctx.exit(1)


@click.group()
def runs() -> None:
    """Inspect and control workflow runs."""


@runs.command(name="list")
@click.option("--status", type=click.Choice(
    ["pending", "running", "paused", "completed", "failed", "cancelled"], case_sensitive=False),
    help="Only runs with this status.")  # fmt: skip
@click.option("--workflow", help="Only runs of this workflow.")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many.")
@listing_options
@click.pass_context
def runs_list(ctx: click.Context, status: str | None, workflow: str | None, limit: int,
              as_json: bool, as_nl: bool) -> None:  # fmt: skip
    """List runs, newest first."""
    store = _reader(ctx)
    rows = [_run_row(r) for r in store.runs(status=status, workflow=workflow, limit=limit)]
    print_rows(rows, ["id", "workflow", "status", "trigger", "created", "duration", "error"],
               as_json=as_json, as_nl=as_nl)  # fmt: skip


@runs.command(name="show")
@click.argument("run_id", type=int)
@json_option
@click.pass_context
def runs_show(ctx: click.Context, run_id: int, as_json: bool) -> None:
    """Show a run: its tasks, resource usage, errors and timeline."""
    store = _reader(ctx)
    details = _run_details(store, run_id)
    if as_json:
        print_json(details)
        return
    head, progress = details["run"], details["progress"]
    eta = f", ETA {_eta(progress['eta'])}" if progress["eta"] is not None else ""
    click.echo(f"run {head['id']}: {head['workflow']} {head['status']}"
               f" (trigger {head['trigger']}, created {format_time(head['created'])})")  # fmt: skip
    click.echo(f"progress: {progress['done']}/{progress['total']} tasks,"
               f" {format_duration(progress['elapsed'])}{eta}")  # fmt: skip
    if head["error"]:
        click.echo(f"error: {head['error']}")
    _print_tasks(store, run_id)
    click.echo("timeline:")
    for event in details["events"]:
        task = f" {event['task']}" if event["task"] else ""
        data = " ".join(f"{k}={v}" for k, v in event["data"].items())
        click.echo(f"  {format_time(event['ts'])} {event['kind']}{task} {printable(data)}".rstrip())


@runs.command(name="stats")
@click.option("--since", help="Only runs created within this long (e.g. 24h, 7d).")
@listing_options
@click.pass_context
def runs_stats(ctx: click.Context, since: str | None, as_json: bool, as_nl: bool) -> None:
    """Per workflow: runs, success and error rates, throughput, p50/p95 durations."""
    from clerk.engine.stats import workflow_stats
    from clerk.units import parse_duration

    cutoff = time.time() - parse_duration(since) if since else None
    rows = [{**row, "p50": _seconds(row["p50"]), "p95": _seconds(row["p95"])}
            for row in workflow_stats(_reader(ctx), cutoff)]  # fmt: skip
    print_rows(rows, ["workflow", "runs", "active", "completed", "failed", "cancelled",
                      "success_rate", "error_rate", "throughput_per_min", "p50", "p95"],
               as_json=as_json, as_nl=as_nl)  # fmt: skip


@runs.command(name="follow")
@click.argument("run_id", type=int)
@click.option("--interval", type=float, default=0.5, show_default=True,
              help="Seconds between looks at the run.")  # fmt: skip
@click.pass_context
def runs_follow(ctx: click.Context, run_id: int, interval: float) -> None:
    """Show a run's progress (tasks done, ETA) until it ends; exit 1 unless COMPLETED."""
    import sys

    from clerk.engine.runs import COMPLETED
    from clerk.engine.stats import run_progress

    store = _reader(ctx)
    if store.run(run_id) is None:
        raise ClerkError(f"no run {run_id} (see `clerk runs list`)")
    state = _follow_bar(store, run_id, interval) if sys.stderr.isatty() else None
    if state is None:
        state = _follow_lines(store, run_id, interval)
    final = run_progress(store, run_id)
    click.echo(f"run {run_id} {state}: {final['done']}/{final['total']} tasks in"
               f" {format_duration(final['elapsed'])}")  # fmt: skip
    if state != COMPLETED:
        ctx.exit(1)


def _follow_lines(store: Any, run_id: int, interval: float) -> str:
    """Without a terminal: a line each time the progress changes."""
    from clerk.engine.runs import FINISHED
    from clerk.engine.stats import run_progress

    last = None
    while True:
        progress = run_progress(store, run_id)
        line = f"{progress['status']} {progress['done']}/{progress['total']}"
        if line != last:
            eta = f", ETA {_eta(progress['eta'])}" if progress["eta"] is not None else ""
            click.echo(f"{line} tasks{eta}")
            last = line
        if progress["status"] in FINISHED:
            return str(progress["status"])
        time.sleep(interval)


def _follow_bar(store: Any, run_id: int, interval: float) -> str:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from clerk.engine.runs import FINISHED
    from clerk.engine.stats import run_progress

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[eta]}"))  # fmt: skip
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"run {run_id}", total=None, eta="")
        while True:
            progress = run_progress(store, run_id)
            eta = f"ETA {_eta(progress['eta'])}" if progress["eta"] is not None else ""
            bar.update(task, completed=progress["done"], total=progress["total"],
                       description=f"run {run_id} {progress['status']}", eta=eta)  # fmt: skip
            if progress["status"] in FINISHED:
                return str(progress["status"])
            time.sleep(interval)


@runs.command(name="cancel")
@click.argument("run_id", type=int)
@click.pass_context
def runs_cancel(ctx: click.Context, run_id: int) -> None:
    """Cancel a run: no task starts any more, running ones are killed (whole process
    groups), and the run ends CANCELLED."""
    from clerk.engine.control import cancel

    click.echo(f"run {run_id} {cancel(app(ctx), run_id)}")


@runs.command(name="pause")
@click.argument("run_id", type=int)
@click.pass_context
def runs_pause(ctx: click.Context, run_id: int) -> None:
    """Pause a run: no new task starts; running tasks finish. `clerk runs resume` goes on."""
    from clerk.engine.control import pause

    click.echo(f"run {run_id} {pause(app(ctx), run_id)}")


@runs.command(name="resume")
@click.argument("run_id", type=int)
@click.pass_context
def runs_resume(ctx: click.Context, run_id: int) -> None:
    """Resume a paused run (a background worker takes it on if nobody executes it)."""
    from clerk.engine.control import resume

    click.echo(f"run {run_id} {resume(app(ctx), run_id)}")


@runs.command(name="retry")
@click.argument("run_id", type=int)
@click.option("--wait", is_flag=True, help="Execute in the foreground until the run ends.")
@click.pass_context
def runs_retry(ctx: click.Context, run_id: int, wait: bool) -> None:
    """Run a FAILED or CANCELLED run again: its tasks that did not complete start afresh,
    completed ones are not run again."""
    from clerk.engine.control import retry
    from clerk.engine.runs import COMPLETED
    from clerk.engine.service import ensure_worker, make_runner

    a = app(ctx)
    retry(a, run_id, claim=wait)
    if not wait:
        ensure_worker(a)
        click.echo(f"run {run_id} queued again")
        return
    status = make_runner(a).execute([run_id])[run_id]
    click.echo(f"run {run_id} {status}")
    if status != COMPLETED:
        ctx.exit(1)


@runs.command(name="logs")
@click.argument("run_id", type=int)
@click.argument("task", required=False)
@click.option("--stderr", "stream", flag_value="stderr", help="Only standard error.")
@click.option("--stdout", "stream", flag_value="stdout", help="Only standard output.")
@click.pass_context
def runs_logs(ctx: click.Context, run_id: int, task: str | None, stream: str | None) -> None:
    """Print the captured output of a run's tasks (the latest attempt of each)."""
    store = _reader(ctx)
    if store.run(run_id) is None:
        raise ClerkError(f"no run {run_id} (see `clerk runs list`)")
    tasks = store.tasks(run_id)
    if task is not None:
        tasks = [t for t in tasks if t.task == task]
        if not tasks:
            raise ClerkError(f"run {run_id} has no task {task!r}")
    for info in tasks:
        for name, path in (("stdout", info.stdout_log), ("stderr", info.stderr_log)):
            if path is None or (stream and stream != name):
                continue
            _print_log(f"{info.task} attempt {info.attempt} {name}", path)


def _reader(ctx: click.Context) -> Any:
    """A RunStore for reading; migrates first if the store predates the runs tables."""
    from clerk.engine.runs import RunStore
    from clerk.store.runs import has_run_tables

    a = app(ctx)
    db = a.db(readonly=True)
    if not has_run_tables(db):
        db = a.store
    return RunStore(db)


def _print_log(title: str, path: str) -> None:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return
    if not data:
        return
    click.echo(f"==> {title} <==")
    click.echo(data.decode("utf-8", errors="replace"), nl=not data.endswith(b"\n"))


def _run_details(store: Any, run_id: int) -> dict[str, Any]:
    info = store.run(run_id)
    if info is None:
        raise ClerkError(f"no run {run_id} (see `clerk runs list`)")
    from clerk.engine.fields import decode_fields
    from clerk.engine.stats import run_progress

    return with_times({
        "run": {**info.as_dict(), "inputs": decode_fields(info.inputs)},
        "progress": run_progress(store, run_id),
        "tasks": [t.as_dict() for t in store.tasks(run_id)],
        "events": store.events(run_id),
    })  # fmt: skip


def _print_tasks(store: Any, run_id: int) -> None:
    rows = []
    for t in store.tasks(run_id):
        cpu = (t.cpu_user or 0) + (t.cpu_sys or 0) if t.cpu_user is not None else None
        rows.append({
            "task": t.task, "status": t.status, "attempt": t.attempt, "exit": t.exit_code,
            "wall": _seconds(t.wall), "cpu": _seconds(cpu), "rss": _mib(t.max_rss),
            "error": f"{t.error_code}: {t.error}" if t.error else None,
        })  # fmt: skip
    print_rows(rows, ["task", "status", "attempt", "exit", "wall", "cpu", "rss", "error"])


def _run_row(info: Any) -> dict[str, Any]:
    end = info.finished or (time.time() if info.started else None)
    duration = end - info.started if info.started and end else None
    return {**with_times(info.as_dict()), "duration": _seconds(duration)}


def _eta(seconds: float) -> str:
    return format_duration(round(seconds))


def _seconds(value: float | None) -> Seconds | None:
    return None if value is None else Seconds(round(value, 3))


def _mib(value: int | None) -> str | None:
    return None if not value else f"{value / 1024 / 1024:.1f}MiB"
