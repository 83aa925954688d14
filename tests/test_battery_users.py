"""The fault battery, other users (issue 13): a local user (nobody) who may drop files
into a shared inbox (mode 1777) plants symlinks there: to a file of theirs with the
same bytes as a victim's file, to a private file of clerk's user they cannot read, to a
directory of theirs, and in place of a directory clerk writes into. Rules read content
(`content` with a named group used in the destination, `mime`, `duplicate: true` +
trash), move and copy. Through `clerk scan` and through the daemon, with the root's
`follow_symlinks` off (the default: symlinks are skipped) and on.

It proves no link another user made is ever followed, also where the root follows
symlinks (the kernel's `fs.protected_symlinks` would refuse root that in a sticky
directory only, and is often off): nothing is read through it (no template field, no
MIME type, no duplicate verdict comes from its target, so nothing can be learnt of a
private file, and the victim's file is not trashed as a "duplicate" of the attacker's
twin), no linked directory is walked, nothing is written into one, nothing outside
the roots changes, no destination holds the private content, and each such link is
named in one message. A link clerk's own user made is followed as configured.

Needs root to act as another user; skips with the reason elsewhere (the as_nobody
fixture). The tree lives in a directory of /tmp that nobody may enter (pytest's own
tmp dirs are root's alone).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_battery_unreadable import PDF
from test_daemon_support import running_daemon, wait_until, write_config

NOBODY = 65534
SECRET = b"Invoice SECRETCO: the private figures\n"
SECRET_PDF = PDF
TWIN = b"the victim's only copy of this\n"

# run as nobody: plant the links (argv: inbox, secret dir, attacker dir)
PLANT = r"""
import os, sys
inbox, secret, attacker = sys.argv[1:4]
links = {
    "leak.txt": os.path.join(secret, "secret.txt"),   # a private file: content never read
    "grab.pdf": os.path.join(secret, "secret.pdf"),   # its MIME type neither
    "aaa-twin.txt": os.path.join(attacker, "twin.txt"),  # same bytes as the victim's file
    "bait.txt": os.path.join(attacker, "bait.txt"),
    "drop": os.path.join(attacker, "baitdir"),        # a directory: never walked into
    "sorted": os.path.join(attacker, "sink"),         # where a rule writes: never into it
}
for name, target in links.items():
    os.symlink(target, os.path.join(inbox, name))
print("planted")
"""

RULES = """
roots:
  inbox: {{path: {inbox}, settle: 0.2s, follow_symlinks: {follow}}}
  dest: {{path: {dest}, watch: false}}
rules:
  - name: invoices
    in: inbox
    match: [{{content: 'Invoice (?P<customer>\\w+)'}}]
    actions: [{{move: "{dest}/invoices/{{customer}}/{{name}}"}}]
  - name: pdfs
    in: inbox
    match: [{{mime: application/pdf}}]
    actions: [{{move: "{dest}/pdf/{{name}}"}}]
  - name: twins
    in: inbox
    match: [{{duplicate: true}}]
    actions: [{{trash: {{}}}}]
  - name: logs
    in: inbox
    match: [{{extension: log}}]
    actions: [{{move: "{inbox}/sorted/{{name}}"}}]
  - name: copies
    in: inbox
    match: [{{extension: txt}}]
    actions: [{{copy: "{dest}/copies/{{name}}"}}]
