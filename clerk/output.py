"""Printing for the CLI: one `--json` switch for every listing, tables on a terminal.

rich is imported only when a table or progress bar is drawn, so `clerk --help` and
scripts that use `--json` do not pay for it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def json_option(func: F) -> F:
    """Add `--json` (machine-readable output) to a command."""
    return click.option("--json", "as_json", is_flag=True, help="Output JSON.")(func)


def listing_options(func: F) -> F:
    """Add `--json` and `--nl` (newline-delimited JSON, one object per line)."""
    func = click.option("--nl", "as_nl", is_flag=True, help="Output newline-delimited JSON.")(func)
    return json_option(func)


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):  # datetime, date
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def dumps(value: Any) -> str:
    import json

    # ASCII escapes keep non-UTF-8 names exact: json.loads gives back the surrogate escapes
    return json.dumps(value, default=_default, indent=2, ensure_ascii=True)


def print_json(value: Any) -> None:
    click.echo(dumps(value))


def print_rows(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    as_json: bool = False,
    as_nl: bool = False,
    title: str | None = None,
) -> None:
    """Rows as JSON, newline-delimited JSON, or a table."""
    if as_nl:
        import json

        for row in rows:
            click.echo(json.dumps(row, default=_default, ensure_ascii=True))
        return
    if as_json:
        print_json(list(rows))
        return
    if not rows:
        click.echo("(none)")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    Console(soft_wrap=False).print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | set | tuple):
        return ", ".join(str(v) for v in value)
    return printable(str(value))


def printable(path: str) -> str:
    """A path as text even when its bytes are not UTF-8 (shown with \\x escapes)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@contextmanager
def progress(label: str, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A live counter on stderr when it is a terminal; yields an `advance(n)` callback."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"),
               TextColumn("{task.completed} files"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda n: bar.advance(task, n)


def echo_lines(lines: Iterable[str], err: bool = False) -> None:
    for line in lines:
        click.echo(line, err=err)
