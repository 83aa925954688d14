"""The rule-file loader: every shape, and every problem at its exact file:line:col."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pytest

from clerk.errors import Problem, SpecError
from clerk.plugins.api import EffectAction, FileOpAction, Filter, Verdict, hookimpl
from clerk.plugins.manager import Registry, make_plugin_manager
from clerk.rules.loader import LoadedRuleSet, SourcedRule, expand_path, load_rules
from clerk.rules.model import (
    DEFAULT_IGNORE,
    DEFAULT_TRIGGERS,
    AllNode,
    AnyNode,
    FilterNode,
    NotNode,
)
from clerk.units import parse_comparison, parse_size

# --- small test plugins -------------------------------------------------------------------


class Ext(Filter):
    def __init__(self, value: Any):
        super().__init__(value)
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, str) for v in items):
            raise SpecError(f"extension wants a string or a list of strings, got {value!r}")
        self.extensions = {v.lower() for v in items}

    def match(self, file: Any) -> Verdict:
        return Verdict(file.ext.lower() in self.extensions)


class Size(Filter):
    def __init__(self, value: Any):
        super().__init__(value)
        self.comparison = parse_comparison(value, parse_size)

    def match(self, file: Any) -> Verdict:
        return Verdict(self.comparison.test(file.size))


class Regex(Filter):
    def __init__(self, value: Any):
        super().__init__(value)
        import re

        if not isinstance(value, str):
            raise SpecError("regex wants a pattern")
        self.pattern = re.compile(value)

    def provides(self) -> frozenset[str]:
        return frozenset(self.pattern.groupindex)

    def match(self, file: Any) -> Verdict:
        m = self.pattern.search(file.name)
        return Verdict(m is not None, fields=m.groupdict() if m else {})


class Buggy(Filter):
    def __init__(self, value: Any):
        raise RuntimeError("plugin bug")

    def match(self, file: Any) -> Verdict:  # pragma: no cover
        return Verdict(False)


class Move(FileOpAction):
    options: ClassVar[frozenset[str]] = frozenset({"on_conflict"})

    def __init__(self, value: Any, options: Any = None):
        super().__init__(value, options)
        if not isinstance(value, str):
            raise SpecError("move wants a destination template")

    def templates(self) -> list[str]:
        return [self.value]

    def path_templates(self) -> list[str]:
        return [self.value]

    def request(self, target: Any) -> None:  # pragma: no cover
        return None


class Trash(FileOpAction):
    def __init__(self, value: Any, options: Any = None):
        super().__init__(value, options)
        if value not in (None, {}):
            raise SpecError("trash takes no value: write `trash: {}`")

    def request(self, target: Any) -> None:  # pragma: no cover
        return None


class Tag(EffectAction):
    def __init__(self, value: Any, options: Any = None):
        super().__init__(value, options)
        if not isinstance(value, str):
            raise SpecError("tag wants a tag")

    def templates(self) -> list[str]:
        return [self.value]

    def describe(self, target: Any) -> str:  # pragma: no cover
        return "tag"

    def apply(self, target: Any) -> None:  # pragma: no cover
        return None


def make_registry() -> Registry:
    registry = Registry()
    registry.filters.update(extension=Ext, size=Size, regex=Regex, buggy=Buggy)
    registry.actions.update(move=Move, trash=Trash, tag=Tag)
    registry.origin["filter:buggy"] = "tests.buggy"
    return registry


@pytest.fixture
def registry() -> Registry:
    return make_registry()


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(
    tmp_path: Path, text: str, registry: Registry, **kwargs: Any
) -> tuple[LoadedRuleSet, list[Problem]]:
    ruleset, problems = load_rules([write(tmp_path, "rules.yaml", text)], registry, **kwargs)
    assert isinstance(ruleset, LoadedRuleSet)
    return ruleset, problems


def spots(problems: list[Problem]) -> list[str]:
    """`line:col: message` (severity prefixed when not an error), in report order."""
    return [str(p).split(":", 1)[1] if ":" in str(p) else str(p) for p in problems]


def only(problems: list[Problem]) -> str:
    assert len(problems) == 1, [str(p) for p in problems]
    return spots(problems)[0]


HOME_RULES = """
roots:
  inbox: {path: ~/Inbox, recursive: false, settle: 2s, ignore: ["*.tmp2"]}
  archive:
    path: ~/Archive
    watch: false
    poll: true
    follow_symlinks: true
  bare: ~/Bare
