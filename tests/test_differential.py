"""The differential test: `clerk explain`, `clerk scan --dry-run`, `clerk scan` and the
daemon agree on every file (issue 12).

Hypothesis generates a tree (odd names: spaces, unicode, a leading dash, dots, braces;
extensions, sizes, old and new modification times, nested and ignored directories,
symlinks, files already at the destinations) and a rule set (filters extension, name,
size, age, regex, content, duplicate, tag and path, nested with all / any / not; `enabled: false`,
`on:`, `continue: true`, `after:`, the root's `ignore:` globs and `recursive:`; move,
rename, copy, tag and trash into destination roots, with every conflict policy). Then,
for every file, these must be the same: which rules applied and which operations
(kind, source, destination, outcome) resulted.

- **explain**: `clerk.rules.explain.explain()`, in-process (it is the code `clerk
  explain` runs), of each file in the scan's walk order, each followed by a real
  in-process scan of that one path (`Engine.scan([path])`, what `clerk scan PATH`
  runs), which must do what explain said. This is the reference: one file at a time.
- **dry run**: `clerk scan --dry-run --json`, the real CLI in a subprocess, on a fresh
  copy of the tree: the plan for every file must be explain's.
- **scan**: `clerk scan --json` on that copy: what it reports, what the journal holds
  and what is on disk afterwards (the files, their catalog rows and tags) must be what
  the one-file-at-a-time run left.
- **daemon**: a real `clerk daemon` process; the same tree, built outside the watched
  root, arrives by being moved in (its top-level entries renamed into the root while
  the daemon is paused, so that no rule acts on half a tree; then resumed). Its journal,
  catalog and disk must be those of explain's run for the `moved` trigger. The test
  waits on conditions with deadlines (every file catalogued, nothing queued), never
  on bare sleeps.

Time cannot make the legs disagree: modification times are 90 days or 1 hour old and
the thresholds (`age: "> 30d"`, `age: "< 7d"`, `after: 1d`) are far from both.

Budget: the default suite runs a few derandomized examples (`test_agree`, daemon leg
`test_daemon_agrees`). For a long hunt run the `slow` variants with a budget, e.g.::

    CLERK_DIFF_EXAMPLES=500 .venv/bin/python -m pytest tests/test_differential.py -m slow

They are random (a new seed each run); a failure prints the `@reproduce_failure` line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings, target
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from test_daemon_support import running_daemon, wait_until

from clerk.daemon.control import request

EXAMPLES = int(os.environ.get("CLERK_DIFF_EXAMPLES", "0") or 0)
DAY = 86400.0
OLD, NEW = 90 * DAY, 3600.0  # ages of the generated files: far from every threshold
POLICIES = ("rename", "skip", "overwrite", "dedupe", "fail")


# --- what the world is made of ------------------------------------------------------------

STEMS = ["a", "b", "IMG_1", "a b", "-n", "é", "日本", ".hidden", "x.tar", "a (1)",
         "{name}", "100%", "Invoice", "--", "z"]  # fmt: skip
EXTENSIONS = ["txt", "TXT", "pdf", "md", "", "gz", "bak"]
DIRS = ["", "", "", "sub", "sub", "a b", "node_modules", "ign-1", "é", "-d", ".Trash-1000",
        "deep/er", "sub/node_modules", ".cfg"]  # fmt: skip
CONTENTS = [b"", b"hello\n", b"Invoice ACME 1\n", b"Invoice BOLT\n", b"\x00\x01bin", b"x" * 600]
IGNORES = ["node_modules", "ign*", "*.bak", "* *"]
OUT_DIRS = ["flat", "txt", "copies", "r0", "r1"]


@dataclass(frozen=True)
class Entry:
    """One thing in the generated inbox: a file, or a symlink to `target` (relpath)."""

    relpath: str
    content: bytes = b""
    age: float = NEW
    link: str | None = None


@dataclass(frozen=True)
class World:
    inbox: tuple[Entry, ...]
    out: tuple[Entry, ...]  # already at the destinations: conflicts
    recursive: bool
    ignore: tuple[str, ...]
    rules: tuple[dict[str, Any], ...]
    batch: int = 500  # journal_batch: files per engine batch (small: many batches)

    def rule_text(self, base: Path) -> str:
        out = str(base / "out")
        rules = json.loads(json.dumps(list(self.rules)).replace("{out}", out))
        root = {"path": str(base / "inbox"), "recursive": self.recursive,
                "ignore": list(self.ignore), "settle": "0.1s"}  # fmt: skip
        doc = {
            "roots": {"inbox": root, "out": {"path": out, "watch": False}},
            "rules": rules,
        }
        return json.dumps(doc, indent=1, ensure_ascii=False)


#: names that meet (the same name in two directories, a name a conflict would make)
NAMES = ["a.txt", "a.txt", "b.txt", "a.TXT", "a b.pdf", "-n.md", "é.txt", "日本.md", ".hidden",
         "x.tar.gz", "a (1).txt", "{name}.txt", "100%.md", "Invoice.txt", "--", "z.bak",
         "noext"]  # fmt: skip
COMMON = ["a.txt", "b.txt", "a b.pdf", "a (1).txt", "noext"]
names = st.one_of(
    st.sampled_from(COMMON),
    st.sampled_from(COMMON),
    st.sampled_from(NAMES),
    st.builds(
        lambda stem, ext: f"{stem}.{ext}" if ext else stem,
        st.text(alphabet="ab -é_.()", min_size=1, max_size=4),
        st.sampled_from(EXTENSIONS),
    ).filter(lambda n: n not in (".", "..") and not n.endswith(".")),
)


@st.composite
def entries(draw: st.DrawFn, dirs: list[str]) -> list[Entry]:
    found: dict[str, Entry] = {}
    for _ in range(draw(st.integers(2, 10))):
        directory = draw(st.sampled_from(dirs))
        relpath = f"{directory}/{draw(names)}" if directory else draw(names)
        found.setdefault(
            relpath,
            Entry(relpath, draw(st.sampled_from(CONTENTS)), draw(st.sampled_from([OLD, NEW]))),
        )
    files = sorted(found)
    for _ in range(draw(st.integers(0, 2))):
        relpath = f"{draw(st.sampled_from(dirs))}/{draw(names)}".lstrip("/")
        target = draw(st.sampled_from([*files, *files, "missing.txt"]))
        found.setdefault(relpath, Entry(relpath, link=target))
    return _consistent(list(found.values()))


def _consistent(items: list[Entry]) -> list[Entry]:
    """Drop entries whose path is a directory of another entry (a file cannot be both)."""
    dirs = {"/".join(e.relpath.split("/")[:i]) for e in items
            for i in range(1, e.relpath.count("/") + 1)}  # fmt: skip
    return [e for e in items if e.relpath not in dirs]


LEAVES = st.one_of(
    st.builds(lambda v: {"extension": v}, st.sampled_from([["txt"], ["pdf", "md"], "", "TXT"])),
    st.builds(lambda v: {"name": v}, st.sampled_from(["*a*", "-*", "* *", "[ab]*", "*.TXT", ".*"])),
    st.builds(lambda v: {"size": v}, st.sampled_from(["> 100", "< 10", "== 0", ">= 1"])),
    st.builds(lambda v: {"age": v}, st.sampled_from(["> 30d", "< 7d"])),
    st.builds(lambda v: {"regex": v}, st.sampled_from([r"^\d", "é", r"\s", "^a", r"\(1\)"])),
    st.builds(lambda v: {"content": v}, st.sampled_from([r"Invoice\s+(?P<customer>\w+)", "hello"])),
    st.builds(lambda v: {"duplicate": v}, st.booleans()),
    st.builds(lambda v: {"tag": v}, st.sampled_from(["r0", "r1"])),
    st.builds(lambda v: {"path": v}, st.sampled_from(["sub/**", "*", "**/a*", "*/*.txt"])),
    st.builds(
        lambda v: {"regex": {"pattern": v, "on": "relpath"}}, st.sampled_from(["^sub/", "/"])
    ),
)
NODES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.builds(lambda c: {"all": c}, st.lists(children, max_size=2)),
        st.builds(lambda c: {"any": c}, st.lists(children, min_size=1, max_size=2)),
        st.builds(lambda c: {"not": c}, children),
    ),
    max_leaves=3,
)


@st.composite
def actions(draw: st.DrawFn, rule: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["move", "move", "copy", "rename", "tag"]))
        if kind == "tag":
            steps.append({"tag": rule})
            continue
        if kind == "rename":
            to = draw(st.sampled_from(["r-{name}", "{stem} (1).{ext}"]))
        else:
            # a copy stays out of the watched root: the copy is a new file there, which
            # the next reconcile (or scan) handles as such (operations.md, known limits)
            inside = "{out}/copies/{name}" if kind == "copy" else "sorted/{name}"
            to = draw(st.sampled_from(["{out}/flat/{name}", "{out}/" + rule + "/{name}",
                                       "{out}/{ext}/{name}", "{out}/txt/", inside]))  # fmt: skip
        steps.append({kind: to, "on_conflict": draw(st.sampled_from(POLICIES))})
    # trash mostly last: a file op after it is an error (the same everywhere, and dull)
    if draw(st.integers(0, 3)) == 0:
        steps.insert(draw(st.integers(len(steps) - 1, len(steps))) if steps else 0,
                     {"trash": {}})  # fmt: skip
    return steps


@st.composite
def rule_sets(draw: st.DrawFn) -> tuple[dict[str, Any], ...]:
    rules = []
    for index in range(draw(st.integers(1, 4))):
        name = f"r{index}"
        match = draw(st.just([]) | st.lists(NODES, min_size=1, max_size=2))
        rule: dict[str, Any] = {"name": name, "in": "inbox", "match": match,
                                "actions": draw(actions(name))}  # fmt: skip
        if draw(st.booleans()):
            rule["continue"] = True
        if draw(st.integers(0, 5)) == 0:
            rule["enabled"] = False
        if draw(st.integers(0, 4)) == 0:
            rule["on"] = draw(
                st.sampled_from([["scan"], ["moved"], ["created"], ["scan", "moved"]])
            )
        if draw(st.integers(0, 5)) == 0:
            rule["after"] = "1d"
        rules.append(rule)
    return tuple(rules)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    inbox = draw(entries(DIRS))
    taken = sorted({e.relpath.rsplit("/", 1)[-1] for e in inbox})
    out = {}
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(taken) | names)
        relpath = f"{draw(st.sampled_from(OUT_DIRS))}/{name}"
        out[relpath] = Entry(relpath, draw(st.sampled_from(CONTENTS)), OLD)
    return World(
        tuple(inbox),
        tuple(out.values()),
        draw(st.integers(0, 4)) > 0,
        tuple(draw(st.lists(st.sampled_from(IGNORES), max_size=2, unique=True))),
        draw(rule_sets()),
        draw(st.sampled_from([500, 500, 1, 3])),
    )


# --- building a world ------------------------------------------------------------------------


@dataclass
class Place:
    """A world on disk: its files under `base`, its clerk home (store, rules, socket)."""

    base: Path
    home: Path

    @property
    def inbox(self) -> Path:
        return self.base / "inbox"

    def env(self) -> dict[str, str]:
        return {"CLERK_HOME": str(self.home)}


@contextlib.contextmanager
def place(world: World, *, inbox_dir: str = "inbox") -> Iterator[Place]:
    """A fresh copy of `world`: files under `inbox_dir` (the inbox, or a staging dir to
    move in later), a fresh store. Short paths: the control socket lives there too."""
    base = Path(tempfile.mkdtemp(prefix="cd-"))
    try:
        here = Place(base, base / "home")
        for sub in ("home/rules.d", "inbox", "out", "trash"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (here.home / "config.yaml").write_text(
            f"trash_dir: {base / 'trash'}\nreconcile_interval: 1h\n"
            f"control_socket: {base / 'c.sock'}\njournal_batch: {world.batch}\n"
        )
        (here.home / "rules.d" / "rules.yaml").write_text(world.rule_text(base), "utf-8")
        build(base / inbox_dir, world.inbox)
        build(base / "out", world.out)
        yield here
    finally:
        shutil.rmtree(base, ignore_errors=True)


def build(directory: Path, items: tuple[Entry, ...]) -> None:
    now = time.time()
    for entry in items:  # in order: the order of a directory's listing follows it
        path = directory / entry.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry.link is not None:
            os.symlink(entry.link, path)
            continue
        path.write_bytes(entry.content)
        os.utime(path, (now - entry.age, now - entry.age))


@contextlib.contextmanager
def clerk_home(here: Place) -> Iterator[None]:
    """In-process clerk code reads $CLERK_HOME as the CLI does."""
    old = os.environ.get("CLERK_HOME")
    os.environ["CLERK_HOME"] = str(here.home)
    try:
        yield
    finally:
        if old is None:
            del os.environ["CLERK_HOME"]
        else:
            os.environ["CLERK_HOME"] = old


# --- what each leg says ----------------------------------------------------------------------

Op = tuple[Any, ...]


@dataclass
class Fate:
    """What became of one file: the rules that applied, the ops, the effects."""

    rules: tuple[str, ...]
    ops: tuple[Op, ...]
    effects: tuple[str, ...]
    error: bool = False


def _status(status: str) -> str:
    return "ok" if status in ("planned", "done") else status


def _op(op: dict[str, Any], rel: Any) -> Op:
    displaced = op.get("displaced")
    moved_away = _op(displaced, rel) if displaced else None
    return (op["kind"], rel(op["src"]), rel(op.get("dst")), _status(op["status"]), op.get("rule"),
            moved_away)  # fmt: skip


def fate(outcome: dict[str, Any], rel: Any) -> Fate:
    return Fate(
        tuple(outcome["rules"]),
        tuple(_op(op, rel) for op in outcome["ops"]),
        tuple(outcome["effects"]),
        bool(outcome["error"]),
    )


def relative(base: Path) -> Any:
    prefix = str(base) + "/"

    def rel(path: str | None) -> str | None:
        if path is None:
            return None
        return path[len(prefix) :] if path.startswith(prefix) else f"<outside>{path}"

    return rel


@dataclass
class Leftover:
    """What a leg leaves behind: the files, the journal, the catalog."""

    disk: list[tuple[str, str]]
    journal: Counter[tuple[Any, ...]]
    catalog: list[tuple[Any, ...]]


def leftover(here: Place) -> Leftover:
    disk = []
    for top in ("inbox", "out", "trash/files"):
        for path in sorted((here.base / top).rglob("*")):
            st_ = path.lstat()
            if stat.S_ISLNK(st_.st_mode):
                what = "-> " + os.readlink(path)
            elif stat.S_ISDIR(st_.st_mode):
                continue
            else:
                what = hashlib.blake2b(path.read_bytes(), digest_size=6).hexdigest()
            disk.append((str(path.relative_to(here.base)), what))
    rel = relative(here.base)
    db = sqlite3.connect(here.home / "clerk.db")
    try:
        journal = Counter(
            (kind, rel(src), rel(dst), state, rule)
            for kind, src, dst, state, rule in db.execute(
                "SELECT kind, src, dst, state, rule FROM ops"
            )
        )
        # the rows rules left a mark on: tags, or the file gone (which files a scan
        # catalogues at all depends on what it walked: `clerk scan` walks the roots its
        # rules use, `clerk scan PATH` catalogues PATH)
        catalog = sorted(
            (root, relpath, state, tags)
            for root, relpath, state, tags in db.execute(
                "SELECT root, relpath, state, tags FROM files WHERE relpath IS NOT NULL"
                " AND (state != 'present' OR tags NOT IN ('[]', ''))"
            )
        )
    finally:
        db.close()
    return Leftover(disk, journal, catalog)


def walk_order(here: Place) -> list[str]:
    """The files a scan meets, in the order it meets them (the scan's own walk)."""
    from clerk.app import App
    from clerk.rules.walk import walk_root

    with clerk_home(here):
        ruleset = App().rules()
        root = ruleset.roots["inbox"]
        return [c.path for c in walk_root(root, ruleset.roots)]


def one_at_a_time(here: Place, order: list[str], trigger: str) -> dict[str, Fate]:
    """explain() each file, then scan that one path for real: they must agree."""
    from clerk.app import App
    from clerk.rules.explain import explain

    rel = relative(here.base)
    fates: dict[str, Fate] = {}
    with clerk_home(here):
        app = App()
        try:
            ruleset = app.rules()
            for path in order:
                said = explain(app.engine(ruleset, dry_run=True), path, trigger=trigger)
                told = fate(said.outcome.as_dict(), rel)
                engine = app.engine(ruleset, keep_outcomes=True)
                summary = engine.scan([path], trigger=trigger)
                done = [o.as_dict() for o in summary.outcomes if o.path == path]
                did = fate(done[0], rel) if done else Fate((), (), ())
                assert told == did, f"explain {rel(path)} said\n{told}\nscan {rel(path)} did\n{did}"
                fates[rel(path)] = told  # type: ignore[index]
        finally:
            app.store.close()
    return fates


def run_clerk(here: Place, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "clerk", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **here.env()},
    )  # fmt: skip
    assert result.returncode in (0, 1) and result.stdout, (result.returncode, result.stderr)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def scanned(report: dict[str, Any], here: Place, order: list[str]) -> dict[str, Fate]:
    rel = relative(here.base)
    by_path = {o["path"]: fate(o, rel) for o in report["files"]}
    return {rel(p): by_path.get(p, Fate((), (), ())) for p in order}  # type: ignore[misc]


