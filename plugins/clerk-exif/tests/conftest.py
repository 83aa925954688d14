"""Fixtures for the clerk-exif tests: an isolated clerk environment and FileInfo views.

Run with the package installed (or on PYTHONPATH): `pytest plugins/clerk-exif/tests`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from clerk_exif import ExifClassifier

from clerk.roots import Root, RootSet
from clerk.rules.facts import FactSource
from clerk.rules.fileinfo import FileInfo


@pytest.fixture(autouse=True)
def clerk_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never read or write the real user's clerk home; no plugin loads by surprise."""
    base = tmp_path_factory.mktemp("env")
    for var, sub in (("HOME", "home"), ("CLERK_HOME", "clerk"), ("XDG_CONFIG_HOME", "config"),
                     ("XDG_DATA_HOME", "data"), ("XDG_STATE_HOME", "state")):  # fmt: skip
        (base / sub).mkdir()
        monkeypatch.setenv(var, str(base / sub))
    monkeypatch.setenv("CLERK_DISABLE_PLUGIN_AUTOLOAD", "1")
    for var in ("CLERK_CONFIG", "CLERK_PROFILE", "CLERK_LOAD_PLUGINS", "CLERK_TRACE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    return base / "clerk"


class Scanned:
    """What clerk's rules engine hands a classifier: FileInfo views over real files,
    with clerk's own FactSource, whose recorded errors are kept in `errors`."""

    def __init__(self, directory: Path):
        self.root = Root(name="photos", path=str(directory))
        self.roots = RootSet([self.root])
        self.errors: list[tuple[str, str, str]] = []
        self.facts = FactSource(
            None, {"exif": ExifClassifier()}, roots=self.roots, on_error=self._record
        )

    def _record(self, file: FileInfo, what: str, exc: Exception) -> None:
        self.errors.append((file.name, what, str(exc)))

    def file(self, path: Path) -> FileInfo:
        relpath = os.path.relpath(path, self.root.path)
        return FileInfo(self.root, str(path), relpath, os.lstat(path), self.facts)


@pytest.fixture
def scanned(tmp_path: Path) -> Scanned:
    return Scanned(tmp_path)


@pytest.fixture
def file_info(scanned: Scanned) -> Callable[[Path], FileInfo]:
    return scanned.file
