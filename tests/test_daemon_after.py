"""`after:` on a rule (act once a file is unchanged that long) and the rule-loop hop limit,
in `clerk scan`, `clerk explain` and a real daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlite_utils
from test_daemon_support import files_under, running_daemon, wait_until, write_config

from clerk.daemon.control import request

Clerk = Callable[..., subprocess.CompletedProcess[str]]

AFTER_RULES = """\
roots:
  inbox: {{path: {inbox}, settle: 0.2s}}
  archive: {{path: {archive}, watch: false}}
rules:
  - name: stale
    in: inbox
    after: {after}
    match: [{{extension: txt}}]
    actions: [{{move: "{archive}/{{name}}"}}]
"""


@pytest.fixture
def dirs(tmp_path: Path, clerk_home: Path) -> tuple[Path, Path]:
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    inbox.mkdir()
    archive.mkdir()
    write_config(clerk_home, "reconcile_interval: 1h\n")
    return inbox, archive


def _status(clerk_home: Path) -> dict[str, object]:
    return request(clerk_home / "run" / "clerk.sock", "status")


def _moved_at(archive: Path, name: str, timeout: float = 30.0) -> float:
    """The first time (wall clock) the test saw `name` in the archive."""
    wait_until(lambda: (archive / name).exists(), timeout, f"{name} moved")
    return time.time()


def test_scan_and_explain_skip_a_file_changed_too_recently(
    dirs: tuple[Path, Path], write_rules: Callable[[str], Path], clerk: Clerk
) -> None:
    inbox, archive = dirs
    write_rules(AFTER_RULES.format(inbox=inbox, archive=archive, after="10m"))
    (inbox / "fresh.txt").write_text("just written")
    (inbox / "old.txt").write_text("written long ago")
    hour_ago = time.time() - 3600
    os.utime(inbox / "old.txt", (hour_ago, hour_ago))

    explained = clerk("explain", str(inbox / "fresh.txt"), "--json")
    rule = json.loads(explained.stdout)["rules"][0]
    assert rule["status"] == "waiting" and rule["matched"] is None  # scan asks no filter
    assert rule["reason"].startswith("modified ") and rule["reason"].endswith("after: 10m")
    assert rule["wanted"] == 600
    assert "after: 10m" in clerk("explain", str(inbox / "fresh.txt")).stdout

    result = clerk("scan")
    assert result.returncode == 0, result.stderr
    assert files_under(archive) == ["old.txt"]
    assert files_under(inbox) == ["fresh.txt"]


def test_daemon_acts_when_due_not_before_and_a_change_restarts_the_wait(
    dirs: tuple[Path, Path], tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path]
) -> None:
    inbox, archive = dirs
    after = 2.0
    write_rules(AFTER_RULES.format(inbox=inbox, archive=archive, after="2s"))
    with running_daemon(tmp_path):
        (inbox / "a.txt").write_text("one")
        mtime_a = os.stat(inbox / "a.txt").st_mtime
        (inbox / "b.txt").write_text("one")
        # b changes while it waits: its wait starts again from the change
        wait_until(lambda: _status(clerk_home)["waiting"] == 2, what="both files waiting")
        with open(inbox / "b.txt", "a") as handle:
            handle.write(" and two")
        mtime_b = os.stat(inbox / "b.txt").st_mtime
        moved_a = _moved_at(archive, "a.txt")
        moved_b = _moved_at(archive, "b.txt")
        assert moved_a >= mtime_a + after
        assert moved_b >= mtime_b + after
        assert (archive / "b.txt").read_text() == "one and two"
        assert _status(clerk_home)["waiting"] == 0


def test_a_wait_survives_a_restart(
    dirs: tuple[Path, Path], tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path]
) -> None:
    inbox, archive = dirs
    write_rules(AFTER_RULES.format(inbox=inbox, archive=archive, after="3s"))
    with running_daemon(tmp_path) as (daemon, _):
        (inbox / "late.txt").write_text("waits")
        wait_until(lambda: _status(clerk_home)["waiting"] == 1, what="late.txt waiting")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    due = os.stat(inbox / "late.txt").st_mtime + 3
    assert files_under(archive) == []
    wait_until(lambda: time.time() > due + 0.5, what="the wait to be over while down")
    # the catalog knows late.txt unchanged: only the recorded wait makes it due now
    with running_daemon(tmp_path):
        _moved_at(archive, "late.txt")


LOOP_RULES = """\
roots:
  inbox: {{path: {inbox}, settle: 0.2s}}
  other: {{path: {other}, settle: 0.2s}}