def journal_of(fates: dict[str, Fate]) -> Counter[tuple[Any, ...]]:
    """The journal rows a scan doing `fates` writes (ops, and what overwrite moved away)."""
    rows: Counter[tuple[Any, ...]] = Counter()
    for f in fates.values():
        for kind, src, dst, status, rule, displaced in f.ops:
            rows[(kind, src, dst, "done" if status == "ok" else status, rule)] += 1
            if displaced is not None:
                d_kind, d_src, d_dst, d_status, d_rule, _ = displaced
                rows[(d_kind, d_src, d_dst, "done" if d_status == "ok" else d_status, d_rule)] += 1
    return rows


def describe(world: World) -> str:
    lines = ["inbox:"] + [f"  {e}" for e in world.inbox] + ["out:"] + [f"  {e}" for e in world.out]
    lines.append(f"recursive={world.recursive} ignore={list(world.ignore)} batch={world.batch}")
    return "\n".join(lines + ["rules:"] + [f"  {json.dumps(r, ensure_ascii=False)}"
                                            for r in world.rules])  # fmt: skip


def _events(fates: dict[str, Fate]) -> None:
    """What the example exercised (pytest --hypothesis-show-statistics), and a target:
    examples where more happens are worth more."""
    if not currently_in_test_context():
        return
    ops = [op for f in fates.values() for op in f.ops]
    target(float(len(ops)), label="ops")
    target(float(sum(1 for f in fates.values() if len(f.rules) > 1)), label="chained files")
    for op in ops:
        event(f"op {op[0]} {op[3]}")
        if op[5] is not None:
            event("overwrite displaced a file")
    if any(f.rules for f in fates.values()):
        event("some rule applied")


