"""Fuzz the loader and the checks: whatever the text, they return problems, never raise."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
