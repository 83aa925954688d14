"""`clerk plugins new NAME`: write a plugin package to start from.

The package is small but complete: a pyproject with the `clerk` entry point, a module
with a filter and a classifier, tests that install-and-run it the way clerk's own tests
of drop-in packages do (a real `clerk scan` in a subprocess), and a README saying how to
develop, test and publish it. Templates use `string.Template` (`$name`), so the Python
braces in them need no escaping.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from clerk.errors import ClerkError

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "clerk-$name"
version = "0.1.0"
description = "A clerk plugin: $name"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["clerk>=$clerk_version"]

[project.optional-dependencies]
test = ["pytest>=8"]

# clerk finds the plugin through this entry point: `pip install` is all a user does
[project.entry-points.clerk]
$name = "$module"

[tool.setuptools]
packages = ["$module"]
"""

MODULE = '''\
"""clerk-$name: a filter `${ident}_empty` and a classifier `$ident` (text line counts).

Replace them with your own; the hooks are documented in clerk's plugin guide.
"""

from __future__ import annotations

from clerk.plugins.api import Classifier, FileInfo, Filter, SpecError, Verdict, hookimpl

TEXT_EXTENSIONS = frozenset({"txt", "md", "csv", "log"})


class Empty(Filter):
    """`${ident}_empty: true` matches files of zero bytes; `false` the others."""

    def __init__(self, value):
        super().__init__(value)
        if not isinstance(value, bool):
            raise SpecError(f"${ident}_empty wants true or false, got {value!r}")
        self.want = value

    def match(self, file: FileInfo) -> Verdict:
        return Verdict((file.size == 0) == self.want, f"size {file.size}")


class Lines(Classifier):
    """`{$ident.lines}` in templates, `attr: {$ident.lines: "> 10"}` in rules."""

    namespace = "$ident"
    attributes = frozenset({"lines"})

    def applies(self, file: FileInfo) -> bool:
        return file.ext.lower() in TEXT_EXTENSIONS

    def classify(self, file: FileInfo) -> dict:
        with open(file.path, "rb") as handle:
            return {"lines": sum(1 for _ in handle)}


@hookimpl
def register_filters(register):
    register("${ident}_empty", Empty)


@hookimpl
def register_classifiers(register):
    register(Lines())
'''

TEST = '''\
"""Run with the package installed (`pip install -e .[test]`): `pytest`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def clerk_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clerk of its own: config, rules and store under tmp_path."""
    home = tmp_path / "clerk"
    (home / "rules.d").mkdir(parents=True)
    monkeypatch.setenv("CLERK_HOME", str(home))
    monkeypatch.delenv("CLERK_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return home


def clerk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clerk", *args], capture_output=True,
                          text=True, env=dict(os.environ), timeout=120, check=True)


def test_clerk_discovers_the_plugin(clerk_home: Path) -> None:
    rows = json.loads(clerk("plugins", "list", "--json").stdout)
    mine = next(row for row in rows if row["name"] == "$name")
    assert mine["source"] == "entrypoint"
    assert mine["hooks"] == ["register_classifiers", "register_filters"]


def test_a_scan_uses_the_filter_and_the_classifier(clerk_home: Path, tmp_path: Path) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    (inbox / "empty.txt").write_bytes(b"")
    (inbox / "notes.txt").write_text("one\\ntwo\\nthree\\n")
    (clerk_home / "rules.d" / "rules.yaml").write_text(f"""
roots:
  inbox: {inbox}
  out: {{path: {out}, watch: false}}
rules:
  - name: empties
    in: inbox
    match: {{${ident}_empty: true}}
    actions: [{{move: "{out}/empty/{{name}}"}}]
  - name: by-lines
    in: inbox
    match: {{attr: {{$ident.lines: "> 2"}}}}
    actions: [{{move: "{out}/{{$ident.lines}}-lines/{{name}}"}}]
""")
    clerk("scan")
    assert (out / "empty" / "empty.txt").exists()
    assert (out / "3-lines" / "notes.txt").read_text() == "one\\ntwo\\nthree\\n"
'''

README = """\
# clerk-$name

A plugin for clerk, the file organizer and execution daemon. It adds:

- a filter, `${ident}_empty: true|false` (files of zero bytes, or not);
- a classifier, namespace `$ident`: `{$ident.lines}` (line count of text files) in
  templates, `attr: {$ident.lines: "> 10"}` in rules.

```yaml
rules:
  - name: long-notes
    in: inbox
    match:
      attr: {$ident.lines: "> 100"}
    actions:
      - move: "~/Notes/long/{name}"
```

## Develop

```sh
python -m venv .venv && .venv/bin/pip install -e '.[test]'
.venv/bin/pytest                       # runs a real `clerk scan` with the plugin
.venv/bin/clerk plugins list           # the plugin, its version and hooks
```

## Publish

```sh
python -m pip install build twine
python -m build                        # dist/clerk_$ident-0.1.0.tar.gz and .whl
python -m twine upload dist/*          # to PyPI; users then `pip install clerk-$name`
```

Users need nothing else: clerk loads every installed package that declares an entry
point in the `clerk` group (`[project.entry-points.clerk]` in pyproject.toml). They can
still deny it (`plugins: {deny: [$name]}` in config.yaml) or give it settings
(`plugins: {settings: {$name: {...}}}`, passed to a `configure` hook).
"""


def scaffold(name: str, parent: Path, clerk_version: str) -> Path:
    """Write `clerk-NAME/` under `parent` and return it. Never overwrites anything."""
    if not NAME_RE.match(name):
        raise ClerkError(
            f"{name!r} is not a usable plugin name: use lower-case letters, digits and "
            "single dashes or underscores, starting with a letter (like 'exif' or 'my-tags')"
        )
    ident = name.replace("-", "_")
    module = f"clerk_{ident}"
    root = parent / f"clerk-{name}"
    if root.exists():
        raise ClerkError(f"{root} already exists: choose another name or directory")
    values = {"name": name, "ident": ident, "module": module, "clerk_version": clerk_version}
    files = {
        root / "pyproject.toml": PYPROJECT,
        root / module / "__init__.py": MODULE,
        root / "tests" / f"test_{ident}.py": TEST,
        root / "README.md": README,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as handle:  # "x": never overwrite
            handle.write(Template(template).substitute(values))
    return root