def reference(world: World, trigger: str) -> tuple[list[str], dict[str, Fate], Leftover]:
    """The reference leg on a fresh copy of `world`: the walk order (relpaths under the
    base), what explain said of each file (and a scan of it did), and what was left."""
    with place(world) as here:
        order = walk_order(here)
        rel = relative(here.base)
        explained = one_at_a_time(here, order, trigger)
        return [rel(p) for p in order], explained, leftover(here)


def check_agreement(world: World) -> None:
    note = describe(world)
    relorder, explained, expected = reference(world, "scan")
    _events(explained)
    with place(world) as copy:
        paths = walk_order(copy)
        assert [relative(copy.base)(p) for p in paths] == relorder, f"{note}\nanother walk order"
        planned = scanned(run_clerk(copy, "scan", "--dry-run", "--json"), copy, paths)
        for path in relorder:
            assert planned[path] == explained[path], (
                f"{note}\n{path}: dry run planned\n{planned[path]}\nexplain said\n{explained[path]}"
            )
        report = run_clerk(copy, "scan", "--json")
        done = scanned(report, copy, paths)
        for path in relorder:
            assert done[path] == explained[path], (
                f"{note}\n{path}: scan did\n{done[path]}\nexplain said\n{explained[path]}"
            )
        after = leftover(copy)
        assert after.journal == journal_of(done), note
        assert after.journal == expected.journal, note
        assert after.disk == expected.disk, note
        assert after.catalog == expected.catalog, note


