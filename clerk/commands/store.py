"""`clerk db ...`: the store's path, statistics, check and backup (imported when used)."""

from __future__ import annotations

import click

from clerk.cli import app
from clerk.output import json_option, print_json

# --- db -------------------------------------------------------------------------------------


@click.group()
def db() -> None:
    """Look after the SQLite store."""


@db.command(name="path")
@click.pass_context
def db_path(ctx: click.Context) -> None:
    """Print where the store is."""
    click.echo(str(app(ctx).config.store_path))


@db.command(name="stats")
@json_option
@click.pass_context
def db_stats(ctx: click.Context, as_json: bool) -> None:
    """Row counts, file states, journal states and sizes."""
    from clerk.store.maintenance import stats

    data = stats(app(ctx).config.store_path)
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        click.echo(f"{key}: {value}")


@db.command(name="check")
@click.pass_context
def db_check(ctx: click.Context) -> None:
    """Run SQLite's integrity and foreign-key checks; exit 1 on problems."""
    from clerk.store.maintenance import integrity_problems

    problems = integrity_problems(app(ctx).config.store_path)
    for problem in problems:
        click.echo(problem)
    if problems:
        ctx.exit(1)
    click.echo("ok")


@db.command(name="backup")
@click.argument("dest", type=click.Path(dir_okay=False))
@click.pass_context
def db_backup(ctx: click.Context, dest: str) -> None:
    """Copy the store to DEST consistently, even while the daemon writes to it."""
    from clerk.store.maintenance import backup

    pages = backup(app(ctx).config.store_path, dest)
    click.echo(f"backed up {pages} pages to {dest}")
