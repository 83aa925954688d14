"""The `exif` classifier on real image files written with Pillow."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from clerk_exif import ExifClassifier, ExifReadError, read_exif
from clerk_exif.classifier import camera_name, parse_exif_datetime
from clerk_exif.samples import write_photo
from PIL import ExifTags, Image, features

from clerk.rules.fileinfo import FileInfo

PARIS = timezone(timedelta(hours=2))
NEWFOUNDLAND = timezone(-timedelta(hours=3, minutes=30))


def test_a_phone_photo_gives_every_attribute(tmp_path: Path) -> None:
    photo = write_photo(
        tmp_path / "PXL_20230517.jpg",
        make="Google",
        model="Pixel 7",
        taken=datetime(2023, 5, 17, 14, 3, 22, tzinfo=PARIS),
        modified=datetime(2024, 1, 2, 3, 4, 5),
        gps=(48.858222, -2.2945),
        altitude=-12.5,
        lens="Pixel 7 back camera 6.81mm f/1.85",
        orientation=6,
        size=(80, 60),
    )
    assert read_exif(str(photo)) == {
        "format": "JPEG",
        "width": 80,
        "height": 60,
        "make": "Google",
        "model": "Pixel 7",
        "camera": "Pixel 7",
        "lens": "Pixel 7 back camera 6.81mm f/1.85",
        "taken": datetime(2023, 5, 17, 14, 3, 22, tzinfo=PARIS),
        "orientation": 6,
        "gps": True,
        "latitude": 48.858222,
        "longitude": -2.2945,
        "altitude": -12.5,
    }


def test_taken_falls_back_to_datetime_and_is_naive_without_an_offset(tmp_path: Path) -> None:
    photo = write_photo(tmp_path / "a.jpg", make="Canon", modified=datetime(2021, 12, 31, 23, 59))
    attrs = read_exif(str(photo))
    assert attrs["taken"] == datetime(2021, 12, 31, 23, 59)
    assert attrs["taken"].tzinfo is None
    assert attrs["camera"] == "Canon"
    assert "model" not in attrs


def test_date_original_wins_over_datetime(tmp_path: Path) -> None:
    photo = write_photo(
        tmp_path / "b.jpg", taken=datetime(2019, 7, 1, 8, 0), modified=datetime(2024, 2, 2, 2, 2)
    )
    assert read_exif(str(photo))["taken"] == datetime(2019, 7, 1, 8, 0)


def test_an_unset_camera_clock_is_no_date(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.DateTime] = "2022:03:04 05:06:07"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "0000:00:00 00:00:00"
    Image.new("RGB", (8, 8)).save(tmp_path / "c.jpg", exif=exif)
    # the bogus DateTimeOriginal is skipped, DateTime still counts
    assert read_exif(str(tmp_path / "c.jpg"))["taken"] == datetime(2022, 3, 4, 5, 6, 7)


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        ("2023:05:17 14:03:22", None, datetime(2023, 5, 17, 14, 3, 22)),
        ("2023:05:17 14:03:00\x00", "-03:30", datetime(2023, 5, 17, 14, 3, tzinfo=NEWFOUNDLAND)),
        ("2023-05-17T14:03:22", "bogus", datetime(2023, 5, 17, 14, 3, 22)),
        ("    :  :     :  :  ", None, None),
        ("2023:02:30 10:00:00", None, None),
        ("", None, None),
        (None, None, None),
    ],
)
def test_parse_exif_datetime(
    text: str | None, offset: str | None, expected: datetime | None
) -> None:
    assert parse_exif_datetime(text, offset) == expected


@pytest.mark.parametrize(
    ("make", "model", "camera"),
    [
        ("Google", "Pixel 8 Pro", "Pixel 8 Pro"),
        ("Apple", "iPhone 13 mini", "iPhone 13 mini"),
        ("Canon", "Canon EOS R5", "Canon EOS R5"),
        ("NIKON CORPORATION", "NIKON D750", "NIKON D750"),
        ("SONY", "ILCE-7M3", "SONY ILCE-7M3"),
        ("OLYMPUS IMAGING CORP.", "E-M10", "OLYMPUS E-M10"),
        ("RICOH IMAGING COMPANY, LTD.", "GR III", "RICOH GR III"),
        ("Eastman Kodak Company", "KODAK Z990", "KODAK Z990"),
        ("samsung", "SM-G991B", "samsung SM-G991B"),
        (None, "Pixel 7", "Pixel 7"),
        ("FUJIFILM", None, "FUJIFILM"),
        (None, None, None),
    ],
)
def test_camera_name(make: str | None, model: str | None, camera: str | None) -> None:
    assert camera_name(make, model) == camera


def test_a_gps_block_without_a_position_is_no_gps(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "HUAWEI"
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSVersionID] = b"\x02\x02\x00\x00"
    Image.new("RGB", (8, 8)).save(tmp_path / "d.jpg", exif=exif)
    attrs = read_exif(str(tmp_path / "d.jpg"))
    assert attrs["gps"] is False
    assert "latitude" not in attrs


def test_a_jpeg_without_exif_gives_its_size_only(tmp_path: Path) -> None:
    photo = write_photo(tmp_path / "plain.jpg", size=(33, 21))
    assert read_exif(str(photo)) == {"format": "JPEG", "width": 33, "height": 21, "gps": False}


@pytest.mark.parametrize(("name", "image_format"), [("scan.tiff", "TIFF"), ("web.webp", "WEBP")])
def test_tiff_and_webp(tmp_path: Path, name: str, image_format: str) -> None:
    photo = write_photo(
        tmp_path / name, make="FUJIFILM", model="X-T3", modified=datetime(2020, 6, 1, 12, 0),
        image_format=image_format,
    )  # fmt: skip
    attrs = read_exif(str(photo))
    assert attrs["format"] == image_format
    assert attrs["camera"] == "FUJIFILM X-T3"
    assert attrs["taken"] == datetime(2020, 6, 1, 12, 0)


def test_a_multi_picture_jpeg_is_a_jpeg(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Model] = "Pixel 7"
    main, depth_map = Image.new("RGB", (40, 30)), Image.new("RGB", (20, 15))
    main.save(tmp_path / "PXL.jpg", format="MPO", save_all=True, append_images=[depth_map],
              exif=exif)  # fmt: skip
    with Image.open(tmp_path / "PXL.jpg") as image:
        assert image.format == "MPO"  # what Pillow calls it
    attrs = read_exif(str(tmp_path / "PXL.jpg"))
    assert (attrs["format"], attrs["camera"], attrs["width"]) == ("JPEG", "Pixel 7", 40)


def test_heic_with_pillow_heif(tmp_path: Path) -> None:
    pytest.importorskip("pillow_heif", reason="HEIC needs the optional pillow-heif")
    photo = write_photo(tmp_path / "IMG_0001.HEIC", make="Apple", model="iPhone 13",
                        taken=datetime(2022, 1, 2, 3, 4, 5), gps=(-33.8568, 151.2153),
                        image_format="HEIF")  # fmt: skip
    attrs = read_exif(str(photo))
    assert (attrs["format"], attrs["camera"]) == ("HEIF", "iPhone 13")
    assert attrs["taken"] == datetime(2022, 1, 2, 3, 4, 5)
    assert (attrs["latitude"], attrs["longitude"]) == (-33.8568, 151.2153)


def test_avif_when_pillow_has_it(tmp_path: Path) -> None:
    if not features.check("avif"):
        pytest.skip("this Pillow was built without AVIF")
    photo = write_photo(tmp_path / "a.avif", make="SONY", model="ILCE-7M3",
                        modified=datetime(2024, 4, 4, 4, 4), image_format="AVIF")  # fmt: skip
    attrs = read_exif(str(photo))
    assert (attrs["format"], attrs["camera"]) == ("AVIF", "SONY ILCE-7M3")
    assert attrs["taken"] == datetime(2024, 4, 4, 4, 4)


def test_a_jpeg_cut_short_in_its_pixels_still_gives_its_metadata(tmp_path: Path) -> None:
    photo = write_photo(
        tmp_path / "cut.jpg", make="Google", model="Pixel 6", taken=datetime(2022, 1, 1, 9, 30),
        size=(256, 256),
    )  # fmt: skip
    data = photo.read_bytes()
    photo.write_bytes(data[: len(data) * 3 // 4])  # a download or copy that stopped early
    attrs = read_exif(str(photo))
    assert attrs["camera"] == "Pixel 6"
    assert attrs["taken"] == datetime(2022, 1, 1, 9, 30)


def test_a_jpeg_cut_inside_its_header_is_an_error(tmp_path: Path) -> None:
    photo = write_photo(tmp_path / "stub.jpg", make="Google", model="Pixel 6")
    photo.write_bytes(photo.read_bytes()[:40])
    with pytest.raises(ExifReadError, match="cannot read the image header"):
        read_exif(str(photo))
    with pytest.raises(ExifReadError, match="No such file"):
        read_exif(str(tmp_path / "gone.jpg"))


def test_damaged_exif_keeps_what_the_header_says(tmp_path: Path) -> None:
    photo = write_photo(tmp_path / "bad.jpg", make="Google", model="Pixel 6", size=(20, 10))
    data = bytearray(photo.read_bytes())
    tiff_header = data.index(b"Exif\x00\x00") + 6
    data[tiff_header + 4 : tiff_header + 8] = b"\xff\xff\xff\x7f"  # IFD0 offset past the end
    photo.write_bytes(bytes(data))
    attrs = read_exif(str(photo))
    assert (attrs["format"], attrs["width"], attrs["height"]) == ("JPEG", 20, 10)
    assert "make" not in attrs
    assert attrs["error"].startswith("damaged EXIF: Corrupt EXIF data")


def test_a_text_file_named_jpg_and_a_png_are_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("not a photo at all\n")
    Image.new("RGB", (8, 8)).save(tmp_path / "shot.png")
    for name in ("notes.jpg", "shot.png"):  # PNG: its EXIF can need a full decode
        with pytest.raises(ExifReadError, match="not an image clerk-exif can read"):
            read_exif(str(tmp_path / name))


def test_applies_by_extension_or_a_known_mime_only(
    tmp_path: Path, file_info: Callable[[Path], FileInfo]
) -> None:
    classifier = ExifClassifier()
    names = ["IMG_1.JPG", "b.jpeg", "c.tif", "d.webp", "e.png", "f.pdf", "noext"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    applies = {name: classifier.applies(file_info(tmp_path / name)) for name in names}
    assert applies == {"IMG_1.JPG": True, "b.jpeg": True, "c.tif": True, "d.webp": True,
                       "e.png": False, "f.pdf": False, "noext": False}  # fmt: skip
    # applies() never sniffs: an unknown MIME stays unknown
    assert file_info(tmp_path / "noext").mime_if_known is None
    write_photo(tmp_path / "camera-upload", make="Google")
    upload = file_info(tmp_path / "camera-upload")
    assert upload.mime == "image/jpeg"  # a rule asked for the MIME type (libmagic)
    assert classifier.applies(upload)