rules:
  - name: there
    in: inbox
    match: [{{extension: txt}}]
    actions: [{{move: "{other}/{{name}}"}}]
  - name: back
    in: other
    match: [{{extension: txt}}]
    actions: [{{move: "{inbox}/{{name}}"}}]
"""


def test_a_rule_loop_stops_after_the_hop_limit(
    tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path], clerk: Clerk
) -> None:
    from clerk.daemon.followups import MAX_HOPS

    inbox, other = tmp_path / "inbox", tmp_path / "other"
    inbox.mkdir()
    other.mkdir()
    write_rules(LOOP_RULES.format(inbox=inbox, other=other))
    write_config(clerk_home, "reconcile_interval: 1h\n")
    with running_daemon(tmp_path) as (daemon, _):
        (inbox / "pingpong.txt").write_text("round and round")

        def stopped() -> dict[str, object] | None:
            status = _status(clerk_home)
            return status if status["hop_limited"] == 1 else None

        status = wait_until(stopped, what="the loop to be stopped")
        assert isinstance(status, dict)
        errors = [e for e in status["last_errors"] if e["where"] == "hops"]
        assert len(errors) == 1 and "pingpong.txt" in errors[0]["error"]
        # it stays stopped: no more moves once the limit is hit
        db = sqlite_utils.Database(clerk_home / "clerk.db")
        try:
            moves = db.execute("SELECT count(*) FROM ops WHERE kind = 'move'").fetchone()[0]
            assert moves == MAX_HOPS + 1
            request(clerk_home / "run" / "clerk.sock", "reconcile")
            assert db.execute("SELECT count(*) FROM ops WHERE kind = 'move'").fetchone()[0] == moves
            file_errors = list(
                db.query("SELECT subject, data FROM events WHERE kind = 'file_error'")
            )
        finally:
            db.close()
        assert len(file_errors) == 1 and "a rule loop?" in str(file_errors[0]["data"])
        assert len(files_under(inbox)) + len(files_under(other)) == 1
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    # the error is the file's: `clerk files show` lists it (it had no file id before)
    left = next(d / "pingpong.txt" for d in (inbox, other) if (d / "pingpong.txt").exists())
    shown = json.loads(clerk("files", "show", str(left), "--json", check=True).stdout)
    assert len(shown["errors"]) == 1 and "a rule loop?" in shown["errors"][0], shown


CHAIN_RULES = """\
roots:
  inbox: {{path: {inbox}, settle: 0.2s}}
  scans: {{path: {scans}, settle: 0.2s}}
  archive: {{path: {archive}, watch: false}}
rules:
  - name: file-scans
    in: inbox
    match: [{{extension: pdf}}]
    actions: [{{move: "{scans}/{{name}}"}}]
  - name: archive-scans
    in: scans
    match: [{{extension: pdf}}]
    actions: [{{move: "{archive}/{{name}}"}}]
"""


def test_a_rule_chain_through_another_watched_root_goes_on_at_once(
    dirs: tuple[Path, Path], tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path]
) -> None:
    inbox, archive = dirs
    scans = tmp_path / "scans"
    scans.mkdir()
    write_rules(CHAIN_RULES.format(inbox=inbox, scans=scans, archive=archive))
    with running_daemon(tmp_path) as (daemon, _):
        (inbox / "invoice.pdf").write_text("%PDF")
        wait_until(lambda: files_under(archive) == ["invoice.pdf"], what="both rules applied")
        assert files_under(scans) == [] and files_under(inbox) == []
        status = _status(clerk_home)
        assert status["hop_limited"] == 0 and status["last_errors"] == []
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