"""


def snapshot(*tops: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under `tops` (not following links): its mode, size and mtime."""
    found = {}
    for top in tops:
        for dirpath, dirs, files in os.walk(top):
            for name in dirs + files:
                st = os.lstat(os.path.join(dirpath, name))
                found[os.path.join(dirpath, name)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return found


class World:
    def __init__(
        self, base: Path, clerk_home: Path, as_nobody: Callable[..., object], follow: bool
    ) -> None:
        self.base, self.home, self.as_nobody, self.follow = base, clerk_home, as_nobody, follow
        self.inbox, self.dest = base / "inbox", base / "dest"
        self.secret, self.attacker = base / "secret", base / "attacker"
        for directory in (self.inbox, self.dest, self.secret, self.attacker):
            directory.mkdir()
        self.inbox.chmod(0o1777)  # a shared drop box
        self.secret.chmod(0o700)
        (self.secret / "secret.txt").write_bytes(SECRET)
        (self.secret / "secret.pdf").write_bytes(SECRET_PDF)
        for path in self.secret.iterdir():
            path.chmod(0o600)
        (self.attacker / "baitdir").mkdir()
        (self.attacker / "sink").mkdir()
        (self.attacker / "twin.txt").write_bytes(TWIN)
        (self.attacker / "bait.txt").write_bytes(b"Invoice BAIT\n")
        (self.attacker / "baitdir" / "inner.txt").write_bytes(b"Invoice INNER\n")
        for dirpath, dirs, files in os.walk(self.attacker):
            for name in [".", *dirs, *files]:
                os.chown(os.path.join(dirpath, name), NOBODY, NOBODY)
        self.victim = self.inbox / "victim.txt"
        self.victim.write_bytes(TWIN)  # the one real copy: a link to a twin is no copy
        (self.inbox / "app.log").write_bytes(b"a log line\n")
        # a link clerk's own user made, to a file of theirs outside the roots
        (base / "own").mkdir()
        (base / "own" / "notes.txt").write_bytes(b"Invoice OWNCO\n")
        (self.inbox / "mine.txt").symlink_to(base / "own" / "notes.txt")
        (clerk_home / "rules.d").mkdir(exist_ok=True)
        (clerk_home / "rules.d" / "rules.yaml").write_text(
            RULES.format(inbox=self.inbox, dest=self.dest, follow=str(follow).lower())
        )
        write_config(clerk_home, f"reconcile_interval: 1h\ntrash_dir: {base / 'trash'}\n")
        self.outside = snapshot(self.secret, self.attacker, base / "own")

    def plant(self) -> None:
        result = self.as_nobody(PLANT, str(self.inbox), str(self.secret), str(self.attacker))
        assert result.stdout.strip() == "planted", result.stderr  # type: ignore[attr-defined]

    def settled(self) -> bool:
        copies = self.dest / "copies"
        if not copies.is_dir() or os.listdir(copies) != ["victim.txt"]:
            return False
        return not self.follow or (self.dest / "invoices" / "OWNCO" / "mine.txt").is_symlink()

    def check(self) -> None:
        outside = snapshot(self.secret, self.attacker, self.base / "own")
        assert outside == self.outside, "written outside the roots"
        assert self.victim.read_bytes() == TWIN, "the victim's file was taken for a duplicate"
        assert not (self.base / "trash").exists() or not list((self.base / "trash").rglob("*"))
        for dirpath, dirs, files in os.walk(self.dest):
            for name in dirs + files:
                path = Path(dirpath, name)
                assert b"SECRETCO" not in os.fsencode(path), f"a private file's content in {path}"
                assert b"BAIT" not in os.fsencode(path) and b"INNER" not in os.fsencode(path)
                if path.is_file() and not path.is_symlink():
                    assert SECRET not in path.read_bytes() and path.read_bytes() != SECRET_PDF
        assert not (self.dest / "pdf").exists(), "a link was judged by its target's MIME type"
        assert sorted(os.listdir(self.dest / "copies")) == ["victim.txt"]
        assert (self.dest / "copies" / "victim.txt").read_bytes() == TWIN
        planted = ["aaa-twin.txt", "bait.txt", "drop", "grab.pdf", "leak.txt", "sorted"]
        for name in planted:
            assert (self.inbox / name).is_symlink(), f"the planted {name} was acted on"
        assert (self.inbox / "app.log").exists(), "moved into a directory a link leads to"
        if self.follow:  # clerk's own link: followed for reading, moved as a link
            mine = self.dest / "invoices" / "OWNCO" / "mine.txt"
            assert os.readlink(mine) == str(self.base / "own" / "notes.txt")
            assert sorted(os.listdir(self.dest / "invoices")) == ["OWNCO"]
        else:
            assert (self.inbox / "mine.txt").is_symlink()
            assert not (self.dest / "invoices").exists()


def clerk(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "clerk", *args], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="clerk-users-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


FOREIGN = ["aaa-twin.txt", "bait.txt", "drop", "grab.pdf", "leak.txt", "sorted"]


@pytest.mark.parametrize("follow", [False, True], ids=["skipping", "following"])
def test_links_another_user_planted_are_never_followed_by_scan(
    base: Path, clerk_home: Path, as_nobody: Callable[..., object], follow: bool
) -> None:
    world = World(base, clerk_home, as_nobody, follow)
    world.plant()
    result = subprocess.run([sys.executable, "-m", "clerk", "scan"], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    refused = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    # app.log would go through the planted `sorted` link: refused, whatever the setting
    assert [line for line in refused if "app.log" in line and "outside" in line], refused
    if follow:  # each link another user made: named once, not followed
        for name in FOREIGN:
            said = [line for line in refused if f"/inbox/{name}:" in line]
            assert len(said) == 1 and "uid 65534" in said[0], (name, refused)
    assert len(refused) == 1 + (len(FOREIGN) if follow else 0), refused
    assert world.settled(), result.stdout + result.stderr
    world.check()


@pytest.mark.parametrize("follow", [False, True], ids=["skipping", "following"])
def test_links_another_user_planted_are_never_followed_by_the_daemon(
    base: Path, clerk_home: Path, as_nobody: Callable[..., object], tmp_path: Path, follow: bool
) -> None:
    world = World(base, clerk_home, as_nobody, follow)
    (world.inbox / "app.log").unlink()  # comes later, once the daemon runs
    world.plant()  # while the daemon was down: its start-up reconcile walks them
    with running_daemon(tmp_path) as (daemon, _):
        (world.inbox / "app.log").write_bytes(b"a log line\n")
        wait_until(world.settled, what="the victim's file copied")
        wait_until(lambda: "app.log" in json.dumps(json.loads(clerk("status", "--json"))),
                   what="the refused move reported")  # fmt: skip
        world.check()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    assert "Traceback" not in daemon.log(), daemon.log()


# A test plugin standing in for whoever may write the inbox, at the worst moment: after
# the walk saw a regular file, before a rule reads its content. Cost 0 runs first.
SWAPPER = """
import os
from clerk.plugins.api import Filter, Verdict, hookimpl

class SwapForLink(Filter):
    cost = 0

    def match(self, file):
        os.symlink(self.value, file.path + ".swap")
        os.rename(file.path + ".swap", file.path)
        return Verdict(True, "swapped for a link")

@hookimpl
def register_filters(register):
    register("swap_for_link", SwapForLink)
"""


def test_a_file_swapped_for_a_link_after_the_walk_is_not_read_through(
    tmp_path: Path, clerk_home: Path
) -> None:
    inbox, dest, secret = tmp_path / "inbox", tmp_path / "dest", tmp_path / "secret.txt"
    for directory in (inbox, dest, tmp_path / "plugins"):
        directory.mkdir()
    secret.write_bytes(SECRET)
    (inbox / "report.txt").write_bytes(b"nothing to see\n")
    (tmp_path / "plugins" / "swapper.py").write_text(SWAPPER)
    write_config(clerk_home, f"plugins: {{dir: {tmp_path / 'plugins'}}}\n")
    (clerk_home / "rules.d").mkdir()
    (clerk_home / "rules.d" / "rules.yaml").write_text(f"""
roots:
  inbox: {inbox}
  dest: {{path: {dest}, watch: false}}
rules:
  - name: invoices
    in: inbox
    match: [{{swap_for_link: "{secret}"}}, {{content: 'Invoice (?P<customer>\\w+)'}}]
    actions: [{{move: "{dest}/{{customer}}/{{name}}"}}]
""")
    env = {**os.environ, "CLERK_DISABLE_PLUGIN_AUTOLOAD": ""}
    result = subprocess.run([sys.executable, "-m", "clerk", "scan"], capture_output=True,
                            text=True, timeout=120, env=env)  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    (message,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "report.txt" in message and "symlink" in message, result.stderr
    assert list(dest.iterdir()) == []
    assert (inbox / "report.txt").is_symlink()
    with open(clerk_home / "clerk.db", "rb") as store:  # the journal, catalog, events
        assert b"SECRETCO" not in store.read()
    wal = clerk_home / "clerk.db-wal"
    assert not wal.exists() or b"SECRETCO" not in wal.read_bytes()
    assert "SECRETCO" not in result.stdout + result.stderr