def arrival_order(staging: Path, relorder: list[str]) -> list[str]:
    """The top-level entries to move in, so the daemon meets the files in the scan's
    order: the files at the top as the walk met them, then the directories as the walk
    went into them, then whatever the walk skipped."""
    first = []
    for relpath in relorder:
        top = relpath.split("/", 1)[1].split("/", 1)[0]  # relpath starts with inbox/
        if top not in first:
            first.append(top)
    files = [t for t in first if not (staging / t).is_dir() or (staging / t).is_symlink()]
    dirs = [t for t in first if t not in files]
    rest = sorted(n for n in os.listdir(staging) if n not in first)
    return files + dirs + rest


def handled(here: Place, inodes: set[int]) -> bool:
    db = sqlite3.connect(f"file:{here.home / 'clerk.db'}?mode=ro", uri=True)
    try:
        known = {row[0] for row in db.execute("SELECT inode FROM files")}
    except sqlite3.OperationalError:  # not made yet
        return False
    finally:
        db.close()
    return inodes <= known


def check_daemon(world: World) -> None:
    note = describe(world)
    relorder, explained, expected = reference(world, "moved")
    with place(world, inbox_dir="staging") as here:
        staging, sock = here.base / "staging", here.base / "c.sock"
        inodes = {os.lstat(staging / p.split("/", 1)[1]).st_ino for p in relorder}
        tops = arrival_order(staging, relorder)
        with running_daemon(here.base, extra_env=here.env()) as (daemon, _):
            assert request(sock, "pause")["ok"]
            for name in tops:
                os.rename(staging / name, here.inbox / name)
            # every file the walk would meet is waiting to settle (and perhaps more)
            wait_until(lambda: request(sock, "status")["queue"] >= len(relorder),
                       what=f"{len(relorder)} arrivals queued\n{note}")  # fmt: skip
            assert request(sock, "resume")["ok"]

            def quiet() -> bool:
                return handled(here, inodes) and request(sock, "status")["queue"] == 0

            wait_until(quiet, what=f"every arrival handled\n{note}\n{daemon.log()}")
            assert request(sock, "reconcile")["ok"]  # and a walk finds nothing more to do
            daemon.signal(signal.SIGTERM)
            assert daemon.wait() == 0, daemon.log()
        after = leftover(here)
    assert after.journal == journal_of(explained), note
    assert after.journal == expected.journal, note
    assert after.disk == expected.disk, note
    assert after.catalog == expected.catalog, note


