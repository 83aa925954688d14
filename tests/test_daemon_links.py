"""Symlinks that arrive by events are handled as `clerk scan` handles them (issue 12).

In a root with `follow_symlinks: true` the walk follows a link clerk's own user made
(reads the file it leads to, acts on the link) and skips one another user made, with a
message. The daemon's settler judged every path by its lstat and dropped whatever was no
regular file, so a link made in a watched inbox was never handled by its event: only a
reconcile walk met it. Now the settler asks the walk's own decision
(`clerk.rules.walk.followed`).

Two worlds alike, one handled by `clerk scan`, the other by a daemon that sees every
entry arrive (its reconcile interval is an hour): the same ops, the same tree, the same
link refused. With `follow_symlinks: false` every link is skipped by both.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from test_daemon_support import running_daemon, wait_until, write_config

from clerk.daemon.control import request

NOBODY = 65534
RULES = """
roots:
  inbox: {{path: {base}/inbox, settle: 0.2s, follow_symlinks: {follow}}}
  store: {{path: {base}/store, watch: false}}
  dest: {{path: {base}/dest, watch: false}}
rules:
  - name: reports
    in: inbox
    match: [{{content: 'Report (?P<who>\\w+)'}}]
    actions: [{{move: "{base}/dest/{{who}}/{{name}}"}}]
  - name: rest
    in: inbox
    match: [{{extension: txt}}]
    actions: [{{move: "{base}/dest/rest/{{name}}"}}]
"""
#: run as nobody: a link in the shared inbox to a file of theirs
PLANT = "import os, sys; os.symlink(sys.argv[1], sys.argv[2]); print('planted')"


class World:
    """An inbox (shared, mode 1777) and what its links lead to, under `base`; the
    clerk home `home` handles it."""

    def __init__(self, base: Path, home: Path, follow: bool) -> None:
        self.base, self.home, self.follow = base, home, follow
        self.inbox = base / "inbox"
        for name in ("inbox", "store", "dest", "outside", "attacker"):
            (base / name).mkdir()
        self.inbox.chmod(0o1777)
        (base / "store" / "report.txt").write_text("Report ACME\n")  # inside the roots
        (base / "outside" / "notes.txt").write_text("Report OWNCO\n")  # in no root
        (base / "attacker" / "bait.txt").write_text("Report BAIT\n")
        for path in (base / "attacker", base / "attacker" / "bait.txt"):
            os.chown(path, NOBODY, NOBODY)
        (home / "rules.d").mkdir(parents=True, exist_ok=True)
        (home / "rules.d" / "rules.yaml").write_text(
            RULES.format(base=base, follow=str(follow).lower())
        )
        write_config(home, "reconcile_interval: 1h\n")

    def arrive(self, as_nobody: Callable[..., subprocess.CompletedProcess[str]]) -> None:
        """The inbox's entries, made one after the other."""
        (self.inbox / "inside.txt").symlink_to(self.base / "store" / "report.txt")
        (self.inbox / "outside.txt").symlink_to(self.base / "outside" / "notes.txt")
        (self.inbox / "dangling.txt").symlink_to(self.base / "store" / "nothing.txt")
        planted = as_nobody(PLANT, str(self.base / "attacker" / "bait.txt"),
                            str(self.inbox / "bait.txt"))  # fmt: skip
        assert planted.stdout.strip() == "planted", planted.stderr
        (self.inbox / "plain.txt").write_text("Report PLAIN\n")

    def tree(self) -> dict[str, str]:
        """Every entry under the world, relative to it: a link's target, a file's text."""
        found = {}
        for dirpath, dirs, files in os.walk(self.base):
            for name in dirs + files:
                path = Path(dirpath, name)
                where = str(path.relative_to(self.base))
                if path.is_symlink():
                    found[where] = "-> " + os.readlink(path).replace(str(self.base), "BASE")
                elif path.is_file():
                    found[where] = path.read_text()
        return found

    def ops(self) -> list[tuple[str, str, str, str]]:
        db = sqlite_utils.Database(self.home / "clerk.db")
        try:
            rows = db.query("SELECT kind, src, dst, state FROM ops ORDER BY src")
            base = str(self.base)
            return [(r["kind"], r["src"].replace(base, "BASE"),
                     (r["dst"] or "").replace(base, "BASE"), r["state"]) for r in rows]  # fmt: skip
        finally:
            db.close()

    def refused(self, messages: list[str]) -> list[str]:
        """The messages that name an inbox entry, its path relative to the world."""
        inbox = str(self.inbox) + "/"
        return sorted(m.split(inbox, 1)[1] for m in messages if inbox in m)


