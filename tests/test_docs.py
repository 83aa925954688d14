"""The documentation tells the truth: examples load, references cover everything, the CLI
reference matches the click tree, and the plugin guide's examples run."""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from clerk.config import PluginSettings, Settings
from clerk.errors import Problem
from clerk.fileops.types import CONFLICT_POLICIES, OpResult
from clerk.plugins.hookspecs import hook_names
from clerk.plugins.manager import make_plugin_manager
from clerk.rules.check import check_rules
from clerk.rules.engine import Engine
from clerk.rules.fileinfo import STANDARD_FIELDS
from clerk.rules.loader import RULE_KEYS, load_rules
from clerk.rules.model import TRIGGERS

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
ROOTS_MARKER = "# The roots the examples on this page use."
# Workflow examples name real programs; a machine without them gets a warning, not an error.
PORTABLE_WARNING = re.compile(r"executable '[^']+' not found")


@dataclass
class Block:
    lang: str
    text: str
    line: int  # line of the first content line in the Markdown file

    def top_keys(self) -> set[str]:
        return set(re.findall(r"^([A-Za-z_]+):", self.text, re.MULTILINE))


def fenced_blocks(path: Path) -> list[Block]:
    blocks, lang, start, lines = [], None, 0, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence and lang is None:
            lang, start, lines = fence.group(1), number + 1, []
        elif line.startswith("```") and lang is not None:
            blocks.append(Block(lang, "\n".join(lines) + "\n", start))
            lang = None
        elif lang is not None:
            lines.append(line)
    assert lang is None, f"{path}: unclosed code fence opened at line {start - 1}"
    return blocks


def yaml_blocks(path: Path) -> list[Block]:
    return [b for b in fenced_blocks(path) if b.lang == "yaml"]


def load_example(block: Block, directory: Path, roots_text: str | None) -> list[Problem]:
    """Load a rule-file example the way `clerk` does; the shared roots file comes first."""
    files = []
    if roots_text is not None and "roots" not in block.top_keys():
        shared = directory / "00-roots.yaml"
        shared.write_text(roots_text, encoding="utf-8")
        files.append(shared)
    example = directory / f"example-{block.line}.yaml"
    example.write_text(block.text, encoding="utf-8")
    files.append(example)
    registry = make_plugin_manager().registry()
    ruleset, problems = load_rules(files, registry)
    return [*problems, *check_rules(ruleset, registry, check_paths=False)]