# --- the tests ---------------------------------------------------------------------------------

SMALL = settings(
    max_examples=10,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
LARGE = settings(SMALL, max_examples=max(EXAMPLES, 1), derandomize=False, print_blob=True)


#: worlds the hunt found, kept as examples of the default run
FOUND: list[World] = [
    # two files of one name moved over one destination, then trashed (tests/test_batch.py)
    World(
        (Entry("a.txt", b"hello\n", OLD), Entry("sub/a.txt", b"hello\n", OLD)),
        (Entry("flat/a.txt", b"x", OLD),),
        True,
        (),
        (
            {
                "name": "r0",
                "in": "inbox",
                "match": [],
                "actions": [
                    {"move": "{out}/flat/{name}", "on_conflict": "overwrite"},
                    {"trash": {}},
                ],
            },
        ),
    ),
]

#: one world with a bit of everything, so that even the smallest budget sees it
RICH = World(
    (
        Entry("a.txt", b"Invoice ACME 1\n", OLD),
        Entry("-n.md", b"hello\n", NEW),
        Entry("日本.md", b"x" * 600, OLD),
        Entry("sub/b.txt", b"hello\n", NEW),
        Entry("sub/deep/a b.pdf", b"", OLD),
        Entry("node_modules/pkg/c.txt", b"hello\n", OLD),
        Entry("ign-1/d.txt", b"hello\n", OLD),
        Entry(".Trash-1000/files/e.txt", b"hello\n", OLD),
        Entry("sub/link.txt", link="b.txt"),
        Entry("z.bak", b"hello\n", OLD),
    ),
    (Entry("flat/a.txt", b"old", OLD), Entry("r1/b.txt", b"old", OLD)),
    True,
    ("node_modules", "ign*"),
    (
        {
            "name": "r0",
            "in": "inbox",
            "continue": True,
            "match": [{"content": "Invoice"}],
            "actions": [{"tag": "r0"}],
        },
        {
            "name": "r1",
            "in": "inbox",
            "match": [{"any": [{"extension": "txt"}, {"not": {"size": "> 100"}}]}],
            "actions": [
                {"copy": "{out}/copies/{name}", "on_conflict": "rename"},
                {"move": "{out}/r1/{name}", "on_conflict": "rename"},
            ],
        },
        {"name": "r2", "in": "inbox", "enabled": False, "actions": [{"trash": {}}]},
        {
            "name": "r3",
            "in": "inbox",
            "match": [{"age": "> 30d"}],
            "actions": [{"move": "{out}/flat/{name}", "on_conflict": "overwrite"}],
        },
        {"name": "r4", "in": "inbox", "actions": [{"tag": "r4"}, {"trash": {}}]},
    ),
)


def found(test: Any) -> Any:
    for world in reversed([RICH, *FOUND]):
        test = example(world)(test)
    return test


@SMALL
@found
@given(worlds())
def test_agree(world: World) -> None:
    check_agreement(world)


@pytest.mark.slow
@pytest.mark.skipif(not EXAMPLES, reason="set CLERK_DIFF_EXAMPLES=N for a budget of N")
@LARGE
@given(worlds())
def test_agree_hunt(world: World) -> None:
    check_agreement(world)


@settings(SMALL, max_examples=3)
@example(RICH)
@given(worlds())
def test_daemon_agrees(world: World) -> None:
    check_daemon(world)


@pytest.mark.slow
@pytest.mark.skipif(not EXAMPLES, reason="set CLERK_DIFF_EXAMPLES=N for a budget of N")
@settings(LARGE, max_examples=max(EXAMPLES // 10, 1))
@given(worlds())
def test_daemon_agrees_hunt(world: World) -> None:
    check_daemon(world)
