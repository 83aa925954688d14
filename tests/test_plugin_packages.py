"""Plugin packages as users get them: `pip install`ed, scaffolded, or broken.

Each package is really installed with pip (into a --target directory put on PYTHONPATH,
so the test venv is never changed) and found through its `clerk` entry point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import plugin_env, run_clerk
from test_daemon_support import running_daemon, wait_until, write_config


def pip_install(package: Path, target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--no-deps", "--no-build-isolation", "--no-cache-dir", "--target", str(target),
         str(package)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def make_package(parent: Path, name: str, module_code: str) -> Path:
    """A minimal package `clerk-NAME` whose module is `module_code`."""
    ident = name.replace("-", "_")
    root = parent / f"clerk-{name}"
    (root / f"clerk_{ident}").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "clerk-{name}"
        version = "1.2.3"
        [project.entry-points.clerk]
        {name} = "clerk_{ident}"
        [tool.setuptools]
        packages = ["clerk_{ident}"]
    """)
    )
    (root / f"clerk_{ident}" / "__init__.py").write_text(textwrap.dedent(module_code))
    return root


def plugin_rows(env: dict[str, str]) -> dict[str, dict[str, object]]:
    result = run_clerk("plugins", "list", "--json", env=env, check=True)
    return {row["name"]: row for row in json.loads(result.stdout)}


# --- `clerk plugins new` ----------------------------------------------------------------


def test_plugins_new_scaffolds_a_package_whose_own_tests_pass(tmp_path: Path) -> None:
    result = run_clerk("plugins", "new", "my-tags", "--dir", str(tmp_path), check=True)
    root = tmp_path / "clerk-my-tags"
    assert f"created {root}" in result.stdout
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "README.md", "clerk_my_tags/__init__.py", "pyproject.toml", "tests/test_my_tags.py",
    ]  # fmt: skip
    site = tmp_path / "site"
    pip_install(root, site)
    env = plugin_env(site)
    row = plugin_rows(env)["my-tags"]
    assert (row["version"], row["source"]) == ("0.1.0", "entrypoint")
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout


def test_plugins_new_never_overwrites_and_checks_the_name(tmp_path: Path) -> None:
    run_clerk("plugins", "new", "tags", "--dir", str(tmp_path), check=True)
    module = tmp_path / "clerk-tags" / "clerk_tags" / "__init__.py"
    module.write_text("# mine\n")
    again = run_clerk("plugins", "new", "tags", "--dir", str(tmp_path))
    assert again.returncode == 1
    assert "already exists" in again.stderr and "Traceback" not in again.stderr
    assert module.read_text() == "# mine\n"
    bad = run_clerk("plugins", "new", "Bad Name!", "--dir", str(tmp_path))
    assert bad.returncode == 1
    assert "not a usable plugin name" in bad.stderr and "Traceback" not in bad.stderr


# --- broken packages --------------------------------------------------------------------

