"""Daemon commands: `clerk daemon`, `status`, `reload`, `pause`, `resume`, `stop`.

Thin, in the style of clerk/cli.py; registered lazily there (`register_lazy`).
"""

from __future__ import annotations

import os
from typing import Any

import click

from clerk.errors import ClerkError, ConfigError
from clerk.output import (
    json_option,
    listing_options,
    print_json,
    print_rows,
    printable,
    with_times,
)
from clerk.units import format_duration, format_time


def _app(ctx: click.Context) -> Any:
    from clerk.cli import app

    return app(ctx)


@click.command()
@click.pass_context
def daemon(ctx: click.Context) -> None:
    """Run the daemon in the foreground: watch the roots and apply the rules.

    Refuses to start on the problems `clerk check` reports. Speaks sd_notify
    (systemd Type=notify); SIGHUP reloads the rules, SIGTERM stops.
    """
    import logging

    from clerk.daemon.control import ControlServer
    from clerk.daemon.logs import setup_logging
    from clerk.daemon.service import Daemon

    a = _app(ctx)
    setup_logging(a.config.settings.log_level, ctx.find_root().params.get("verbose") or 0)
    service = Daemon(a)
    server = ControlServer(service, a.config.socket_path)
    server.bind()  # first: a second daemon must not recover or act at all
    try:
        try:
            warnings = service.prepare()
        except ConfigError as exc:
            _print_problems(exc)
            ctx.exit(1)
        for warning in warnings:
            logging.getLogger("clerk.daemon").warning("%s", warning)
        server.start()
        code = service.run()
    finally:
        server.close()
    ctx.exit(code)


def _print_problems(exc: ConfigError) -> None:
    """The same lines as `clerk check`."""
    errors = [p for p in exc.problems if p.severity == "error"]
    for problem in exc.problems:
        click.echo(str(problem))
    click.echo(f"{len(errors)} error{'s' if len(errors) != 1 else ''} found", err=True)


def _request(ctx: click.Context, cmd: str, **args: Any) -> dict[str, Any]:
    from clerk.daemon.control import request

    return request(_app(ctx).config.socket_path, cmd, **args)


