"""Printing for the CLI: one `--json` switch for every listing, tables on a terminal.

rich is imported only when a table or progress bar is drawn, so `clerk --help` and
scripts that use `--json` do not pay for it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import click

from clerk.units import format_duration, format_time, iso_time, moment

F = TypeVar("F", bound=Callable[..., Any])

#: keys whose stored values are times in seconds since the epoch (see `with_times`)
TIME_FIELDS = frozenset({
    "created", "started", "finished", "ts", "next_attempt_at", "last_run", "next_run",
    "first_seen", "last_seen", "last_reconcile", "since",
})  # fmt: skip


class Seconds(float):
    """A duration: a number of seconds in JSON, `1m 30s` (format_duration) in a table."""


def with_times(value: Any) -> Any:
    """A stored document as commands show it: every time (a number under a TIME_FIELDS
    key, seconds since the epoch; `mtime_ns`, shown as `mtime`) becomes a datetime, which
    tables show with `format_time` and JSON with `iso_time`. Nested dicts and lists too."""
    if isinstance(value, list):
        return [with_times(item) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "mtime_ns" and (item is None or isinstance(item, int)):
            out["mtime"] = None if item is None else moment(item / 1e9)
        elif key in TIME_FIELDS and isinstance(item, int | float) and not isinstance(item, bool):
            out[key] = moment(item)
        else:
            out[key] = with_times(item)
    return out


def json_option(func: F) -> F:
    """Add `--json` (machine-readable output) to a command."""
    return click.option("--json", "as_json", is_flag=True, help="Output JSON.")(func)


def listing_options(func: F) -> F:
    """Add `--json` and `--nl` (newline-delimited JSON, one object per line)."""
    func = click.option("--nl", "as_nl", is_flag=True, help="Output newline-delimited JSON.")(func)
    return json_option(func)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_time(value)  # every time in JSON: ISO 8601 with its UTC offset
    if hasattr(value, "isoformat"):  # date
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
        table.add_row(*(cell(row.get(c)) for c in columns))
    Console(soft_wrap=False).print(table)


def cell(value: Any) -> str:
    """A value as text for people: times by `format_time`, durations by `format_duration`."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Seconds):
        return format_duration(value)
    if isinstance(value, list | set | tuple):
        return ", ".join(str(v) for v in value)
    return printable(str(value))


def printable(text: str) -> str:
    """A path, or a message holding paths, as one line of text that is safe to show.

    Bytes that are not UTF-8 are shown as `\\xe9`. Control characters (C0, DEL, C1)
    and the bidirectional overrides are escaped (`\\n`, `\\x1b`, `\\u202e`): a file
    name is anyone's to choose, and shown raw its newline would start a forged line of
    clerk's output or log, its escape sequences drive the terminal, and an override
    make `evil\\u202etxt.exe` read as `evilexe.txt`.
    """
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if _UNPRINTABLE.search(text) is None:
        return text
    return _UNPRINTABLE.sub(_escape, text)


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


class OneLineFormatter(logging.Formatter):
    """Log records whose message is one safe line (`printable`): a name in it can neither
    forge a line of the log nor write bytes the log's stream cannot encode. A
    traceback, added after the message, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


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
