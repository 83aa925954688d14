"""The plugin manager: built-ins through the same hooks, loose files, failures, control."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from clerk.plugins import hookspecs
from clerk.plugins.manager import DEFAULT_PLUGINS, PluginError, make_plugin_manager

GOOD = """
from clerk.plugins.api import Filter, Verdict, hookimpl

class Even(Filter):
    def match(self, file):
        return Verdict(file.size % 2 == 0, "even size")

@hookimpl
def register_filters(register):
    register("even", Even)
"""

OVERRIDE = """
from clerk.plugins.api import Filter, Verdict, hookimpl

class AlwaysName(Filter):
    def match(self, file):
        return Verdict(True, "overridden")

@hookimpl
def register_filters(register):
    register("name", AlwaysName)
"""


@pytest.fixture
def plugins_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CLERK_DISABLE_PLUGIN_AUTOLOAD")
    directory = tmp_path / "plugins"
    directory.mkdir()
    return directory


def test_builtins_are_plugins() -> None:
    pm = make_plugin_manager()
    names = {info.name for info in pm.plugin_infos()}
    assert set(DEFAULT_PLUGINS) <= names
    registry = pm.registry()
    assert registry.origin["filter:mime"] == "clerk.plugins.builtin.filters"
    assert registry.origin["action:move"] == "clerk.plugins.builtin.actions"
    assert "stat" in registry.classifiers


def test_loose_file_plugin_adds_a_filter(plugins_dir: Path) -> None:
    (plugins_dir / "even.py").write_text(GOOD)
    pm = make_plugin_manager(plugins_dir=plugins_dir)
    assert not pm.failures
    assert "even" in pm.registry().filters
    assert pm.registry().origin["filter:even"] == "even"
    info = next(i for i in pm.plugin_infos() if i.name == "even")
    assert info.source.startswith("file:") and info.hooks == ["register_filters"]


def test_plugin_overrides_builtin(plugins_dir: Path) -> None:
    (plugins_dir / "override.py").write_text(OVERRIDE)
    registry = make_plugin_manager(plugins_dir=plugins_dir).registry()
    assert registry.filters["name"].__name__ == "AlwaysName"


def test_broken_plugin_is_named_and_skipped(plugins_dir: Path) -> None:
    (plugins_dir / "broken.py").write_text("import no_such_module_here\n")
    (plugins_dir / "even.py").write_text(GOOD)
    pm = make_plugin_manager(plugins_dir=plugins_dir)
    assert [f.name for f in pm.failures] == ["broken"]
    assert "No module named 'no_such_module_here'" in pm.failures[0].error
    assert "even" in pm.registry().filters  # the others still load
    with pytest.raises(PluginError, match="broken"):
        make_plugin_manager(plugins_dir=plugins_dir, strict=True)


def test_misspelt_hook_fails_loudly(plugins_dir: Path) -> None:
    (plugins_dir / "typo.py").write_text(
        textwrap.dedent("""
        from clerk.plugins.api import hookimpl
        @hookimpl
        def register_filter(register):
            pass
    """)
    )
    pm = make_plugin_manager(plugins_dir=plugins_dir)
    assert [f.name for f in pm.failures] == ["typo"]
    assert "register_filter" in pm.failures[0].error
    assert not pm.has_plugin("typo")


def test_allow_and_deny(plugins_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (plugins_dir / "even.py").write_text(GOOD)
    (plugins_dir / "override.py").write_text(OVERRIDE)
    pm = make_plugin_manager(plugins_dir=plugins_dir, deny=["override"])
    assert pm.has_plugin("even") and not pm.has_plugin("override")
    pm = make_plugin_manager(plugins_dir=plugins_dir, allow=["override"])
    assert not pm.has_plugin("even") and pm.has_plugin("override")
    monkeypatch.setenv("CLERK_LOAD_PLUGINS", "even")
    pm = make_plugin_manager(plugins_dir=plugins_dir)
    assert pm.has_plugin("even") and not pm.has_plugin("override")
    monkeypatch.setenv("CLERK_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert not make_plugin_manager(plugins_dir=plugins_dir).has_plugin("even")


def test_every_hook_is_documented() -> None:
    for name in hookspecs.hook_names():
        doc = getattr(hookspecs, name).__doc__
        assert doc and len(doc.split()) > 10, f"hook {name} needs a docstring"


def test_plugins_list_cli(plugins_dir: Path, clerk_home: Path, clerk) -> None:  # type: ignore[no-untyped-def]
    (plugins_dir / "even.py").write_text(GOOD)
    (plugins_dir / "broken.py").write_text("raise RuntimeError('boom')\n")
    (clerk_home / "config.yaml").write_text(f"plugins: {{dir: {plugins_dir}}}\n")
    result = clerk("plugins", "list", "--json", check=True)
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["even"]["hooks"] == ["register_filters"]
    assert "RuntimeError: boom" in rows["broken"]["error"]
    assert "clerk.plugins.builtin.filters" not in rows
    everything = json.loads(clerk("plugins", "list", "--all", "--json", check=True).stdout)
    assert any(r["name"] == "clerk.plugins.builtin.filters" for r in everything)
    only = json.loads(clerk("plugins", "list", "--all", "--hook", "register_actions",
                            "--json", check=True).stdout)  # fmt: skip
    assert [r["name"] for r in only] == ["clerk.plugins.builtin.actions"]


CONFIGURED = """
from clerk.plugins.api import Filter, SpecError, Verdict, hookimpl, resolve_secrets