@click.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the daemon's state, roots, queue and last errors.

    Exit status: 0 running, 1 degraded, 3 not running.
    """
    from clerk.daemon.control import DaemonNotRunning

    try:
        reply = _request(ctx, "status")
    except DaemonNotRunning as exc:
        if as_json:
            print_json({"ok": False, "state": "DOWN", "error": str(exc)})
        else:
            click.echo(f"DOWN: {exc}")
        ctx.exit(3)
    if as_json:
        print_json(with_times(reply))
    else:
        _print_status(reply)
    if reply.get("state") not in ("READY", "PROCESSING"):
        ctx.exit(1)


def _print_status(reply: dict[str, Any]) -> None:
    state = reply["state"] + (f" ({reply['reason']})" if reply.get("reason") else "")
    click.echo(f"state: {state}{' (paused)' if reply.get('paused') else ''}")
    click.echo(f"pid {reply['pid']}, up {format_duration(reply['uptime'])}")
    click.echo(f"queue: {reply['queue']}, ops/min: {reply['ops_per_minute']}, "
               f"overflows: {reply['overflows']}, reconciles: {reply['reconciles']}")  # fmt: skip
    active = (reply.get("runs") or {}).get("active", 0)
    click.echo(f"waiting (after:): {reply.get('waiting', 0)}, hop-limited: "
               f"{reply.get('hop_limited', 0)}, runs executing: {active}")  # fmt: skip
    for root in reply.get("roots", []):
        click.echo(f"root {root['name']}: {printable(root['path'])} ({root['watch']})")
    for job in reply.get("jobs", []):
        last = format_time(job["last_run"]) or "never"
        next_run = format_time(job["next_run"]) or "-"
        status = f" ({job['last_status']})" if job["last_status"] else ""
        click.echo(f"job {job['name']} ({job['schedule']}): last {last}{status}, next {next_run}")
    for error in reply.get("last_errors", [])[-5:]:
        click.echo(f"error ({error['where']}): {printable(error['error'])}")


def _simple(ctx: click.Context, cmd: str, done: str) -> None:
    reply = _request(ctx, cmd)
    if not reply.get("ok"):
        for problem in reply.get("problems", []):
            click.echo(problem, err=True)
        raise ClerkError(reply.get("error") or f"{cmd} failed")
    click.echo(done)


@click.command()
@click.pass_context
def reload(ctx: click.Context) -> None:
    """Make the daemon re-read its rules (bad rules: it keeps the running ones)."""
    _simple(ctx, "reload", "reloaded")


@click.command()
@click.pass_context
def pause(ctx: click.Context) -> None:
    """Stop acting on files; arrivals are still noticed and wait."""
    _simple(ctx, "pause", "paused")


@click.command()
@click.pass_context
def resume(ctx: click.Context) -> None:
    """Act on files again, starting with those that arrived while paused."""
    _simple(ctx, "resume", "resumed")


@click.command()
@click.pass_context
def stop(ctx: click.Context) -> None:
    """Ask the daemon to finish the batch in flight and exit."""
    _simple(ctx, "stop", "stopping")


@click.group()
def jobs() -> None:
    """Scheduled jobs: rules and workflows with `schedule:` or `every:`.

    A rule's job sweeps the catalog; a workflow's job starts a run on each tick.
    """


@jobs.command(name="list")
@listing_options
@click.pass_context
def jobs_list(ctx: click.Context, as_json: bool, as_nl: bool) -> None:
    """List scheduled jobs with their last and next run (next run only while the daemon runs)."""
    from clerk.daemon.control import DaemonNotRunning

    try:
        rows = _request(ctx, "jobs")["jobs"]
    except DaemonNotRunning:
        from clerk.daemon.schedule import stored_jobs

        a = _app(ctx)
        rows = stored_jobs(a.db(), a.rules())
    print_rows(
        with_times(rows),
        ["name", "kind", "schedule", "last_run", "last_status", "next_run"],
        as_json=as_json,
        as_nl=as_nl,
    )


@jobs.command(name="run")
@click.argument("name")
@json_option
@click.pass_context
def jobs_run(ctx: click.Context, name: str, as_json: bool) -> None:
    """Run job NAME now, in the daemon: a lifecycle rule's sweep, or a scheduled workflow's
    run (without the daemon: `clerk scan --rule NAME`, `clerk run NAME`)."""
    from clerk.daemon.control import DaemonNotRunning

    try:
        reply = _request(ctx, "run_job", name=name, why="manual")
    except DaemonNotRunning as exc:
        raise ClerkError(
            f"{exc}; to run the rule once without it: clerk scan --rule {name}"
        ) from None
    if as_json:
        print_json(reply)
    elif "error" in reply and "done" not in reply:
        raise ClerkError(reply["error"])
    elif reply.get("kind") == "workflow":
        click.echo(f"job {name}: run {reply['run']} started (clerk runs follow {reply['run']})")
    else:
        done = ", ".join(f"{n} {k}" for k, n in sorted(reply["done"].items())) or "nothing"
        click.echo(f"job {name}: {reply['seen']} files seen, {reply['matched']} matched; "
                   f"done: {done}; {reply['failed']} failed ({reply['elapsed']}s)")  # fmt: skip
        for error in reply.get("errors", []):
            click.echo(f"error: {printable(error)}", err=True)
    if not reply.get("ok"):
        ctx.exit(1)


@click.group()
def systemd() -> None:
    """systemd units for the daemon."""


@systemd.command(name="install")
@click.option("--user", "user_unit", is_flag=True, help="A user unit (systemctl --user).")
@click.option("--dest", type=click.Path(file_okay=False), help="Write here instead.")
@click.option("--force", is_flag=True, help="Replace existing files that differ.")
@click.option("--print", "show", is_flag=True, help="Print the unit; write nothing.")
@click.pass_context
def systemd_install(
    ctx: click.Context, user_unit: bool, dest: str | None, force: bool, show: bool
) -> None:
    """Write the unit for the current config: the roots become ReadWritePaths.

    The unit runs the daemon on this config: $CLERK_HOME, --config ($CLERK_CONFIG) and
    the profile in effect are written into it.

    System (default): /etc/systemd/system/clerk.service, hardened, as user `clerk`, plus
    /etc/sysusers.d/clerk.conf. With --user: ~/.config/systemd/user/clerk.service.
    """
    from pathlib import Path

    from clerk.daemon.units import clerk_command, config_environment, unit_files, write_units

    a = _app(ctx)
    files = unit_files(
        user=user_unit,
        command=clerk_command(),
        writable=[] if user_unit else _writable_paths(a),
        dest=Path(dest) if dest else None,
        environment=config_environment(
            home=os.environ.get("CLERK_HOME"),
            config=a.config_file or os.environ.get("CLERK_CONFIG"),
            profile=a.config.profile,
        ),
    )
    if show:
        click.echo(files[0].text, nl=False)
        return
    for path, state in write_units(files, force=force):
        click.echo(f"{state}: {path}")
    if user_unit:
        click.echo("next: systemctl --user daemon-reload && systemctl --user enable --now clerk")
    else:
        click.echo("next: systemd-sysusers && systemctl daemon-reload && "
                   "systemctl enable --now clerk")  # fmt: skip


def _writable_paths(a: Any) -> list[str]:
    """Where the system service must write: the roots, the trash, a store or socket kept
    outside its own state and runtime directories."""
    ruleset = a.rules()
    paths = [root.path for root in ruleset.roots]
    trash = a.config.settings.trash_dir
    if trash:
        paths.append(str(trash))
    own = ("/var/lib/clerk", "/run/clerk", "/var/cache/clerk")
    for extra in (a.config.store_path.parent, a.config.socket_path.parent):
        text = str(extra)
        if not any(text == o or text.startswith(o + "/") for o in own):
            paths.append(text)
    return paths
