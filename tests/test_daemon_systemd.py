"""systemd units: the shipped files, `clerk systemd install`, systemd-analyze's verdicts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from clerk.daemon.units import render_system_unit, render_user_unit, sysusers_text

REPO = Path(__file__).resolve().parent.parent
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None,
    reason="systemd-analyze is not installed (Debian: apt-get install systemd); "
    "unit verification and the security score were NOT checked",
)
Clerk = Callable[..., subprocess.CompletedProcess[str]]


def test_the_shipped_units_are_the_generated_defaults() -> None:
    assert (REPO / "systemd" / "clerk.service").read_text() == render_system_unit()
    assert (REPO / "systemd" / "user" / "clerk.service").read_text() == render_user_unit()
    assert (REPO / "systemd" / "sysusers-clerk.conf").read_text() == sysusers_text()


@pytest.fixture
def installed(
    tmp_path: Path, write_rules: Callable[[str], Path], clerk: Clerk
) -> tuple[Path, Path]:
    inbox, archive = tmp_path / "in box", tmp_path / "archive"  # a space: escaped in the unit
    inbox.mkdir()
    archive.mkdir()
    write_rules(
        f"roots:\n  inbox: {{path: '{inbox}'}}\n  archive: {{path: {archive}}}\n"
        f"rules:\n  - name: r\n    in: inbox\n    actions: []\n"
    )
    system, user = tmp_path / "system", tmp_path / "user"
    out = clerk("systemd", "install", "--dest", str(system), check=True).stdout
    assert f"written: {system / 'clerk.service'}" in out and "systemd-sysusers" in out
    clerk("systemd", "install", "--user", "--dest", str(user), check=True)
    return system / "clerk.service", user / "clerk.service"


def test_install_writes_the_roots_as_writable_paths(
    installed: tuple[Path, Path], tmp_path: Path, clerk: Clerk
) -> None:
    system, user = installed
    text = system.read_text()
    writable = re.search(r"^ReadWritePaths=(.*)$", text, re.MULTILINE)
    assert writable is not None
    words = writable.group(1).split()
    assert f"-{tmp_path}/in\\x20box" in words and f"-{tmp_path}/archive" in words
    assert "ProtectSystem=strict" in text and "User=clerk" in text and "Type=notify" in text
    assert (system.parent / "clerk.conf").read_text().startswith("# The dedicated user")
    assert "Type=notify" in user.read_text() and "User=" not in user.read_text()
    # never replaces a file that differs, unless asked
    system.write_text(text + "# local edit\n")
    refused = clerk("systemd", "install", "--dest", str(system.parent))
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert system.read_text().endswith("# local edit\n")
    clerk("systemd", "install", "--dest", str(system.parent), "--force", check=True)
    assert system.read_text() == text
    printed = clerk("systemd", "install", "--print", "--user", check=True).stdout
    assert printed == user.read_text()


@needs_analyze
def test_systemd_analyze_verifies_both_units(installed: tuple[Path, Path]) -> None:
    system, user = installed
    result = subprocess.run(
        [ANALYZE, "verify", str(system)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with tempfile.TemporaryDirectory() as runtime:  # the user manager wants a runtime dir
        os.chmod(runtime, 0o700)
        result = subprocess.run(
            [ANALYZE, "--user", "verify", str(user)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "XDG_RUNTIME_DIR": runtime},
        )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_analyze
def test_the_system_unit_is_hardened(installed: tuple[Path, Path]) -> None:
    system, _ = installed
    result = subprocess.run(
        [ANALYZE, "security", "--offline=true", str(system)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for clerk\.service: (\d+(?:\.\d+)?)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.5, result.stdout


# --- the unit runs the daemon on the config it was generated from -------------------------

WEIRD = "a b %h $HOME 100%"  # a space, a specifier, a variable, a bare %: all literal


def _unit_words(value: str, *, command: bool) -> list[str]:
    """A unit setting's value split into words as systemd reads them (systemd.syntax(7),
    systemd.service(5) "Command lines"): quotes group, C escapes, `%%` is a %, and in a
    command's arguments `$$` is a $. A specifier or variable left unescaped fails."""
    words: list[str] = []
    word: list[str] | None = None
    quote = None
    escapes = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "s": " "}
    i = 0
    while i < len(value):
        char = value[i]
        if char == "\\":
            code = value[i + 1]
            if code == "x":
                char, i = chr(int(value[i + 2 : i + 4], 16)), i + 3
            else:
                char, i = escapes[code], i + 1
            word = (word or []) + [char]
        elif quote and char == quote:
            quote = None
        elif not quote and char in "\"'":
            quote, word = char, word or []
        elif not quote and char.isspace():
            if word is not None:
                words.append("".join(word))
            word = None
        else:
            # specifiers everywhere; variables only in a command's arguments (not in
            # the program's path, not in Environment=, where $ is a plain character)
            if char == "%" or (char == "$" and command and words):
                assert value[i + 1 : i + 2] == char, f"{value!r}: a {char} systemd expands"
                i += 1
            word = (word or []) + [char]
        i += 1
    assert quote is None, f"unbalanced quotes in {value!r}"
    if word is not None:
        words.append("".join(word))
    return words