def blocking(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error" or not PORTABLE_WARNING.search(p.message)]


def shared_roots(path: Path) -> str:
    found = [b.text for b in yaml_blocks(path) if ROOTS_MARKER in b.text]
    assert len(found) == 1, f"{path} needs exactly one block marked {ROOTS_MARKER!r}"
    return found[0]


def rule_examples() -> list[Block]:
    return yaml_blocks(DOCS / "rules.md")


def guide_examples() -> list[Block]:
    return [b for b in yaml_blocks(DOCS / "getting-started.md") if "rules" in b.top_keys()]


# --- docs/rules.md ---------------------------------------------------------------------


@pytest.mark.parametrize("block", rule_examples(), ids=lambda b: f"rules.md:{b.line}")
def test_rules_example_loads_cleanly(block: Block, tmp_path: Path) -> None:
    """Every YAML block is a complete rule file that loads with no error (and no warning)."""
    allowed = {"roots", "rules", "workflows", "apiVersion", "kind", "metadata", "spec"}
    assert block.top_keys(), f"rules.md:{block.line}: not a rule file (a snippet?)"
    assert block.top_keys() <= allowed, f"rules.md:{block.line}: {block.top_keys() - allowed}"
    roots = None if ROOTS_MARKER in block.text else shared_roots(DOCS / "rules.md")
    problems = blocking(load_example(block, tmp_path, roots))
    shown = "\n".join(f"  {p}" for p in problems)
    assert not problems, f"docs/rules.md example at line {block.line}:\n{shown}"


@pytest.mark.parametrize("block", guide_examples(), ids=lambda b: f"getting-started.md:{b.line}")
def test_getting_started_example_loads_cleanly(block: Block, tmp_path: Path) -> None:
    problems = blocking(load_example(block, tmp_path, None))
    assert not problems, f"docs/getting-started.md:{block.line}: {[str(p) for p in problems]}"


def test_example_harness_catches_a_broken_example(tmp_path: Path) -> None:
    """The check above can fail: a misspelt filter in an example is an error."""
    broken = Block("yaml", "rules:\n  - name: x\n    in: inbox\n    match: {extention: pdf}\n"
                   "    actions: []\n", 1)  # fmt: skip
    problems = blocking(load_example(broken, tmp_path, shared_roots(DOCS / "rules.md")))
    assert any("unknown filter 'extention'" in p.message for p in problems)


def test_rules_reference_covers_every_filter_action_field_and_policy() -> None:
    text = (DOCS / "rules.md").read_text(encoding="utf-8")
    registry = make_plugin_manager().registry()
    headings = set(re.findall(r"^### (\S+)", text, re.MULTILINE))
    missing = {
        "filters": set(registry.filters) - headings,
        "actions": set(registry.actions) - headings,
        "template fields": {f for f in STANDARD_FIELDS if f"| `{f}` |" not in text},
        "conflict policies": {p for p in CONFLICT_POLICIES if f"| `{p}`" not in text},
        "rule keys": {k for k in RULE_KEYS if f"| `{k}` |" not in text},
        "triggers": {t for t in TRIGGERS if f"| `{t}` |" not in text},
        "classifiers": {ns for ns in registry.classifiers if f"{{{ns}." not in text},
    }
    assert not any(missing.values()), {k: v for k, v in missing.items() if v}


def test_every_filter_and_action_has_a_tested_example() -> None:
    """Each filter and action appears in at least one YAML example, not just in prose."""
    examples = "\n".join(b.text for b in rule_examples())
    registry = make_plugin_manager().registry()
    used = set(re.findall(r"^\s*(?:- )?(\w+):", examples, re.MULTILINE))
    assert set(registry.filters) - used == set()
    assert set(registry.actions) - used == set()


def test_documented_dry_run_behaviour(tmp_path: Path) -> None:
    """The first-match-wins example does what the page says, file by file."""
    block = next(b for b in rule_examples() if "keep-drafts-here" in b.text)
    home = Path.home()
    (home / "Downloads").mkdir()
    for name in ("a-draft.pdf", "report.pdf", "photo.png"):
        (home / "Downloads" / name).write_bytes(b"%PDF-1.4\n" + name.encode())
    registry = make_plugin_manager().registry()
    roots = tmp_path / "roots.yaml"
    roots.write_text(shared_roots(DOCS / "rules.md"), encoding="utf-8")
    example = tmp_path / "example.yaml"
    example.write_text(block.text, encoding="utf-8")
    ruleset, problems = load_rules([roots, example], registry)
    assert not problems
    summary = Engine(ruleset, registry, None, dry_run=True, keep_outcomes=True).scan()
    outcome = {Path(o.path).name: o for o in summary.outcomes}
    assert outcome["a-draft.pdf"].rules == ["keep-drafts-here"]
    assert not outcome["a-draft.pdf"].ops and not outcome["a-draft.pdf"].effects
    assert outcome["report.pdf"].rules == ["tag-everything", "pdfs"]
    assert [op.dst for op in outcome["report.pdf"].ops] == [str(home / "Documents/report.pdf")]
    assert outcome["photo.png"].rules == ["tag-everything", "everything-else"]
    assert outcome["photo.png"].ops[0].dst == str(home / "Archive/Unsorted/photo.png")


def test_sanitizing_example_is_true(tmp_path: Path) -> None:
    """`{mime}` in a path gives image_png; a captured `a/b` gives a_b (as documented)."""
    home = Path.home()
    nested = home / "Inbox" / "a" / "b"
    nested.mkdir(parents=True)
    (nested / "x.md").write_text("plain words\n", encoding="utf-8")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        textwrap.dedent(
            """\
            roots:
              inbox: ~/Inbox
              archive: {path: ~/Archive, watch: false}
            rules:
              - name: nested
                in: inbox
                match:
                  regex: {pattern: '^(?P<top>.*)/[^/]+$', on: relpath}
                actions:
                  - copy: "~/Archive/{top}/{mime}/{name}"
            """
        ),
        encoding="utf-8",
    )
    registry = make_plugin_manager().registry()
    ruleset, problems = load_rules([rules], registry)
    assert not problems
    summary = Engine(ruleset, registry, None, dry_run=True, keep_outcomes=True).scan()
    [outcome] = summary.outcomes
    assert outcome.ops[0].dst == str(home / "Archive" / "a_b" / "text_plain" / "x.md")