SEEN = {}

class Secret(Filter):
    def match(self, file):
        return Verdict(resolve_secrets(SEEN["token"]) in file.name, "token in name")

@hookimpl
def configure(settings):
    if "token" not in settings:
        raise SpecError("settings need a token")
    SEEN.update(settings)

@hookimpl
def register_filters(register):
    register("secret", Secret)
"""


def test_configure_gives_each_plugin_its_own_settings(
    plugins_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (plugins_dir / "configured.py").write_text(CONFIGURED)
    (plugins_dir / "even.py").write_text(GOOD)
    monkeypatch.setenv("CLERK_TEST_TOKEN", "s3cret")
    settings = {"configured": {"token": "${env:CLERK_TEST_TOKEN}"}, "even": {"x": 1}}
    pm = make_plugin_manager(plugins_dir=plugins_dir, settings=settings)
    assert not pm.failures
    module = pm.get_plugin("configured")
    assert module.SEEN == {"token": "${env:CLERK_TEST_TOKEN}"}  # given unresolved
    assert module.Secret(True).match(FileInfoStub("a-s3cret.txt")).matched


class FileInfoStub:
    def __init__(self, name: str) -> None:
        self.name = name


def test_a_plugin_that_refuses_its_settings_is_reported_and_dropped(
    plugins_dir: Path, clerk_home: Path, clerk
) -> None:  # type: ignore[no-untyped-def]
    (plugins_dir / "configured.py").write_text(CONFIGURED)
    (plugins_dir / "even.py").write_text(GOOD)
    pm = make_plugin_manager(plugins_dir=plugins_dir, settings={})
    assert [(f.name, f.error) for f in pm.failures] == [
        ("configured", "configure: SpecError: settings need a token")
    ]
    assert not pm.has_plugin("configured") and "secret" not in pm.registry().filters
    assert "even" in pm.registry().filters
    with pytest.raises(PluginError, match="settings need a token"):
        make_plugin_manager(plugins_dir=plugins_dir, strict=True)
    # the same through config.yaml and the CLI
    (clerk_home / "config.yaml").write_text(
        f"plugins:\n  dir: {plugins_dir}\n  settings:\n    configured: {{tokn: x}}\n"
    )
    rows = {r["name"]: r for r in json.loads(clerk("plugins", "list", "--json").stdout)}
    assert "settings need a token" in rows["configured"]["error"]
    (clerk_home / "config.yaml").write_text(
        f"plugins:\n  dir: {plugins_dir}\n  settings:\n    configured: {{token: x}}\n"
    )
    rows = {r["name"]: r for r in json.loads(clerk("plugins", "list", "--json").stdout)}
    assert rows["configured"]["hooks"] == ["configure", "register_filters"]


# Which test exercises each hook for real (a plugin implementing it, called by clerk).
# Adding a hook without a test fails `test_every_hook_has_a_test`.
HOOK_TESTS = {
    "alert": "test_engine_alerts.py::test_alerts_fire_once_per_window_and_reach_the_hook",
    "configure": "test_plugins.py::test_configure_gives_each_plugin_its_own_settings",
    "file_classified": "test_docs.py::test_plugin_event_examples_receive_events",
    "op_done": "test_docs.py::test_plugin_event_examples_receive_events",
    "register_actions": "test_docs.py::test_plugin_filter_action_and_classifier_examples_work",
    "register_classifiers": "test_plugin_packages.py::"
    "test_a_hook_raising_on_one_file_is_recorded_and_the_daemon_goes_on",
    "register_commands": "test_docs.py::test_plugin_command_example_runs",
    "register_executors": "test_engine_hooks.py::test_the_documented_executor_and_run_hooks_work",
    "register_filters": "test_plugins.py::test_loose_file_plugin_adds_a_filter",
    "run_finished": "test_engine_hooks.py::test_the_documented_executor_and_run_hooks_work",
    "run_started": "test_engine_hooks.py::test_the_documented_executor_and_run_hooks_work",
    "task_finished": "test_engine_hooks.py::test_the_documented_executor_and_run_hooks_work",
}


def test_every_hook_has_a_test() -> None:
    import ast

    assert sorted(HOOK_TESTS) == hookspecs.hook_names()
    tests_dir = Path(__file__).parent
    for hook, node in HOOK_TESTS.items():
        file, _, name = node.partition("::")
        tree = ast.parse((tests_dir / file).read_text(encoding="utf-8"))
        functions = {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
        assert name in functions, f"{hook}: {node} does not exist"
        # the test (or the module it lives in, for doc-example fixtures) names the hook
        source = (tests_dir / file).read_text(encoding="utf-8")
        assert hook in source or "plugin_examples" in source or "doc_example" in source, node


SOMETIMES = """
from clerk.plugins.api import Classifier, hookimpl

