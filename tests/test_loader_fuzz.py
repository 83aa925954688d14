"""Fuzz the loader and the checks: whatever the text, they return problems, never raise.

Two levels: `load_rules` + `check_rules` on token soup and mutated examples, and the
`clerk check` command itself (click's CliRunner, in-process) on rule files drawn from
the grammar with hostile values in every field, on random bytes, and on deep nesting.
Whatever it is given, `clerk check` prints file:line:col problems (or ok) and exits 0
or 1: never a traceback, never a hang (each run has a deadline). The suite runs small
example budgets; `pytest -m slow` runs large ones.
"""

from __future__ import annotations

import io
import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from clerk.cli import cli
from clerk.errors import Location, Problem
from clerk.plugins.api import EffectAction
from clerk.plugins.manager import Registry, make_plugin_manager
from clerk.rules.check import check_rules
from clerk.rules.loader import RESOURCE_KEYS, ROOT_KEYS, RULE_KEYS, TOP_KEYS, load_rules

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted([REPO / "rules" / "downloads.yaml", *(REPO / "rules" / "examples").glob("*.yaml")])
SHIPPED_LINES = [p.read_text(encoding="utf-8").splitlines() for p in SHIPPED]

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

KEYS = [
    *TOP_KEYS, *ROOT_KEYS, *RULE_KEYS, *RESOURCE_KEYS, "all", "any", "not", "tasks",
    "depends_on", "dependsOn", "executor", "command", "retry", "resources", "timeout",
    "taskRef", "extension", "mime", "regex", "content", "size", "age", "move", "trash",
    "tag", "run", "on_conflict", "permanent", "1", "null", "<<", "?",
]  # fmt: skip
SCALARS = [
    "true", "false", "null", "~", "0", "-1", "3.5", "1e400", "''", '""', "[]", "{}", "[[]]",
    "'{name}'", '"{x.y:%Y}"', "'{'", "'}'", "'{name!r}'", "5m", "abc", "/tmp", "~/x/{name}",
    "'0 3 * * *'", "'* * * * * *'", "'> 30d'", "'>= 10KB'", "image/*", "[deb, iso]", "shell",
    "[a, b]", "{a: b}", "2024-01-01", "0x1F", ".inf", "&a x", "*a", "!!binary aGk=",
    "'(?P<g>x)'", "'('", "$HOME/x", "$NOPE/x", "'\\0'", "Workflow", "Task", "clerk/v1",
]  # fmt: skip
TOKENS = [
    *(f"{k}:" for k in KEYS), *SCALARS, "\n", "\n  ", "\n    ", "\n  - ", "\n      - ", "- ",
    " ", ": ", ", ", "{", "}", "[", "]", "---\n", "#", "'", '"', "|\n  ", ">\n  ", "\t", "%",
    "@", "`", "&", "*", "!", "?", "\\",
]  # fmt: skip


def registry() -> Registry:
    reg = make_plugin_manager(autoload=False).registry()
    if "run" not in reg.actions:

        class Run(EffectAction):  # stands in until the execution engine registers `run`
            def describe(self, target: object) -> str:
                return "run"

            def apply(self, target: object) -> None:
                return None

        reg.actions["run"] = Run
    return reg


REGISTRY = registry()


def assert_only_problems(tmp_path: Path, texts: list[str]) -> None:
    files = []
    for index, text in enumerate(texts):
        path = tmp_path / f"fuzz{index}.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        files.append(path)
    ruleset, problems = load_rules(files, REGISTRY, root_overrides={"downloads": "/tmp/d"})
    problems += check_rules(ruleset, REGISTRY, check_paths=True)
    for problem in problems:
        assert isinstance(problem, Problem) and isinstance(problem.where, Location)
        assert problem.severity in ("error", "warning")
        assert str(problem)  # every problem prints as file:line:col: message
    assert {str(f) for f in ruleset.files} == {str(f) for f in files}


yaml_soup = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)


