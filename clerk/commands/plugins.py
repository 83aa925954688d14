"""`clerk plugins ...`: list plugins, start a new one (imported only when used)."""

from __future__ import annotations

from typing import Any

import click

from clerk import __version__
from clerk.cli import app
from clerk.output import listing_options, print_rows

# --- plugins --------------------------------------------------------------------------------


@click.group()
def plugins() -> None:
    """Inspect plugins."""


@plugins.command(name="list")
@click.option("--all", "show_all", is_flag=True, help="Include the built-in plugins.")
@click.option("--hook", help="Only plugins implementing this hook.")
@listing_options
@click.pass_context
def plugins_list(
    ctx: click.Context, show_all: bool, hook: str | None, as_json: bool, as_nl: bool
) -> None:
    """List loaded plugins with version, source and hooks (and any that failed)."""
    pm = app(ctx).pm
    rows: list[dict[str, Any]] = [
        {"name": i.name, "version": i.version, "source": i.source, "hooks": i.hooks}
        for i in pm.plugin_infos()
        if (show_all or i.source != "builtin") and (hook is None or hook in i.hooks)
    ]
    if hook is None:
        rows += [{"name": f.name, "version": None, "source": f.source, "hooks": [],
                  "error": f.error} for f in pm.failures]  # fmt: skip
    print_rows(rows, ["name", "version", "source", "hooks", "error"], as_json=as_json,
               as_nl=as_nl)  # fmt: skip


@plugins.command(name="new")
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(file_okay=False), default=".",
              show_default=True, help="Where to create the clerk-NAME directory.")  # fmt: skip
def plugins_new(name: str, parent: str) -> None:
    """Create a plugin package clerk-NAME to start from (filter, classifier, tests)."""
    from pathlib import Path

    from clerk.plugins.scaffold import scaffold

    root = scaffold(name, Path(parent), __version__)
    click.echo(f"created {root}")
    click.echo(f"next: cd {root} && pip install -e '.[test]' && pytest")