class Photo(Classifier):
    namespace = "photo"
    attributes = frozenset({"taken"})

    def classify(self, file):
        return {"taken": "2024"} if file.name.startswith("dated") else {}

@hookimpl
def register_classifiers(register):
    register(Photo())
"""


def test_an_attribute_a_file_lacks_has_no_value_rather_than_being_unknown(
    plugins_dir: Path, clerk_home: Path, tmp_path: Path, clerk
) -> None:  # type: ignore[no-untyped-def]
    (plugins_dir / "sometimes.py").write_text(SOMETIMES)
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    (inbox / "dated.jpg").write_text("a")
    (inbox / "undated.jpg").write_text("b")
    (clerk_home / "config.yaml").write_text(f"plugins: {{dir: {plugins_dir}}}\n")
    (clerk_home / "rules.d").mkdir()
    (clerk_home / "rules.d" / "r.yaml").write_text(
        f"roots: {{inbox: {inbox}, out: {{path: {out}, watch: false}}}}\n"
        f"rules:\n  - {{name: by-date, in: inbox, actions: "
        f"[{{move: '{out}/{{photo.taken}}/{{name}}'}}]}}\n"
    )
    result = clerk("scan", "--json")
    assert (out / "2024" / "dated.jpg").exists()
    assert (inbox / "undated.jpg").exists()
    errors = json.loads(result.stdout)["errors"]
    assert any("field {photo.taken} has no value for this file" in e for e in errors), errors


CLASSIFIED_LOG = """
from clerk.plugins.api import hookimpl

@hookimpl
def file_classified(file):
    pass
"""


def test_trace_plugins_logs_hook_calls(
    plugins_dir: Path, clerk_home: Path, tmp_path: Path, clerk
) -> None:  # type: ignore[no-untyped-def]
    (plugins_dir / "listener.py").write_text(CLASSIFIED_LOG)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").write_text("a")
    (clerk_home / "config.yaml").write_text(f"plugins: {{dir: {plugins_dir}}}\n")
    (clerk_home / "rules.d").mkdir()
    (clerk_home / "rules.d" / "r.yaml").write_text(
        f"roots: {{inbox: {inbox}}}\nrules:\n  - {{name: r, in: inbox, match: {{name: zzz}},"
        " actions: [{tag: x}]}\n"
    )
    quiet = clerk("-vv", "scan", check=True)
    assert "file_classified" not in quiet.stderr
    traced = clerk("-vv", "scan", env={"CLERK_TRACE_PLUGINS": "1"}, check=True)
    assert "file_classified [hook]" in traced.stderr, traced.stderr
    assert "a.txt" in traced.stderr  # with its arguments


SCRIPT_SHELL = """
from clerk.engine.api import Executor, TaskResult
from clerk.plugins.api import SpecError, hookimpl

class ScriptShell(Executor):
    '''A `shell` that takes one script, `script: "echo hi"`, instead of an argv list.'''

    keys = ("script",)

    def __init__(self, config):
        super().__init__(config)
        if not isinstance(config.get("script"), str):
            raise SpecError("this shell wants script: (the text of a script)", key="script")

    def execute(self, context):
        return TaskResult(True)

@hookimpl
def register_executors(register):
    register("shell", ScriptShell)
"""


def test_a_plugin_that_replaces_shell_checks_shell_tasks_itself(
    plugins_dir: Path,
    clerk_home: Path,
    write_rules,
    clerk,  # type: ignore[no-untyped-def]
) -> None:
    """`clerk check` asks the class registered under a task's executor name, not the
    built-in rules for that name (they reported a missing command: for every task)."""
    (plugins_dir / "script_shell.py").write_text(SCRIPT_SHELL)
    (clerk_home / "config.yaml").write_text(f"plugins: {{dir: {plugins_dir}}}\n")
    write_rules(
        textwrap.dedent("""\
        workflows:
          w:
            tasks:
              - {name: good, executor: shell, script: "echo hi"}
              - {name: bad, executor: shell, script: [echo, hi]}
              - {name: argv, executor: shell, command: ["true"]}
        """)
    )
    result = clerk("check")
    lines = [line.split(":", 1)[1] for line in result.stdout.splitlines() if "rules.yaml:" in line]
    assert lines == [
        "5:46: this shell wants script: (the text of a script)",  # at the value it names
        "6:32: this shell wants script: (the text of a script)",  # none: at the executor
        "6:39: warning: unknown task key 'command' (expected one of: depends_on, description,"
        " executor, fallback, name, on_failure, on_interrupt, resources, retry, script,"
        " timeout)",
    ], result.stdout + result.stderr
