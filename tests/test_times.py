"""Times in CLI output: people read local time (`2026-12-04 18:03:12`), JSON carries
ISO 8601 with the UTC offset (`2026-12-04T18:03:12+01:00`), from one pair of formatters
(clerk/units.py), in every command that shows a time."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from clerk.units import format_time, iso_time

HUMAN = re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\b")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
EPOCH = re.compile(r"\b1\d{9}(\.\d+)?\b")  # seconds since 1970, as stored
TZ = "America/New_York"  # an offset that is not +00:00, so a lost offset shows


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", TZ)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_formatter_pair(new_york: None) -> None:
    ts = 1_796_407_392.78  # 2026-12-04 18:03:12.78 UTC
    assert format_time(ts) == "2026-12-04 13:03:12"
    assert iso_time(ts) == "2026-12-04T13:03:12-05:00"
    assert datetime.fromisoformat(iso_time(ts) or "").timestamp() == int(ts)
    aware = datetime(2026, 7, 1, 12, 0, 0, 500000, tzinfo=UTC)  # summer: -04:00
    assert (format_time(aware), iso_time(aware)) == ("2026-07-01 08:00:00",
                                                     "2026-07-01T08:00:00-04:00")  # fmt: skip
    assert (format_time(None), iso_time(None)) == ("", None)


def _times(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every (key, value) in a JSON document whose key names a time."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _times(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from _times(item, key)
    elif key in ("created", "started", "finished", "ts", "mtime", "next_attempt_at",
                 "last_run", "next_run", "now"):  # fmt: skip
        yield key, value


def _iso_only(document: Any) -> list[str]:
    """The keys of the times in `document`; every one of them is ISO 8601 or null."""
    found = []
    for key, value in _times(document):
        assert value is None or (isinstance(value, str) and ISO.match(value)), (key, value)
        found.append(key)
    return found


@pytest.fixture
def history(tmp_path: Path, write_rules: Callable[[str], Path], clerk: Any) -> Path:
    """A file moved by `clerk scan`, which also ran a workflow for it."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").write_text("hello")
    write_rules(f"""
roots: {{inbox: {inbox}}}
rules:
  - name: file
    in: inbox
    match: [{{extension: txt}}]
    actions: [{{move: "{inbox}/done/{{name}}"}}, {{run: w}}]
workflows:
  w:
    tasks:
      - {{name: a, executor: shell, command: [{sys.executable}, -c, "pass"]}}
""")
    clerk("scan", check=True, env={"TZ": TZ})
    clerk("run", "w", "--wait", check=True, env={"TZ": TZ})
    return inbox / "done" / "a.txt"


def _cli(clerk: Any, *args: str) -> str:
    return str(clerk(*args, check=True, env={"TZ": TZ, "COLUMNS": "300"}).stdout)


def test_files_show_and_history(history: Path, clerk: Any, new_york: None) -> None:
    for command in (["files", "show", str(history)], ["files", "history", str(history)],
                    ["files", "list"]):  # fmt: skip
        assert not EPOCH.search(_cli(clerk, *command)), command
        assert _iso_only(json.loads(_cli(clerk, *command, "--json"))), command
    shown = _cli(clerk, "files", "show", str(history))
    mtime = datetime.fromtimestamp(history.stat().st_mtime).astimezone()
    assert f"mtime: {format_time(mtime)}" in shown  # not mtime_ns: 1796412391819802873
    ops = _cli(clerk, "files", "history", str(history))
    assert HUMAN.search(ops), ops


def test_runs_list_and_show(history: Path, clerk: Any) -> None:
    runs = json.loads(_cli(clerk, "runs", "list", "--json"))
    assert {"created", "started", "finished"} <= set(_iso_only(runs))  # was: a mix
    assert all(isinstance(run["duration"], float) for run in runs)  # seconds, a number
    shown = json.loads(_cli(clerk, "runs", "show", "1", "--json"))
    assert {"created", "started", "finished", "ts", "now"} <= set(_iso_only(shown))
    assert not EPOCH.search(_cli(clerk, "runs", "list"))
    human = _cli(clerk, "runs", "show", "1")
    assert not EPOCH.search(human) and HUMAN.search(human)


def test_explain_shows_the_modification_time_for_people(
    history: Path, clerk: Any, new_york: None
) -> None:
    mtime = format_time(datetime.fromtimestamp(history.stat().st_mtime).astimezone())
    assert f"modified {mtime}" in _cli(clerk, "explain", str(history))
    explained = json.loads(_cli(clerk, "explain", str(history), "--json"))
    assert _iso_only(explained) == ["mtime"]