def clerk(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLERK_HOME": str(home)}
    result = subprocess.run([sys.executable, "-m", "clerk", *args], capture_output=True,
                            text=True, timeout=120, env=env)  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
def bases() -> Iterator[tuple[Path, Path]]:
    """Two worlds in /tmp, where nobody may enter (pytest's tmp dirs are root's alone)."""
    made = [Path(tempfile.mkdtemp(prefix="clerk-links-", dir="/tmp")) for _ in range(2)]
    for path in made:
        path.chmod(0o755)
    try:
        yield made[0], made[1]
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("follow", [True, False], ids=["following", "skipping"])
def test_the_daemon_handles_links_arriving_by_events_as_scan_does(
    bases: tuple[Path, Path],
    clerk_home: Path,
    tmp_path: Path,
    as_nobody: Callable[..., subprocess.CompletedProcess[str]],
    follow: bool,
) -> None:
    scanned = World(bases[0], tmp_path / "scan-home", follow)
    scanned.arrive(as_nobody)
    scan = clerk(scanned.home, "scan")
    errors = [line for line in scan.stderr.splitlines() if line.startswith("error: ")]

    watched = World(bases[1], clerk_home, follow)
    with running_daemon(tmp_path) as (daemon, _):
        watched.arrive(as_nobody)

        def status() -> dict[str, Any]:
            return request(clerk_home / "run" / "clerk.sock", "status")

        def settled() -> bool:
            if not (watched.base / "dest" / "PLAIN" / "plain.txt").exists():
                return False
            if follow and not (watched.base / "dest" / "ACME").exists():
                return False  # the link into the roots, only by its event (no reconcile)
            return status()["queue"] == 0

        try:
            wait_until(settled, what="the inbox handled")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; log:\n{daemon.log()}") from None
        said = [e["error"] for e in status()["last_errors"]]
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    assert "Traceback" not in daemon.log(), daemon.log()

    assert watched.ops() == scanned.ops()
    assert watched.tree() == scanned.tree()
    assert watched.refused(said) == scanned.refused(errors)
    # and what that is: the rules of docs/rules.md
    tree = scanned.tree()
    assert tree["dest/PLAIN/plain.txt"] == "Report PLAIN\n"
    assert tree["inbox/bait.txt"] == "-> BASE/attacker/bait.txt"  # another user's: never
    assert tree["inbox/dangling.txt"] == "-> BASE/store/nothing.txt"
    if follow:  # clerk's own links: read through, moved as links
        assert tree["dest/ACME/inside.txt"] == "-> BASE/store/report.txt"
        assert tree["dest/OWNCO/outside.txt"] == "-> BASE/outside/notes.txt"
        refused = scanned.refused(errors)
        assert len(refused) == 2, errors
        assert refused[0].startswith(
            "bait.txt: cannot read: a symlink uid 65534 made: not followed"
        )
        assert refused[1].startswith("dangling.txt: ")
    else:
        assert tree["inbox/inside.txt"] == "-> BASE/store/report.txt"
        assert tree["inbox/outside.txt"] == "-> BASE/outside/notes.txt"
        assert errors == []