def _read_back(unit: str) -> tuple[list[str], dict[str, str]]:
    """The unit's ExecStart= argv and its Environment= variables, as systemd sees them."""
    argv: list[str] = []
    environment: dict[str, str] = {}
    for line in unit.splitlines():
        key, _, value = line.partition("=")
        if key == "ExecStart":
            argv = _unit_words(value, command=True)
        elif key == "Environment":
            for word in _unit_words(value, command=False):
                name, _, setting = word.partition("=")
                environment[name] = setting
    return argv, environment


@pytest.fixture
def weird_clerk(tmp_path: Path) -> dict[str, str]:
    """PATH with a `clerk` in a directory whose name systemd would mangle if unquoted."""
    bin_dir = tmp_path / f"bin {WEIRD}"
    bin_dir.mkdir()
    real = shutil.which("clerk", path=str(Path(sys.executable).parent))
    assert real is not None
    (bin_dir / "clerk").symlink_to(real)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def _installed(clerk: Clerk, dest: Path, *args: str, user: bool, env: dict[str, str]) -> Path:
    scope = ["--user"] if user else []
    clerk(*args, "systemd", "install", *scope, "--dest", str(dest), check=True, env=env)
    return dest / "clerk.service"


def _runs_on(unit: Path, env: dict[str, str]) -> str:
    """`clerk db path` run as the unit would run the daemon: its argv, its environment,
    none of this test's CLERK_* settings."""
    argv, environment = _read_back(unit.read_text())
    assert argv[-1] == "daemon"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLERK_")}
    clean["CLERK_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    result = subprocess.run([*argv[:-1], "db", "path"], capture_output=True, text=True,
                            env={**clean, **env, **environment}, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("user", [True, False], ids=["user", "system"])
def test_the_unit_carries_clerk_home_and_the_profile(
    tmp_path: Path, clerk: Clerk, weird_clerk: dict[str, str], user: bool
) -> None:
    home = tmp_path / f"home {WEIRD}"
    (home / "rules.d").mkdir(parents=True)
    (home / "rules.d" / "rules.yaml").write_text("roots: {}\nrules: []\n")
    store = tmp_path / "stores" / "dev.db"  # clerk expands $VARS in store: itself
    (home / "config.yaml").write_text(f"profiles:\n  dev: {{store: '{store}'}}\n")
    env = {**weird_clerk, "CLERK_HOME": str(home)}
    unit = _installed(clerk, tmp_path / "units", "--profile", "dev", user=user, env=env)
    argv, environment = _read_back(unit.read_text())
    assert argv[0] == str(tmp_path / f"bin {WEIRD}" / "clerk")
    assert environment["CLERK_HOME"] == str(home) and environment["CLERK_PROFILE"] == "dev"
    assert "CLERK_CONFIG" not in environment  # CLERK_HOME's own config.yaml
    assert _runs_on(unit, weird_clerk) == str(store)
    _verify(unit, user=user)


def test_the_user_unit_carries_the_config_file(
    tmp_path: Path, clerk: Clerk, weird_clerk: dict[str, str]
) -> None:
    config_dir = tmp_path / f"config {WEIRD}"
    (config_dir / "rules.d").mkdir(parents=True)
    (config_dir / "rules.d" / "rules.yaml").write_text("roots: {}\nrules: []\n")
    config = config_dir / "my config.yaml"
    store = tmp_path / "stores" / "chosen.db"
    config.write_text(f"store: '{store}'\n")
    env = {**weird_clerk, "CLERK_HOME": ""}
    unit = _installed(clerk, tmp_path / "units", "--config", str(config), user=True, env=env)
    _, environment = _read_back(unit.read_text())
    assert environment == {"CLERK_CONFIG": str(config)}
    assert _runs_on(unit, weird_clerk) == str(store)
    _verify(unit, user=True)


def test_a_default_user_unit_sets_no_clerk_variables(
    tmp_path: Path, clerk: Clerk, weird_clerk: dict[str, str]
) -> None:
    env = {**weird_clerk, "CLERK_HOME": ""}
    unit = _installed(clerk, tmp_path / "units", user=True, env=env)
    assert _read_back(unit.read_text())[1] == {}


def _verify(unit: Path, *, user: bool) -> None:
    if ANALYZE is None:
        return  # the read-back above still ran; needs_analyze says why verify did not
    with tempfile.TemporaryDirectory() as runtime:
        os.chmod(runtime, 0o700)
        result = subprocess.run(
            [ANALYZE, *(["--user"] if user else []), "verify", str(unit)],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "XDG_RUNTIME_DIR": runtime},
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ignoring" not in result.stderr.lower(), result.stderr