# --- docs/cli.md ----------------------------------------------------------------------


def run_cog(*args: str) -> tuple[int, str]:
    from cogapp import Cog

    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        status = Cog().main(["cog", *args])
    return status, out.getvalue()


def test_cli_reference_is_up_to_date() -> None:
    status, output = run_cog("--check", "--diff", str(DOCS / "cli.md"))
    assert status == 0, f"docs/cli.md is stale; run `cog -r docs/cli.md`:\n{output}"


def test_cog_check_detects_a_stale_reference(tmp_path: Path) -> None:
    stale = tmp_path / "cli.md"
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    stale.write_text(text.replace("Show what would happen; change nothing.", "Old words."))
    assert text != stale.read_text()
    status, _ = run_cog("--check", str(stale))
    assert status != 0


def walk_commands(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk_commands(sub, (*path, name))


def test_every_command_has_help_and_a_section_in_the_reference() -> None:
    from clerk.cli import cli

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    commands = list(walk_commands(cli))
    assert len(commands) > 10
    for path, command in commands:
        name = " ".join(("clerk", *path))
        assert (command.help or "").strip(), f"`{name}` has no help text"
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert (param.help or "").strip(), f"`{name}` option {param.opts} has no help"
        assert f"## `{name}`" in text, f"docs/cli.md has no section for `{name}`"


# --- docs/configuration.md ------------------------------------------------------------


def test_configuration_documents_every_setting() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    keys = [*Settings.model_fields, *(f"plugins.{k}" for k in PluginSettings.model_fields)]
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, f"docs/configuration.md does not document {missing}"
    for variable in ("CLERK_HOME", "CLERK_CONFIG", "CLERK_PROFILE", "CLERK_LOAD_PLUGINS",
                     "CLERK_DISABLE_PLUGIN_AUTOLOAD", "CLERK_TRACE_PLUGINS"):  # fmt: skip
        assert variable in text, variable
    for ref in ("${env:", "${file:", "${credential:"):
        assert ref in text, ref


def test_configuration_examples_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every config.yaml example is valid, profiles included."""
    from clerk.config import load_config

    blocks = yaml_blocks(DOCS / "configuration.md")
    assert blocks
    for block in blocks:
        config = tmp_path / f"config-{block.line}.yaml"
        config.write_text(block.text, encoding="utf-8")
        settings = load_config(config).settings
        for profile in settings.profiles:
            load_config(config, profile)


# --- docs/plugins.md ------------------------------------------------------------------


def plugin_examples() -> dict[str, str]:
    """The Python example under each `## hook` heading of docs/plugins.md."""
    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    sections = re.split(r"^## `(\w+)`", text, flags=re.MULTILINE)
    examples = {}
    for name, body in zip(sections[1::2], sections[2::2], strict=True):
        code = re.search(r"^```python\n(.*?)^```", body, re.MULTILINE | re.DOTALL)
        assert code, f"docs/plugins.md: section `{name}` has no python example"
        examples[name] = code.group(1)
    return examples


def test_plugin_guide_has_a_section_per_hook() -> None:
    assert sorted(plugin_examples()) == hook_names()


@pytest.fixture
def plugin_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every example of the guide as a loose-file plugin, loaded like a user's would be."""
    monkeypatch.delenv("CLERK_DISABLE_PLUGIN_AUTOLOAD")
    directory = tmp_path / "plugins"
    directory.mkdir()
    for hook, code in plugin_examples().items():
        (directory / f"doc_{hook}.py").write_text(code, encoding="utf-8")
    pm = make_plugin_manager(plugins_dir=directory)
    assert not pm.failures, [str(f) for f in pm.failures]
    return pm


def test_plugin_examples_each_implement_their_hook(plugin_manager: Any) -> None:
    infos = {i.name: i.hooks for i in plugin_manager.plugin_infos()}
    for hook in hook_names():
        assert hook in infos[f"doc_{hook}"], (hook, infos[f"doc_{hook}"])


def test_plugin_filter_action_and_classifier_examples_work(
    plugin_manager: Any, tmp_path: Path
) -> None:
    """The guide's filter, action and classifier, used from a rule file, in a dry run."""
    block = next(b for b in fenced_blocks(DOCS / "plugins.md") if b.lang == "yaml")
    home = Path.home()
    inbox = home / "Inbox"
    inbox.mkdir()
    (inbox / "empty.txt").write_bytes(b"")
    (inbox / "notes.txt").write_text("one\ntwo\nthree\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text(block.text, encoding="utf-8")
    registry = plugin_manager.registry()
    ruleset, problems = load_rules([rules], registry)
    problems += check_rules(ruleset, registry, check_paths=False)
    assert not problems, [str(p) for p in problems]
    engine = Engine(ruleset, registry, None, dry_run=True, keep_outcomes=True,
                    hooks=plugin_manager)  # fmt: skip
    outcome = {Path(o.path).name: o for o in engine.scan().outcomes}
    assert outcome["empty.txt"].rules == ["empty-files"]
    assert outcome["empty.txt"].effects == [f"append 'empty: {inbox}/empty.txt' to clerk.log"]
    assert outcome["notes.txt"].rules == ["by-lines"]
    assert outcome["notes.txt"].ops[0].dst == str(home / "Archive" / "3-lines" / "notes.txt")


def test_plugin_event_examples_receive_events(plugin_manager: Any, tmp_path: Path) -> None:
    from clerk.rules.walk import walk_root

    log = Path.home() / "clerk-events.log"
    inbox = Path.home() / "Inbox"
    inbox.mkdir()
    (inbox / "a.txt").write_text("a")
    registry = plugin_manager.registry()
    rules = tmp_path / "rules.yaml"
    rules.write_text("roots: {inbox: ~/Inbox}\nrules: []\n", encoding="utf-8")
    ruleset, _ = load_rules([rules], registry)
    engine = Engine(ruleset, registry, None, dry_run=True, hooks=plugin_manager)
    engine.process(walk_root(ruleset.roots["inbox"], ruleset.roots), "scan")
    plugin_manager.hook.op_done(
        result=OpResult("move", str(inbox / "a.txt"), "/x/a.txt", "failed", error="disk full")
    )
    lines = log.read_text(encoding="utf-8").splitlines()
    assert f"classified {inbox}/a.txt size=1" in lines
    assert f"failed move {inbox}/a.txt: disk full" in lines


def test_plugin_command_example_runs(plugin_manager: Any) -> None:
    group = click.Group("clerk")
    plugin_manager.hook.register_commands(cli=group)
    result = CliRunner().invoke(group, ["hello", "--name", "docs"], prog_name="clerk")
    assert result.exit_code == 0, result.output
    assert result.output == "hello, docs\n"


# --- the rest -------------------------------------------------------------------------


def test_docs_link_to_files_that_exist_or_are_owned() -> None:
    """Relative links between docs resolve (safety.md is written by another issue)."""
    expected_elsewhere = {"safety.md", "operations.md"}
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            if Path(target).name in expected_elsewhere:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_changelog_has_the_current_version() -> None:
    from clerk import __version__

    text = (DOCS / "changelog.md").read_text(encoding="utf-8")
    assert re.search(rf"^## {re.escape(__version__)}\b", text, re.MULTILINE)