GOOD = """
    from clerk.plugins.api import Filter, Verdict, hookimpl

    class Odd(Filter):
        def match(self, file):
            return Verdict(file.size % 2 == 1, "odd size")

    @hookimpl
    def register_filters(register):
        register("odd", Odd)
"""


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three installed packages: one good, one that cannot import, one with a bad hook."""
    src = tmp_path_factory.mktemp("src")
    site = tmp_path_factory.mktemp("site")
    packages = [
        make_package(src, "good", GOOD),
        make_package(src, "noimport", "import clerk_no_such_dependency\n"),
        make_package(
            src,
            "badsig",
            """
            from clerk.plugins.api import hookimpl

            @hookimpl
            def register_filters(register, colour):
                register("never", object)
        """,
        ),
    ]
    for package in packages:
        pip_install(package, site)
    return site


def test_a_package_that_fails_to_import_is_named_and_the_rest_load(
    broken_site: Path, clerk_home: Path
) -> None:
    rows = plugin_rows(plugin_env(broken_site))
    assert rows["good"]["hooks"] == ["register_filters"]
    assert rows["good"]["version"] == "1.2.3"
    assert "ModuleNotFoundError: No module named 'clerk_no_such_dependency'" in str(
        rows["noimport"]["error"]
    )
    assert rows["noimport"]["source"] == "entrypoint"


def test_a_hook_with_a_bad_signature_is_refused_clearly(
    broken_site: Path, clerk_home: Path
) -> None:
    rows = plugin_rows(plugin_env(broken_site))
    error = str(rows["badsig"]["error"])
    assert "register_filters" in error and "colour" in error, error
    assert not rows["badsig"]["hooks"]


def test_clerk_check_reports_broken_packages_and_strict_refuses(
    broken_site: Path, clerk_home: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").write_text("abc")
    rules = clerk_home / "rules.d"
    rules.mkdir()
    (rules / "r.yaml").write_text(
        f"roots: {{inbox: {inbox}}}\nrules:\n  - {{name: odd, in: inbox, match: {{odd: true}},"
        f" actions: [{{rename: 'odd-{{name}}'}}]}}\n"
    )
    env = plugin_env(broken_site)
    check = run_clerk("check", env=env)
    assert check.returncode == 1
    assert "noimport" in check.stderr + check.stdout and "badsig" in check.stderr + check.stdout
    assert "Traceback" not in check.stderr
    # the good plugin still works for a scan
    scan = run_clerk("scan", env=env)
    assert (inbox / "odd-a.txt").exists(), scan.stdout + scan.stderr
    write_config(clerk_home, "plugins: {strict: true}\n")
    strict = run_clerk("scan", env=env)
    assert strict.returncode != 0 and "noimport" in strict.stderr
    assert "Traceback" not in strict.stderr


RAISING = """
    from clerk.plugins.api import Classifier, hookimpl

    class Fragile(Classifier):
        namespace = "fragile"
        attributes = frozenset({"kind"})

        def classify(self, file):
            if file.name.startswith("bad"):
                raise ValueError(f"cannot read {file.name}")
            return {"kind": "fine"}

    @hookimpl
    def register_classifiers(register):
        register(Fragile())
"""


def test_a_hook_raising_on_one_file_is_recorded_and_the_daemon_goes_on(
    tmp_path: Path, clerk_home: Path
) -> None:
    site = tmp_path / "site"
    pip_install(make_package(tmp_path / "src", "fragile", RAISING), site)
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    (clerk_home / "rules.d").mkdir()
    (clerk_home / "rules.d" / "r.yaml").write_text(
        textwrap.dedent(f"""
        roots:
          inbox: {{path: {inbox}, settle: 0.2s}}
          out: {{path: {out}, watch: false}}
        rules:
          - name: sort
            in: inbox
            match: {{attr: {{fragile.kind: fine}}}}
            actions: [{{move: "{out}/{{fragile.kind}}/{{name}}"}}]
    """)
    )
    env = plugin_env(site)
    with running_daemon(tmp_path, extra_env=env) as (daemon, _):
        (inbox / "bad-1.txt").write_text("x")
        (inbox / "good-1.txt").write_text("y")
        wait_until(lambda: (out / "fine" / "good-1.txt").exists(), what="good file moved")
        (inbox / "good-2.txt").write_text("z")  # the daemon goes on after the failure
        wait_until(lambda: (out / "fine" / "good-2.txt").exists(), what="next file moved")
        status = json.loads(run_clerk("status", "--json", env=env).stdout)
        errors = [e["error"] for e in status["last_errors"]]
        assert any("cannot read bad-1.txt" in e for e in errors), errors
        assert (inbox / "bad-1.txt").exists()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    shown = run_clerk("files", "show", str(inbox / "bad-1.txt"), "--json", env=env)
    assert "cannot read bad-1.txt" in shown.stdout, shown.stdout + shown.stderr
    assert sorted(os.listdir(out / "fine")) == ["good-1.txt", "good-2.txt"]
