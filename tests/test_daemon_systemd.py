"""systemd units: the shipped files, `clerk systemd install`, systemd-analyze's verdicts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
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
