"""`clerk files ...`: query the file catalog (imported only when used)."""

from __future__ import annotations

from typing import Any

import click

from clerk.cli import app
from clerk.errors import ClerkError
from clerk.output import cell, json_option, listing_options, print_json, print_rows, with_times

# --- files ----------------------------------------------------------------------------------


@click.group()
def files() -> None:
    """Query the file catalog."""


@files.command(name="list")
@click.option("--root", help="Only files in this root.")
@click.option("--mime", help="MIME glob, like image/*.")
@click.option("--tag", help="Only files with this tag.")
@click.option("--path", "glob", help="Glob on the path relative to the root.")
@click.option("--all", "show_all", is_flag=True, help="Include files that left their root.")
@click.option("--limit", type=int, default=None, help="At most this many rows.")
@listing_options
@click.pass_context
def files_list(
    ctx: click.Context,
    root: str | None,
    mime: str | None,
    tag: str | None,
    glob: str | None,
    show_all: bool,
    limit: int | None,
    as_json: bool,
    as_nl: bool,
) -> None:
    """List catalogued files."""
    from clerk.store.catalog import Catalog

    catalog = Catalog(app(ctx).db(readonly=True))
    rows = catalog.query(root=root, mime=mime, tag=tag, glob=glob,
                         state=None if show_all else "present", limit=limit)  # fmt: skip
    print_rows([with_times(r.as_dict()) for r in rows], ["id", "root", "relpath", "size", "mime",
               "tags", "state"], as_json=as_json, as_nl=as_nl)  # fmt: skip


def _find_file(ctx: click.Context, spec: str) -> Any:
    import os

    from clerk.store.catalog import Catalog

    a = app(ctx)
    catalog = Catalog(a.db(readonly=True))
    if spec.isdigit():
        row = catalog.by_id(int(spec))
    else:
        located = a.rules().roots.locate(os.path.normpath(os.path.abspath(spec)))
        row = catalog.last_at(located[0].name, located[1]) if located else None
    if row is None:
        raise ClerkError(f"{spec} is not in the catalog (run `clerk scan` first?)")
    return row


@files.command(name="show")
@click.argument("file")
@json_option
@click.pass_context
def files_show(ctx: click.Context, file: str, as_json: bool) -> None:
    """Show what the catalog knows about FILE (a path or a catalog id), and its errors."""
    from clerk.store.events import file_errors

    found = _find_file(ctx, file)
    row = with_times(found.as_dict())
    row["errors"] = [e["error"] for e in file_errors(app(ctx).db(readonly=True), found.id)]
    if as_json:
        print_json(row)
        return
    for key, value in row.items():
        click.echo(f"{key:>9}: {cell(value) if value not in (None, [], {}) else ''}")


@files.command(name="history")
@click.argument("file")
@listing_options
@click.pass_context
def files_history(ctx: click.Context, file: str, as_json: bool, as_nl: bool) -> None:
    """Every operation FILE (a path or a catalog id) went through, oldest first."""
    from clerk.store.journal import history

    row = _find_file(ctx, file)
    ops = with_times(history(app(ctx).db(readonly=True), file_id=row.id))
    print_rows(ops, ["id", "created", "kind", "rule", "src", "dst", "state", "error"],
               as_json=as_json, as_nl=as_nl)  # fmt: skip