@FUZZ
@given(texts=st.lists(st.one_of(yaml_soup, st.text(max_size=200)), min_size=1, max_size=3))
def test_random_text_never_raises(tmp_path: Path, texts: list[str]) -> None:
    assert_only_problems(tmp_path, texts)


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    lines = list(draw(st.sampled_from(SHIPPED_LINES)))
    for _ in range(draw(st.integers(1, 6))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "scalar", "key", "indent"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(j, lines[i])
        elif op == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "scalar" and ":" in lines[i]:
            head = lines[i].split(":", 1)[0]
            lines[i] = f"{head}: {draw(st.sampled_from(SCALARS))}"
        elif op == "key":
            indent = len(lines[i]) - len(lines[i].lstrip())
            key = draw(
                st.one_of(st.sampled_from(KEYS), st.from_regex(r"[a-z_]{1,12}", fullmatch=True))
            )
            lines.insert(i, " " * indent + f"{key}: {draw(st.sampled_from(SCALARS))}")
        elif op == "indent":
            lines[i] = draw(st.sampled_from(["", "  ", "    ", "- "])) + lines[i].lstrip()
    return "\n".join(lines) + "\n"


@FUZZ
@given(texts=st.lists(mutated_example(), min_size=1, max_size=2))
def test_mutated_examples_never_raise(tmp_path: Path, texts: list[str]) -> None:
    assert_only_problems(tmp_path, texts)


# --- clerk check, on the rule grammar -------------------------------------------------------

FILTERS = ["name", "regex", "extension", "mime", "size", "age", "modified", "path",
           "content", "duplicate", "tag", "attr"]  # fmt: skip
ACTIONS = ["move", "copy", "rename", "symlink", "hardlink", "archive", "trash", "delete",
           "tag", "run"]  # fmt: skip
HUGE = [10**400, -(10**400), 10**19, 2**63, -(2**63) - 1, 1e308, float("inf"),
        float("-inf"), float("nan"), 0, -1]  # fmt: skip
HOSTILE_TEXT = [
    "{name:%Q}", "{size:>>>}", "{mtime:%}", "{mtime:%Y}", "{now:%F}", "{name!r}", "{name!x}",
    "{", "}", "{{}}", "{}", "{0}", "{name[0]}", "{name.__class__}", "{size:,.2f}",
    "{size:99999999999}", "{size:.99999999999f}", "{mtime:%Y%Q%}", "{exif.taken:%Y}",
    "{x.y.z}", "{name:{size}}", "{size:<{name}}", "{stem}-{ext}", "{relpath}", "{reldir}",
    "> 1e308KB", "> 1e999KB", "> 99999999999999999999999999d", ">= 10KB", "< 5MB",
    "> 30d", "1e999s", "-5s", "0s", "5m", "1h30m", "nan", "inf", "-inf", "99999999999w",
    "10" * 200, ">= 2024-01-01", "> 9999-99-99", ">= 0001-01-01", "image/*", "*/*", "/",
    "(a+)+$", "(a)\\1", "(?=x)", "(?P<g>x)", "(?P<g>", "[", "\\", "a{99999}", "*",
    "**/*.pdf", "[!a-", "[]", "~", "~nobody/x", "$NOPE/x", "${HOME}/x", "/tmp/{name}",
    "~/out/{name}", "../../etc/passwd", "a\x00b", "\t", " ", "", "é" * 50, "\u202e",
    "0 3 * * *", "* * * * * *", "61 25 * * *", "@daily", "shell", "python", "http",
    "mod:func", "no_colon", "true", "null", "[]", "{}", "1" + " " * 50_000 + "!",
    "${" * 3000, "> " + " " * 50_000 + "2024-01", "x" * 5000,
]  # fmt: skip


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(HOSTILE_TEXT),
        st.sampled_from(HUGE),
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=20),
    )


def values(depth: int = 2) -> st.SearchStrategy[Any]:
    leaf = scalars()
    if depth <= 0:
        return leaf
    inner = values(depth - 1)
    return st.one_of(
        leaf,
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=8)), inner, max_size=3
        ),
    )