rules:
  - name: photos
    in: inbox
    on: [created, scan]
    match:
      - extension: [jpg, png]
      - size: ">= 10KB"
    actions:
      - move: "~/Archive/{name}"
        on_conflict: skip
      - tag: photo
    continue: true
    after: 1m
    keep_newest: 3
    group_by: "{stem}"
    description: sort photos
  - name: sweep
    in: [inbox, archive]
    schedule: "0 3 * * *"
    enabled: false
    actions: []
  - name: hourly
    in: archive
    every: 1h
    actions: [{trash: {}}]
workflows:
  ocr:
    tasks: [{name: a, executor: shell, command: [true]}]
"""


# --- shapes -------------------------------------------------------------------------------


def test_a_complete_file_builds_the_model(tmp_path: Path, registry: Registry) -> None:
    ruleset, problems = load(tmp_path, HOME_RULES, registry)
    assert problems == []
    home = os.environ["HOME"]
    inbox, archive, bare = (ruleset.roots[n] for n in ("inbox", "archive", "bare"))
    assert (inbox.path, inbox.recursive, inbox.settle, inbox.watch) == (
        f"{home}/Inbox",
        False,
        2.0,
        True,
    )
    assert inbox.ignore == (*DEFAULT_IGNORE, "*.tmp2")
    assert (archive.watch, archive.poll, archive.follow_symlinks, archive.settle) == (
        False,
        True,
        True,
        5.0,
    )
    assert (bare.path, bare.recursive, bare.ignore) == (f"{home}/Bare", True, DEFAULT_IGNORE)
    assert str(inbox.where).endswith("rules.yaml:2:3")

    photos, sweep, hourly = ruleset.rules
    assert photos.name == "photos" and photos.roots == ("inbox",)
    assert photos.on == frozenset({"created", "scan"})
    assert isinstance(photos.match, AllNode)
    leaves = photos.match.children
    assert [type(n) for n in leaves] == [FilterNode, FilterNode]
    assert isinstance(leaves[0], FilterNode) and isinstance(leaves[0].filter, Ext)
    assert leaves[0].filter.extensions == {"jpg", "png"}
    assert str(leaves[1].where).endswith(":15:9")
    assert [s.name for s in photos.actions] == ["move", "tag"]
    assert photos.actions[0].action.opts == {"on_conflict": "skip"}
    assert photos.actions[0].action.value == "~/Archive/{name}"
    assert (photos.continue_, photos.after, photos.keep_newest, photos.group_by) == (
        True,
        60.0,
        3,
        "{stem}",
    )
    assert photos.enabled and not photos.is_lifecycle
    assert sweep.roots == ("inbox", "archive") and sweep.schedule == "0 3 * * *"
    assert sweep.on == DEFAULT_TRIGGERS and not sweep.enabled and sweep.actions == []
    assert isinstance(sweep.match, AllNode) and sweep.match.children == []
    assert hourly.every == 3600.0 and hourly.is_lifecycle
    assert ruleset.workflows == {
        "ocr": {"tasks": [{"name": "a", "executor": "shell", "command": [True]}]}
    }
    assert ruleset.files == [tmp_path / "rules.yaml"]


def test_match_shapes(tmp_path: Path, registry: Registry) -> None:
    ruleset, problems = load(
        tmp_path,
        """
        roots: {r: /tmp}
        rules:
          - name: mapping-means-all
            match: {extension: pdf, size: "> 1KB"}
            actions: []
          - name: single
            match: {extension: pdf}
            actions: []
          - name: nested
            match:
              - any:
                  - extension: pdf
                  - all: [{extension: txt}, {size: "< 1KB"}]
              - not: {extension: tmp}
              - not: [{extension: a}, {size: "> 1"}]
            actions: []
        """,
        registry,
    )
    assert problems == []
    many, single, nested = (r.match for r in ruleset.rules)
    assert isinstance(many, AllNode) and [c.name for c in many.children] == [  # type: ignore[union-attr]
        "extension",
        "size",
    ]
    assert isinstance(single, FilterNode) and single.name == "extension"
    assert isinstance(nested, AllNode)
    any_node, not_one, not_list = nested.children
    assert isinstance(any_node, AnyNode) and isinstance(any_node.children[1], AllNode)
    assert isinstance(not_one, NotNode) and isinstance(not_one.child, FilterNode)
    assert isinstance(not_list, NotNode) and isinstance(not_list.child, AllNode)
    assert all(r.roots == ("r",) for r in ruleset.rules)  # one root: `in:` may be left out


def test_several_files_merge(tmp_path: Path, registry: Registry) -> None:
    first = write(
        tmp_path,
        "a.yaml",
        """
        roots:
          inbox: /tmp/inbox
        rules:
          - {name: one, in: outbox, actions: []}
        workflows:
          w: {tasks: []}
        """,
    )
    second = write(
        tmp_path,
        "b.yaml",
        """
        roots:
          outbox: /tmp/outbox
          inbox: /tmp/other
        rules:
          - {name: two, in: inbox, actions: []}
        workflows:
          w: {tasks: []}
        """,
    )
    ruleset, problems = load_rules([first, second], registry)
    assert [r.name for r in ruleset.rules] == ["one", "two"]
    assert ruleset.roots["inbox"].path == "/tmp/inbox"
    assert ruleset.roots["outbox"].path == "/tmp/outbox"
    assert [str(p) for p in problems] == [
        f"{second}:3:3: root 'inbox' is already defined at {first}:2:3",
        f"{second}:7:3: workflow 'w' is already defined at {first}:6:3",
    ]


def test_in_may_be_left_out_only_with_one_root(tmp_path: Path, registry: Registry) -> None:
    ruleset, problems = load(
        tmp_path,
        """
        roots: {a: /tmp/a, b: /tmp/b}
        rules:
          - name: r
            actions: []
        """,
        registry,
    )
    assert (
        only(problems) == "3:5: rule 'r' needs `in:` naming its root(s): there are 2 roots (a, b)"
    )
    assert not ruleset.rules[0].enabled
    _, problems = load(tmp_path, "rules: [{name: r, actions: []}]\n", registry)
    assert "no roots are declared" in only(problems)


def test_root_paths_are_expanded_and_normalized(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA", "/srv/data")
    ruleset, problems = load(
        tmp_path,
        """
        roots:
          a: ~/x/
          b: $DATA/in
          c: ${DATA}//y/../z
          d: relative/dir
          e: //double
        """,
        registry,
    )
    assert problems == []
    paths = {r.name: r.path for r in ruleset.roots}
    assert paths == {
        "a": os.path.join(os.environ["HOME"], "x"),
        "b": "/srv/data/in",
        "c": "/srv/data/z",
        "d": str(tmp_path / "relative" / "dir"),
        "e": "/double",
    }
    assert expand_path("$NOPE_NOT_SET/x", "/")[1] == "environment variable $NOPE_NOT_SET is not set"
    assert (
        expand_path("~no-such-user-xyz/x", "/")[1]
        == "cannot expand '~no-such-user-xyz' (no such user)"
    )


def test_root_problems(tmp_path: Path, registry: Registry) -> None:
    ruleset, problems = load(
        tmp_path,
        """
        roots:
          good: /tmp/good
          nopath: {recursive: false}
          "bad name": /tmp/x
          num: 5
          unset: $CLERK_TEST_UNSET/x
          typed: {path: /tmp/t, recursive: "no", settle: soon, ignore: [1], subfolders: true}
          empty: ""
        """,
        registry,
    )
    assert spots(problems) == [
        "3:3: root 'nopath' needs a path:",
        "4:3: a root name is letters, digits, '_', '-' and '.', got 'bad name'",
        "5:8: root 'num' wants a path or a mapping with path:, got 5",
        "6:10: root path '$CLERK_TEST_UNSET/x': environment variable $CLERK_TEST_UNSET is not set",
        "7:69: unknown root key 'subfolders' (did you mean 'recursive'?)",
        "7:50: settle: expected a duration like 30s, 5m, 2h or 1h30m, got 'soon'",
        "7:65: ignore: wants a glob, got 1",
        "7:36: recursive: wants true or false, got 'no'",
        "8:10: a root path wants a directory, like ~/Downloads, got ''",
    ]
    assert ruleset.roots.names == ["good", "typed"]
    assert ruleset.broken_roots == {"nopath", "num", "unset", "empty"}


def test_rule_field_problems(tmp_path: Path, registry: Registry) -> None:
    _, problems = load(
        tmp_path,
        """
        roots: {r: /tmp}
        rules:
          - name: 5
            on: [created, scna]
            continue: "yes"
            enabled: 1
            schedule: "0 3 * *"
            every: 0
            after: forever
            keep_newest: 0
            group_by: []
            description: 3
            filters: []
            actions: []
          - on: []
            schedule: "61 * * * *"
            every: 5m
            actions: []
        """,
        registry,
    )
    assert spots(problems[:-1]) == [
        "13:5: unknown rule key 'filters' (did you mean 'match'?)",
        "3:11: name: wants a text value, got 5",
        "4:19: unknown trigger 'scna' (did you mean 'scan'?)",
        "7:15: schedule: wants a cron expression with 5 fields (minute hour day month weekday),"
        " like '0 3 * * *', got '0 3 * *'",
        "8:12: every: wants a duration greater than zero, got 0",
        "5:15: continue: wants true or false, got 'yes'",
        "9:12: after: expected a duration like 30s, 5m, 2h or 1h30m, got 'forever'",
        "10:18: keep_newest: wants a whole number >= 1, got 0",
        "11:15: group_by: wants a text value, got []",
        "6:14: enabled: wants true or false, got 1",
        "12:18: description: wants a text value, got 3",
        "15:5: a rule needs a name:",
        "15:9: on: wants at least one of created, modified, moved, scan, schedule",
    ]
    # APScheduler words the reason; the position and the expression are ours
    assert spots(problems[-1:])[0].startswith(
        "16:15: schedule: invalid cron expression '61 * * * *'"
    )
    # the second rule also has every:, but its schedule was refused, so no "not both"
    assert not any("not both" in p.message for p in problems)


def test_schedule_and_every_together(tmp_path: Path, registry: Registry) -> None:
    _, problems = load(
        tmp_path,
        """
        roots: {r: /tmp}
        rules:
          - {name: x, schedule: "0 * * * *", every: 1h, actions: []}
        """,
        registry,
    )
    assert only(problems) == "3:38: a rule has schedule: or every:, not both"


def test_match_problems(tmp_path: Path, registry: Registry) -> None:
    ruleset, problems = load(
        tmp_path,
        """
        roots: {r: /tmp}
        rules:
          - name: bad-match
            match:
              - extention: pdf
              - size: big
              - extension
              - any: []
              - all: {extension: pdf}
              - not: 3
              - buggy: 1
              - actions: []
              - Extension: pdf
              - regex: {x: 1}
            actions: []
          - name: scalar-match
            match: pdf
            actions: []
        """,
        registry,
    )
    assert spots(problems) == [
        "5:9: unknown filter 'extention' (did you mean 'extension'?)",
        "6:15: size: expected a size like 10KB, 5MiB or 512Mi, got 'big'",
        "7:9: filter 'extension' needs a value: write `- extension: ...`",
        "8:14: any: wants a list of filters, like any: [{extension: pdf}, {mime: image/*}], got []",
        "9:14: all: wants a list of filters, like all: [{extension: pdf}, {mime: image/*}],"
        " got {'extension': 'pdf'}",
        "10:14: not: wants a filter mapping or a list of filters, got 3",
        "11:16: filter 'buggy' (plugin tests.buggy) failed on this value: RuntimeError: plugin bug",
        "12:9: 'actions' belongs to the rule, not inside match: (check the indentation)",
        "13:9: unknown filter 'Extension' (did you mean 'extension'?)",
        "14:16: regex wants a pattern",
        "17:12: match: wants a list of filters or a mapping like {extension: pdf}, got 'pdf'",
    ]
    bad, scalar = ruleset.rules
    # what could not be built matches nothing, and the rule is disabled
    assert isinstance(bad, SourcedRule) and bad.failed_fields == frozenset() and not bad.enabled
    assert isinstance(bad.match, AllNode)
    assert isinstance(bad.match.children[0], AnyNode) and bad.match.children[0].children == []
    assert isinstance(scalar.match, AnyNode) and scalar.match.children == []


def test_action_problems(tmp_path: Path, registry: Registry) -> None:
    ruleset, problems = load(
        tmp_path,
        """
        roots: {r: /tmp}
        rules:
          - name: acts
            actions:
              - mvoe: /tmp/x
              - move: /tmp/{name}
                on_confict: rename
              - move: /tmp/{name}
                tag: x
              - {on_conflict: skip}
              - trash
              - move: /tmp/{name}
                on_conflict: renam
              - trash: [1]
              - trash: {}
                on_conflict: skip
              - 42
          - name: no-actions
          - name: not-a-list
            actions: {trash: {}}
          - name: empty
            actions:
        """,
        registry,
    )
    assert spots(problems) == [
        "5:9: unknown action 'mvoe' (did you mean 'move'?)",
        "7:9: move has no option 'on_confict' (did you mean 'on_conflict'?)",
        "9:9: one action per item, found move, tag: start a new `- ` for each",
        "10:9: options on_conflict without an action (expected one of: move, tag, trash)",
        "11:9: action 'trash' needs a value: write `- trash: ...`",
        "13:22: on_conflict: unknown policy 'renam' (did you mean 'rename'?)",
        "14:16: trash takes no value: write `trash: {}`",
        "16:9: trash takes no options, got 'on_conflict'",
        "17:9: an action is a mapping like `- move: ~/Archive/{name}`, got 42",
        "18:5: rule 'no-actions' has no actions: (write `actions: []` for a rule that only"
        " stops later rules)",
        "20:14: actions: wants a list, like [{trash: {}}], got {'trash': {}}",
        "22:5: rule 'empty' has no actions: (write `actions: []` for a rule that only stops"
        " later rules)",
    ]
    assert ruleset.rules[0].actions == []


def test_an_option_named_like_an_action(tmp_path: Path, registry: Registry) -> None:
    class Archive(Move):
        options: ClassVar[frozenset[str]] = frozenset({"on_conflict", "tag"})

    registry.actions["archive"] = Archive
    ruleset, problems = load(
        tmp_path,
        """
        roots: {r: /tmp}
        rules:
          - name: a
            actions: [{archive: "/tmp/{name}.zip", tag: x}]
        """,
        registry,
    )
    assert problems == []
    assert ruleset.rules[0].actions[0].action.opts == {"tag": "x"}


def test_top_level_problems(tmp_path: Path, registry: Registry) -> None:
    _, problems = load(
        tmp_path,
        """
        rootz: {}
        roots: [a]
        rules: {name: x}
        workflows: [a]
        ---
        - just a list
        ---
        just a string
        """,
        registry,
    )
    assert spots(problems[:2] + problems[3:]) == [
        "1:1: unknown top-level key 'rootz' (did you mean 'roots'?)",
        "6:1: a rule file is a mapping with roots:, rules: and workflows: (or a resource with"
        " apiVersion: and kind:), got ['just a list']",
        "2:8: roots: wants a mapping of names to paths, like `downloads: ~/Downloads`",
        "3:8: rules: wants a list of rules (`- name: ...`), got {'name': 'x'}",
        "4:12: workflows: wants a mapping of names to definitions, got ['a']",
    ]
    # a scalar document has no position of its own: the problem names the file only
    assert str(problems[2]) == (
        f"{tmp_path / 'rules.yaml'}: a rule file is a mapping with roots:, rules: and"
        " workflows: (or a resource with apiVersion: and kind:), got 'just a string'"
    )


def test_yaml_errors_and_unreadable_files(tmp_path: Path, registry: Registry) -> None:
    _, problems = load(tmp_path, "rules:\n  - name: [unclosed\n", registry)
    assert problems[0].message.startswith("YAML syntax error")
    assert problems[0].where.line == 3
    _, problems = load(tmp_path, "roots: {a: /x}\nroots: {b: /y}\n", registry)
    assert problems[0].where.line == 2 and "duplicate" in problems[0].message
    _, problems = load(tmp_path, "# only a comment\n", registry)
    assert problems == []
    missing = tmp_path / "missing.yaml"
    _, problems = load_rules([missing], registry)
    assert str(problems[0]).startswith(f"{missing}: cannot read")


def test_resource_documents(tmp_path: Path, registry: Registry) -> None:
    ruleset, problems = load(
        tmp_path,
        """
        workflows:
          compact: {tasks: []}
        ---
        apiVersion: clerk/v1
        kind: Task
        metadata: {name: thumb}
        spec: {executor: shell, command: [ffmpeg]}
        ---
        apiVersion: clerk/v1
        kind: Workflow
        metadata:
          name: flow
          labels: {team: media}
        spec:
          tasks: [{name: a, taskRef: thumb}]
        ---
        apiVersion: clerk/v1
        kind: Workflw
        metadata: {name: typo}
        spec: {}
        ---
        kind: Task
        metadata: {title: x}
        spec: 3
        status: {}
        ---
        apiVersion: clerk/v1
        kind: Task
        metadata: {name: compact}
        spec: {}
        """,
        registry,
    )
    assert sorted(ruleset.workflows) == ["compact", "flow", "thumb"]
    assert ruleset.workflows["thumb"] == {
        "apiVersion": "clerk/v1",
        "kind": "Task",
        "metadata": {"name": "thumb"},
        "spec": {"executor": "shell", "command": ["ffmpeg"]},
    }
    sources = ruleset.workflow_sources
    assert (sources["flow"].form, sources["thumb"].form, sources["compact"].form) == (
        "Workflow",
        "Task",
        "compact",
    )
    assert str(sources["flow"].where).endswith(":12:9")
    assert spots(problems) == [
        "18:7: unknown kind 'Workflw' (did you mean 'Workflow'?)",
        "25:1: unknown resource key 'status' (expected one of: apiVersion, kind, metadata, spec)",
        "22:1: a resource document needs apiVersion:",
        "23:1: metadata: needs a name:",
        "24:7: a Task needs a spec: mapping",
        f"29:18: workflow 'compact' is already defined at {tmp_path / 'rules.yaml'}:2:3",
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path, registry: Registry) -> None:
    _, problems = load(
        tmp_path,
        """
        roots:
          inbox: {path: /tmp/in, recursiv: false}
        rules:
          - name: one
            in: inbox
            match: [{extention: pdf}]
            actions: [{mvoe: /tmp/x}]
          - name: two
            in: inbox
            on: [creatd]
            actions: [{trash: {}, on_conflict: skip}]
        """,
        registry,
    )
    assert spots(problems) == [
        "2:26: unknown root key 'recursiv' (did you mean 'recursive'?)",
        "6:14: unknown filter 'extention' (did you mean 'extension'?)",
        "7:16: unknown action 'mvoe' (did you mean 'move'?)",
        "10:10: unknown trigger 'creatd' (did you mean 'created'?)",
        "11:27: trash takes no options, got 'on_conflict'",
    ]


def test_root_overrides_rebind_and_rebase(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ruleset, problems = load(
        tmp_path,
        """
        roots:
          downloads: ~/Downloads
          organized: {path: ~/Organized, watch: false}
          photos: ~/Organized/Photos
        rules:
          - name: sort
            in: downloads
            actions:
              - move: "~/Organized/Docs/{name}"
              - move: "~/Organized/Photos/{name}"
              - move: "~/OrganizedElsewhere/{name}"
              - move: "{stem}.bak"
        """,
        registry,
        root_overrides={"organized": "demo/out", "photos": "/srv/p", "downloads": "/srv/in"},
    )
    assert problems == []
    assert ruleset.roots["organized"].path == str(tmp_path / "demo" / "out")
    assert ruleset.roots["organized"].watch is False  # only the path changes
    assert ruleset.roots["downloads"].path == "/srv/in"
    assert [s.action.value for s in ruleset.rules[0].actions] == [
        f"{tmp_path}/demo/out/Docs/{{name}}",
        "/srv/p/{name}",  # the most specific root wins
        "~/OrganizedElsewhere/{name}",  # not inside the root: left alone
        "{stem}.bak",
    ]
    assert str(ruleset.root_path_locations["organized"]) == "--root"


def test_unknown_root_override(tmp_path: Path, registry: Registry) -> None:
    _, problems = load(
        tmp_path,
        "roots: {downloads: /tmp/d}\n",
        registry,
        root_overrides={"download": "/x", "downloads": "$CLERK_TEST_UNSET"},
    )
    assert [str(p) for p in problems] == [
        "--root: --root download=/x: unknown root 'download' (did you mean 'downloads'?)",
        "--root: --root downloads=$CLERK_TEST_UNSET: environment variable $CLERK_TEST_UNSET"
        " is not set",
    ]


def test_real_plugin_manager_registry(tmp_path: Path) -> None:
    """Filters and actions from plugins registered through the hooks are used by name."""

    class Even(Filter):
        def __init__(self, value: Any):
            super().__init__(value)
            if not isinstance(value, bool):
                raise SpecError("even wants true or false")

        def match(self, file: Any) -> Verdict:
            return Verdict(file.size % 2 == 0)

    class Plugin:
        @hookimpl
        def register_filters(self, register: Any) -> None:
            register("even", Even)

    pm = make_plugin_manager(autoload=False)
    pm.register(Plugin(), name="even-plugin")
    ruleset, problems = load(
        tmp_path,
        """
        roots: {r: /tmp}
        rules:
          - name: evens
            match: [{even: true}, {extension: pdf}]
            actions: [{trash: {}}]
          - name: odd
            match: {even: maybe}
            actions: []
        """,
        pm.registry(),
    )
    assert spots(problems) == ["7:19: even wants true or false"]
    match = ruleset.rules[0].match
    assert isinstance(match, AllNode) and isinstance(match.children[0], FilterNode)
    assert isinstance(match.children[0].filter, Even)


def test_compact_workflows_and_in_shapes(tmp_path: Path, registry: Registry) -> None:
    ruleset, problems = load(
        tmp_path,
        """
        roots: {a: /tmp/a}
        rules:
          - {name: x, in: 5, actions: []}
          - {name: y, in: [a, 3], actions: []}
          - {name: z, in: [], match: {}, actions: []}
        workflows:
          ok: {tasks: [{name: t, executor: shell, command: [x]}]}
          notmapping: 3
          1: {tasks: []}
        """,
        registry,
    )
    assert spots(problems) == [
        "3:19: in: wants a root name or a list of them, got 5",
        "4:23: in: wants a root name, got 3",
        "5:19: in: wants at least one root name",
        "8:15: workflow 'notmapping' wants a mapping with tasks:, got 3",
        "9:3: a workflow name is text, got 1",
    ]
    empty_match = ruleset.rules[2].match
    assert isinstance(empty_match, AllNode) and empty_match.children == []
    assert list(ruleset.workflows) == ["ok"]
    assert ruleset.workflow_sources["ok"].form == "compact"


def test_a_path_longer_than_path_max_is_refused_at_once(tmp_path: Path, registry: Registry) -> None:
    # `${` 20,000 times took expandvars 3 s, and the time grows with the square
    _, problems = load(tmp_path, "roots:\n  inbox: '" + "${" * 200_000 + "'\n", registry)
    assert len(problems) == 1 and problems[0].where.line == 2
    assert "at most 4096 characters" in problems[0].message
