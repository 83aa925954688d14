"""Every test gets its own CLERK_HOME, HOME and XDG dirs, and no autoloaded plugins."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clerk_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    base = tmp_path_factory.mktemp("env")
    home = base / "home"
    clerk_home = base / "clerk"
    for path in (home, clerk_home):
        path.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CLERK_HOME", str(clerk_home))
    for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                     ("XDG_STATE_HOME", ".local/state"), ("XDG_CACHE_HOME", ".cache")):  # fmt: skip
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base / "run"))
    monkeypatch.setenv("CLERK_DISABLE_PLUGIN_AUTOLOAD", "1")
    for var in ("CLERK_CONFIG", "CLERK_PROFILE", "CLERK_LOAD_PLUGINS", "CLERK_TRACE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    return clerk_home


@pytest.fixture
def clerk_home(clerk_env: Path) -> Path:
    return clerk_env


@pytest.fixture
def write_rules(clerk_home: Path) -> Callable[[str, str], Path]:
    """Write a rule file into $CLERK_HOME/rules.d."""

    def write(text: str, name: str = "rules.yaml") -> Path:
        rules_dir = clerk_home / "rules.d"
        rules_dir.mkdir(exist_ok=True)
        path = rules_dir / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def run_clerk(*args: str, check: bool = False, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run the real `clerk` command in a subprocess."""
    result = subprocess.run(
        [sys.executable, "-m", "clerk", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"clerk {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def clerk() -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    yield run_clerk


PLUGIN_PACKAGES = REPO / "plugins"


@pytest.fixture(scope="session")
def install_plugin(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`install_plugin("clerk-exif")` pip-installs the drop-in package `plugins/clerk-exif`
    into a directory of its own (once per session) and returns it: put it on PYTHONPATH.

    A real `pip install` of the package, its entry points included, but with `--no-deps`
    into a `--target` directory so the test venv itself is never changed; the libraries
    the packages need (Pillow, apprise, dask) come from `plugins/test-requirements.txt`,
    which `scripts/test` installs.
    """
    installed: dict[str, Path] = {}

    def install(name: str) -> Path:
        if name not in installed:
            target = tmp_path_factory.mktemp(f"site-{name}")
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                 "--no-deps", "--no-build-isolation", "--no-cache-dir", "--target",
                 str(target), str(PLUGIN_PACKAGES / name)],
                check=True, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            installed[name] = target
        return installed[name]

    return install


def plugin_env(*sites: Path, **extra: str) -> dict[str, str]:
    """Environment for a `clerk` subprocess that autoloads the packages in `sites`
    (pass it as `env=` to `run_clerk` or to subprocess calls)."""
    env = dict(os.environ)
    env["CLERK_DISABLE_PLUGIN_AUTOLOAD"] = ""  # empty is off; run_clerk merges os.environ
    env["PYTHONPATH"] = os.pathsep.join([*map(str, sites), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env.update(extra)
    return env


def _world_executable(path: str) -> bool:
    """Can any user run `path`? (every directory on the way searchable by others)"""
    real = Path(os.path.realpath(path))
    if not real.is_file() or not os.stat(real).st_mode & stat.S_IXOTH:
        return False
    return all(os.stat(d).st_mode & stat.S_IXOTH for d in real.parents)


@pytest.fixture
def as_nobody() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `python -I -c CODE ARGS...` as user nobody, from `/`: what another local user
    can do. Needs root to switch users; skips with the reason elsewhere."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a process as another uid")
    nobody = pwd.getpwnam("nobody")
    candidates = [sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"]
    python = next((c for c in candidates if os.path.exists(c) and _world_executable(c)), None)
    if python is None:
        pytest.skip("no Python interpreter that user nobody may run")

    def drop() -> None:
        os.setgid(nobody.pw_gid)
        os.setgroups([])
        os.setuid(nobody.pw_uid)

    def run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([python, "-I", "-c", code, *args], capture_output=True,
                              text=True, preexec_fn=drop, timeout=60, cwd="/")  # fmt: skip

    return run