def sometimes_hostile(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly `valid` (so the checks behind it run), sometimes anything."""
    return st.one_of(valid, valid, valid, scalars(), values(1))


TEMPLATES = st.one_of(
    st.sampled_from(["/tmp/out/{name}", "/tmp/out/{mtime:%Y}/{mtime:%m}/{name}",
                     "/tmp/out/{stem}.{ext}", "~/x/{name}", "{name}-{size}", "/tmp/out/{num}"]),
    st.builds(lambda a, b: f"/tmp/out/{a}/{b}", st.sampled_from(HOSTILE_TEXT),
              st.sampled_from(HOSTILE_TEXT)),
)  # fmt: skip
GLOBS = st.sampled_from(["*.pdf", "IMG_*", "[!a]*", "*", "", "[", "**/x", "a[b-", "?*?"])
PATTERNS = st.sampled_from(["IMG_(?P<num>\\d+)", "(a+)+$", "(a)\\1", "(?=x)", "(?P<g>",
                            "x{1001}", "(?i)inv", "[[:alpha:]]", "\\Z", "a++", ""])  # fmt: skip
COMPARISONS = st.sampled_from([">= 10KB", "< 5MB", "> 30d", "<= 1h", "== 0", "!= 7",
                               ">= 2024-01-01", "> 1e308KB", "> 99999999999999999999999d",
                               "1e999s", ">>", "> ", "9" * 30 + "TB", "> -5s"])  # fmt: skip
FILTER_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(GLOBS, st.lists(GLOBS, max_size=3),
                      st.fixed_dictionaries({}, optional={"glob": GLOBS, "startswith": GLOBS,
                                                          "case_sensitive": st.booleans()})),
    "regex": st.one_of(PATTERNS, st.fixed_dictionaries(
        {"pattern": PATTERNS}, optional={"on": st.sampled_from(["name", "relpath", "x"])})),
    "content": st.one_of(PATTERNS, st.fixed_dictionaries(
        {"pattern": PATTERNS}, optional={"case_sensitive": st.booleans()})),
    "extension": st.one_of(st.sampled_from(["pdf", ".PDF", ""]), st.lists(st.text(max_size=4))),
    "mime": st.sampled_from(["image/*", "application/pdf", "nope", "*/*"]),
    "size": st.one_of(COMPARISONS, st.lists(COMPARISONS, max_size=2)),
    "age": st.one_of(COMPARISONS, st.lists(COMPARISONS, max_size=2)),
    "modified": st.one_of(COMPARISONS, st.lists(COMPARISONS, max_size=2), st.dates()),
    "path": st.one_of(GLOBS, st.lists(GLOBS, max_size=2)),
    "duplicate": st.one_of(st.booleans(), st.fixed_dictionaries(
        {"original": st.sampled_from(["first_seen", "oldest", "shortest_name", "x"])})),
    "tag": st.one_of(st.text(max_size=6), st.lists(st.text(max_size=6), max_size=2)),
    "attr": st.dictionaries(st.sampled_from(["stat.owner", "stat.mode", "exif.taken", "nodot"]),
                            st.one_of(COMPARISONS, GLOBS, st.booleans(), st.integers()),
                            max_size=2),
}  # fmt: skip
ACTION_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "move": TEMPLATES, "copy": TEMPLATES, "rename": st.sampled_from(["{stem}.old", "x/y", "{"]),
    "symlink": TEMPLATES, "hardlink": TEMPLATES, "archive": TEMPLATES,
    "trash": st.just({}), "delete": st.fixed_dictionaries({}, optional={"permanent": scalars()}),
    "tag": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=2)),
    "run": st.sampled_from(["ocr", "nope", ""]),
}  # fmt: skip


@st.composite
def match_tree(draw: st.DrawFn, depth: int = 3) -> Any:
    if depth > 0 and draw(st.integers(0, 3)) == 0:
        combinator = draw(st.sampled_from(["all", "any", "not"]))
        children = draw(st.lists(match_tree(depth - 1), max_size=3))
        return {combinator: children[0] if combinator == "not" and children else children}
    name = draw(st.one_of(st.sampled_from(FILTERS), st.text(max_size=8)))
    valid = FILTER_VALUES.get(name, scalars())
    return {name: draw(sometimes_hostile(valid))}


@st.composite
def action(draw: st.DrawFn) -> Any:
    name = draw(st.one_of(st.sampled_from(ACTIONS), st.text(max_size=8)))
    step: dict[Any, Any] = {name: draw(sometimes_hostile(ACTION_VALUES.get(name, scalars())))}
    options = ["on_conflict", "permanent", "keep_source", "format", "params", "x"]
    for option in draw(st.lists(st.sampled_from(options), max_size=2)):
        step[option] = draw(st.one_of(
            st.sampled_from(["rename", "skip", "overwrite", "dedupe", "fail", "zip", "tar"]),
            scalars()))  # fmt: skip
    return step


NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
MAP_KEYS = st.one_of(NAMES, NAMES, st.sampled_from(HOSTILE_TEXT), st.integers(), st.none(),
                 st.booleans())  # fmt: skip


@st.composite
def rule(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = {"name": draw(sometimes_hostile(NAMES))}
    optional = {
        "in": sometimes_hostile(st.sampled_from(["inbox", ["inbox", "out"], "nowhere"])),
        "on": sometimes_hostile(st.lists(st.sampled_from(["created", "moved", "scan", "x"]))),
        "match": sometimes_hostile(st.lists(match_tree(), max_size=4) | match_tree()),
        "actions": sometimes_hostile(st.lists(action(), max_size=3)),
        "continue": scalars(),
        "schedule": sometimes_hostile(st.sampled_from(["0 3 * * *", "*/5 * * * *", "61 * * * *"])),
        "every": sometimes_hostile(COMPARISONS | st.sampled_from(["5m", "1h"])),
        "after": sometimes_hostile(st.sampled_from(["5m", "1h", "0s"])),
        "keep_newest": scalars(), "group_by": scalars(), "enabled": scalars(),
    }  # fmt: skip
    keys = draw(st.lists(st.sampled_from(sorted(optional)), unique=True))
    if draw(st.integers(0, 3)):
        keys = sorted({*keys, "in", "match", "actions"})
    for key in keys:
        body[key] = draw(optional[key])
    return body


@st.composite
def task(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = {"name": draw(sometimes_hostile(st.sampled_from(["a", "b", "c"])))}
    optional = {
        "executor": sometimes_hostile(st.sampled_from(["shell", "python", "http", "nope"])),
        "command": sometimes_hostile(
            st.lists(st.one_of(TEMPLATES, st.sampled_from(HOSTILE_TEXT)), max_size=3)
        ),
        "call": sometimes_hostile(st.sampled_from(["mod:func", "nocolon", "a.b:c"])),
        "url": sometimes_hostile(st.sampled_from(["http://x/{name}", "ftp://x", ""])),
        "timeout": sometimes_hostile(COMPARISONS | st.sampled_from(["5m", "300s"])),
        "retry": sometimes_hostile(
            st.dictionaries(st.sampled_from(["max", "backoff", "factor"]), scalars())
        ),
        "resources": sometimes_hostile(
            st.dictionaries(st.sampled_from(["cpu", "memory"]), COMPARISONS | scalars())
        ),
        "depends_on": sometimes_hostile(st.lists(st.sampled_from(["a", "b", "c", "z"]))),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        body[key] = draw(optional[key])
    return body


@st.composite
def rule_file(draw: st.DrawFn) -> Any:
    doc: dict[str, Any] = {}
    if draw(st.integers(0, 3)):
        roots: dict[Any, Any] = {"inbox": "/tmp", "out": {"path": "/tmp", "watch": False}}
        for _ in range(draw(st.integers(0, 2))):
            roots[draw(MAP_KEYS)] = draw(
                st.one_of(
                    scalars(),
                    st.dictionaries(
                        st.sampled_from(
                            [
                                "path",
                                "recursive",
                                "watch",
                                "poll",
                                "settle",
                                "ignore",
                                "follow_symlinks",
                            ]
                        ),
                        scalars(),
                    ),
                )
            )
        doc["roots"] = roots
    doc["rules"] = draw(st.lists(rule(), max_size=4))
    if draw(st.booleans()):
        doc["workflows"] = draw(st.dictionaries(
            st.one_of(st.sampled_from(["ocr", "x"]), MAP_KEYS),
            st.one_of(st.fixed_dictionaries({"tasks": st.lists(task(), max_size=3)},
                                            optional={"parallelism": scalars()}), scalars()),
            max_size=2))  # fmt: skip
    return doc


def to_yaml(data: Any) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


DEADLINE = 30  # seconds for one `clerk check`; the slowest example here takes well under 1
_REPORT_LINE = re.compile(r"(ok: \d+ rules, .*|\d+ errors? found)")


class Hung(Exception):
    pass


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise Hung(f"clerk check ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def clerk_check(clerk_home: Path) -> Callable[[bytes], str]:
    """Run `clerk check` in-process on one rule file; return what it printed."""
    rules_dir = clerk_home / "rules.d"
    rules_dir.mkdir(exist_ok=True)
    path = rules_dir / "fuzz.yaml"

    def run(data: bytes) -> str:
        path.write_bytes(data)
        with deadline(DEADLINE):
            result = CliRunner().invoke(cli, ["check"], catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"clerk check raised on {data[:500]!r}") from result.exception
        assert result.exit_code in (0, 1), (result.exit_code, result.output)
        for line in result.output.splitlines():
            assert line.startswith(f"{path}") or _REPORT_LINE.fullmatch(line), (line, data[:500])
        return result.output

    return run


CLI_FUZZ = settings(FUZZ, max_examples=40)
CLI_FUZZ_LARGE = settings(FUZZ, max_examples=3000)


def check_grammar(clerk_check: Callable[[bytes], str], doc: Any) -> None:
    clerk_check(to_yaml(doc).encode("utf-8", errors="surrogatepass"))


@CLI_FUZZ
@given(doc=rule_file())
def test_the_rule_grammar_through_clerk_check(
    clerk_check: Callable[[bytes], str], doc: Any
) -> None:
    check_grammar(clerk_check, doc)


@pytest.mark.slow
@CLI_FUZZ_LARGE
@given(doc=rule_file())
def test_the_rule_grammar_through_clerk_check_at_length(
    clerk_check: Callable[[bytes], str], doc: Any
) -> None:
    check_grammar(clerk_check, doc)


BYTES = st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from([*(t.encode() for t in TOKENS), b"\xff", b"\xc3", b"\xe2\x82",
                              b"\xed\xa0\x80", b"\x00", b"\x1b", b"\xef\xbb\xbf"]),
             max_size=60).map(b"".join),
)  # fmt: skip


@CLI_FUZZ
@given(data=BYTES)
def test_random_bytes_through_clerk_check(clerk_check: Callable[[bytes], str], data: bytes) -> None:
    clerk_check(data)


@pytest.mark.slow
@CLI_FUZZ_LARGE
@given(data=BYTES)
def test_random_bytes_through_clerk_check_at_length(
    clerk_check: Callable[[bytes], str], data: bytes
) -> None:
    clerk_check(data)


DEEP = 2000
NESTINGS = {
    "flow sequences": "rules: " + "[" * DEEP + "]" * DEEP + "\n",
    "flow mappings": "rules: " + "{a: " * DEEP + "x" + "}" * DEEP + "\n",
    "block sequences": "rules:\n" + "".join("  " * i + "-\n" for i in range(1, DEEP)),
    "block mappings": "rules:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, DEEP)),
    "match trees": "rules:\n  - name: r\n    match: " + "{not: " * DEEP + "{tag: x}"
    + "}" * DEEP + "\n    actions: []\n",
    "unclosed": "rules: " + "[{" * DEEP + "\n",
}  # fmt: skip


@pytest.mark.parametrize("text", NESTINGS.values(), ids=NESTINGS.keys())
def test_deep_nesting_through_clerk_check(clerk_check: Callable[[bytes], str], text: str) -> None:
    output = clerk_check(text.encode())
    assert re.search(r":\d+:\d+: ", output), output  # a place, not a RecursionError


HUGE_FIELDS = [
    "size: {v}", "age: {v}", "modified: {v}", "every: {v}", "after: {v}", "keep_newest: {v}",
    "settle: {v}", "timeout: {v}", "retry: {{max: {v}, backoff: {v}}}", "parallelism: {v}",
    "resources: {{memory: {v}, cpu: {v}}}",
]  # fmt: skip
HUGE_VALUES = ["1" + "0" * 400, "-1" + "0" * 400, "1e400", ".inf", "-.inf", ".nan",
               "'> 1e308KB'", "'> 99999999999999999999999999d'", "'9" + "9" * 400 + "w'",
               "0x" + "f" * 300, "1" + "0" * 5000]  # fmt: skip


@pytest.mark.parametrize("value", HUGE_VALUES, ids=lambda v: v[:12])
def test_huge_numbers_in_every_field(clerk_check: Callable[[bytes], str], value: str) -> None:
    fields = [f.format(v=value) for f in HUGE_FIELDS]
    rule = {"size", "age", "modified"}
    match = [f for f in fields if f.split(":")[0] in rule]
    rule_keys = [f for f in fields if f.split(":")[0] in ("every", "after", "keep_newest")]
    task_keys = [f for f in fields if f.split(":")[0] in ("timeout", "retry", "resources")]
    text = (
        "roots:\n  inbox: {path: /tmp, " + fields[6] + "}\nrules:\n  - name: r\n    in: inbox\n"
        + "".join(f"    {f}\n" for f in rule_keys)
        + "    match:\n" + "".join(f"      - {{{f}}}\n" for f in match)
        + "    actions: [{copy: '/tmp/{name}'}]\n"
        + "workflows:\n  w:\n    " + fields[9] + "\n    tasks:\n"
        + "      - {name: t, executor: shell, command: [x], "
        + ", ".join(task_keys) + "}\n"
    )  # fmt: skip
    output = clerk_check(text.encode())
    assert "error" in output, output  # each of these is refused somewhere, with its place


FORMAT_SPECS = ["{name:%Q}", "{size:>>>}", "{size:99999999999}", "{size:.99999999999f}",
                "{mtime:%}", "{mtime:%100000Y}", "{name:" + "<" * 300 + "}", "{size:,.2f}",
                "{name!r}", "{name:{size}}", "{size:0>255}", "{now:%F %T}"]  # fmt: skip


@pytest.mark.parametrize("spec", FORMAT_SPECS)
def test_format_specs_through_clerk_check(clerk_check: Callable[[bytes], str], spec: str) -> None:
    text = (
        "roots:\n  inbox: /tmp\nrules:\n  - name: r\n    match: [{name: '*'}]\n"
        f"    actions: [{{copy: '/tmp/{spec}'}}, {{tag: '{spec}'}}]\n"
    )
    clerk_check(text.encode())
