"""The `clerk-exif` drop-in package, pip-installed: discovery, its own tests, scan, daemon.

Photos are real JPEGs with EXIF written here with Pillow; clerk and the package run in
subprocesses that have the installed package on their path.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, plugin_env, run_clerk
from PIL import ExifTags, Image
from test_daemon_support import running_daemon, wait_until, write_config

PACKAGE = REPO / "plugins" / "clerk-exif"

RULES = """\
roots:
  inbox: {{path: {inbox}, settle: 0.2s}}
  photos: {{path: {photos}, watch: false}}
rules:
  - name: pixel-photos
    in: inbox
    match: [{{attr: {{exif.camera: "Pixel*"}}}}]
    actions:
      - move: "{photos}/{{exif.taken:%Y}}/{{exif.taken:%m}}/{{name}}"
"""


@pytest.fixture(scope="module")
def site(install_plugin: Callable[[str], Path]) -> Path:
    return install_plugin("clerk-exif")


@pytest.fixture
def env(site: Path) -> dict[str, str]:
    return plugin_env(site)


@pytest.fixture
def dirs(tmp_path: Path, clerk_home: Path, write_rules: Callable[[str], Path]) -> tuple[Path, Path]:
    inbox, photos = tmp_path / "inbox", tmp_path / "Photos"
    inbox.mkdir()
    photos.mkdir()
    write_rules(RULES.format(inbox=inbox, photos=photos))
    return inbox, photos


def photo(path: Path, make: str, model: str, taken: str | None = None) -> Path:
    """Write a real JPEG whose EXIF names the camera and (given) when it was taken."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = make
    exif[ExifTags.Base.Model] = model
    if taken is not None:  # EXIF's own date format: "2023:05:17 14:03:00"
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = taken
    Image.new("RGB", (48, 32), (30, 120, 200)).save(path, format="JPEG", exif=exif)
    return path


def pixel(path: Path, taken: str, model: str = "Pixel 7") -> Path:
    return photo(path, "Google", model, taken)


def files_under(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def package_version() -> str:
    init = (PACKAGE / "clerk_exif" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "([^"]+)"', init, re.MULTILINE)
    assert found is not None
    return found.group(1)


def test_plugins_list_discovers_the_installed_package(env: dict[str, str]) -> None:
    result = run_clerk("plugins", "list", "--json", env=env, check=True)
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["exif"]["version"] == package_version()
    assert rows["exif"]["source"] == "entrypoint"
    assert rows["exif"]["hooks"] == ["register_classifiers"]
    # and without the package's site on the path, clerk has no such plugin
    bare = run_clerk("plugins", "list", "--json", env=plugin_env(), check=True)
    assert "exif" not in {row["name"] for row in json.loads(bare.stdout)}


def test_the_package_own_tests_pass_against_the_installed_package(
    env: dict[str, str],
) -> None:
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PACKAGE / "tests")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    summary = tests.stdout.strip().splitlines()[-1]
    assert re.match(r"^\d+ passed", summary), summary
    assert int(summary.split()[0]) >= 20  # the package's suite really ran


def test_scan_sorts_pixel_photos_by_date_taken(
    env: dict[str, str], dirs: tuple[Path, Path]
) -> None:
    inbox, photos = dirs
    pixel(inbox / "PXL_20230517.jpg", "2023:05:17 14:03:00")
    pixel(inbox / "PXL_20241224.jpg", "2024:12:24 18:30:00", model="Pixel 8 Pro")
    photo(inbox / "DSC01234.jpg", "SONY", "ILCE-7M3", "2023:05:18 09:00:00")
    result = run_clerk("scan", "--json", env=env, check=True)
    summary = json.loads(result.stdout)
    assert (summary["seen"], summary["matched"], summary["failed"]) == (3, 2, 0)
    assert files_under(photos) == ["2023/05/PXL_20230517.jpg", "2024/12/PXL_20241224.jpg"]
    assert files_under(inbox) == ["DSC01234.jpg"]  # not a Pixel: left alone
    # moved through the journal like any other rule: undoable
    (batch,) = summary["batches"]
    run_clerk("undo", "--batch", batch, env=env, check=True)
    assert files_under(inbox) == ["DSC01234.jpg", "PXL_20230517.jpg", "PXL_20241224.jpg"]


def test_scan_goes_on_past_broken_and_undated_photos(
    env: dict[str, str], dirs: tuple[Path, Path]
) -> None:
    inbox, photos = dirs
    pixel(inbox / "good.jpg", "2022:02:02 10:00:00")
    (inbox / "broken.jpg").write_text("not a JPEG at all\n")
    photo(inbox / "undated.jpg", "Google", "Pixel 6")
    result = run_clerk("scan", "--json", env=env)
    assert result.returncode == 1, result.stdout + result.stderr  # problems were found
    summary = json.loads(result.stdout)
    assert files_under(photos) == ["2022/02/good.jpg"]
    assert sorted(files_under(inbox)) == ["broken.jpg", "undated.jpg"]
    errors = "\n".join(summary["errors"])
    assert "broken.jpg: classifier exif failed" in errors
    assert "not an image clerk-exif can read" in errors
    assert "undated.jpg" in errors and "{exif.taken}" in errors


def test_explain_shows_the_attr_verdict(env: dict[str, str], dirs: tuple[Path, Path]) -> None:
    inbox, photos = dirs
    sony = photo(inbox / "DSC01.jpg", "SONY", "ILCE-7M3", "2023:05:18 09:00:00")
    shot = pixel(inbox / "PXL_1.jpg", "2023:05:17 14:03:00")
    report = json.loads(run_clerk("explain", "--json", str(sony), env=env, check=True).stdout)
    (rule,) = report["rules"]
    assert rule["matched"] is False
    assert [(f["name"], f["matched"], f["reason"]) for f in rule["match"]["children"]] == [
        ("attr", False, "exif.camera is 'SONY ILCE-7M3'")
    ]
    assert report["would_apply"] == []
    text = run_clerk("explain", str(shot), env=env, check=True).stdout
    assert "rule pixel-photos: MATCH" in text
    assert f"move -> {photos}/2023/05/PXL_1.jpg" in text
    assert files_under(inbox) == ["DSC01.jpg", "PXL_1.jpg"]  # explain changes nothing


def test_the_daemon_files_a_dropped_photo_into_its_dated_folder(
    env: dict[str, str], dirs: tuple[Path, Path], clerk_home: Path, tmp_path: Path
) -> None:
    inbox, photos = dirs
    write_config(clerk_home, "reconcile_interval: 1h\n")
    outside = tmp_path / "camera"
    outside.mkdir()
    shot = pixel(outside / "PXL_20230704.jpg", "2023:07:04 21:15:00")
    with running_daemon(tmp_path, extra_env=env) as (daemon, _):
        shot.rename(inbox / shot.name)  # as a camera import or a sync client drops it
        dated = photos / "2023" / "07" / shot.name
        wait_until(dated.exists, what=f"{dated} placed by the daemon")
        assert files_under(inbox) == []
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
