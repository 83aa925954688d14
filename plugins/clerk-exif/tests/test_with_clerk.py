"""clerk-exif inside clerk: entry point, error recording, templates, `attr`, the cache."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import clerk_exif
import pytest
from clerk_exif import ExifClassifier
from clerk_exif.samples import write_photo
from conftest import Scanned

from clerk.errors import RenderError
from clerk.plugins.builtin.filters import AttrFilter
from clerk.plugins.manager import make_plugin_manager
from clerk.roots import RootSet
from clerk.rules.fileinfo import FileInfo
from clerk.rules.templates import Renderer
from clerk.store.catalog import decode_attrs, encode_attrs


def test_the_entry_point_registers_the_exif_classifier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_DISABLE_PLUGIN_AUTOLOAD", "")
    monkeypatch.setenv("CLERK_LOAD_PLUGINS", "exif")
    pm = make_plugin_manager()
    assert not pm.failures
    assert pm.sources["exif"] == "entrypoint"
    assert pm.versions["exif"] == clerk_exif.__version__
    registry = pm.registry()
    assert isinstance(registry.classifiers["exif"], ExifClassifier)
    assert registry.origin["classifier:exif"] == "exif"
    assert not registry.errors


def test_templates_and_attr_filter_use_the_attributes(
    tmp_path: Path, file_info: Callable[[Path], FileInfo], scanned: Scanned
) -> None:
    pixel = file_info(write_photo(tmp_path / "PXL_1.jpg", make="Google", model="Pixel 8",
                                  taken=datetime(2023, 11, 5, 18, 45)))  # fmt: skip
    sony = file_info(write_photo(tmp_path / "DSC01.jpg", make="SONY", model="ILCE-7M3",
                                 taken=datetime(2021, 2, 3, 4, 5)))  # fmt: skip
    renderer = Renderer(scanned.roots)
    template = f"{tmp_path}/Photos/{{exif.taken:%Y}}/{{exif.taken:%m}}/{{name}}"
    assert renderer.render_path(template, pixel.fields(), base_dir=str(tmp_path)) == str(
        tmp_path / "Photos/2023/11/PXL_1.jpg"
    )
    assert renderer.render_text("{exif.camera} {exif.gps}", sony.fields()) == "SONY ILCE-7M3 False"
    pixel_only = AttrFilter({"exif.camera": "Pixel*"})
    assert pixel_only.match(pixel).matched
    verdict = pixel_only.match(sony)
    assert not verdict.matched
    assert verdict.reason == "exif.camera is 'SONY ILCE-7M3'"
    assert not AttrFilter({"exif.gps": True}).match(pixel).matched
    assert "attrs" in pixel.origin.computed  # clerk writes them back to its catalog
    assert not scanned.errors


def test_an_unreadable_photo_is_recorded_against_the_file_and_gives_nothing(
    tmp_path: Path, file_info: Callable[[Path], FileInfo], scanned: Scanned
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe1\x00")  # a JPEG start, then nothing
    info = file_info(broken)
    assert info.attrs("exif") == {}
    assert AttrFilter({"exif.camera": "*"}).match(info).matched is False
    assert [(name, what) for name, what, _ in scanned.errors] == [("broken.jpg", "classifier exif")]
    assert "clerk-exif" in scanned.errors[0][2]


def test_a_missing_date_makes_the_template_fail_and_a_presence_test_not_match(
    tmp_path: Path, file_info: Callable[[Path], FileInfo], scanned: Scanned
) -> None:
    undated = file_info(write_photo(tmp_path / "undated.jpg", make="Google", model="Pixel 8"))
    assert not AttrFilter({"exif.taken": True}).match(undated).matched
    # a known namespace without this attribute: "has no value", not "unknown field"
    assert undated.fields()["exif.taken"] is None
    with pytest.raises(RenderError, match=r"field \{exif.taken\} has no value for this file"):
        Renderer(RootSet()).render_text("{exif.taken:%Y}", undated.fields())


def test_attributes_survive_the_catalog_cache(tmp_path: Path) -> None:
    taken = datetime(2023, 5, 17, 14, 3, 22, tzinfo=timezone(timedelta(hours=-4)))
    photo = write_photo(tmp_path / "p.jpg", make="Apple", model="iPhone 13", taken=taken,
                        gps=(40.7, -74.0))  # fmt: skip
    attrs = clerk_exif.read_exif(str(photo))
    cached = decode_attrs(encode_attrs({"exif": attrs}))["exif"]
    assert cached == attrs
    assert cached["taken"].strftime("%Y/%m") == "2023/05"


def test_the_samples_command_writes_a_photo_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "try.jpg"
    options = ["--make", "Google", "--model", "Pixel 7", "--taken", "2022-08-09 10:11"]
    options += ["--gps", "1.5", "2.5"]
    command = [sys.executable, "-m", "clerk_exif.samples", str(target), *options]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    attrs = clerk_exif.read_exif(str(target))
    assert (attrs["camera"], attrs["taken"]) == ("Pixel 7", datetime(2022, 8, 9, 10, 11))
    assert (attrs["latitude"], attrs["longitude"]) == (1.5, 2.5)
    before = target.read_bytes()
    again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert again.returncode != 0
    assert "exists" in again.stderr
    assert target.read_bytes() == before
