"""The `exif` classifier: photo metadata read with Pillow, as clerk attributes.

Only the image header and its metadata blocks are read, never the pixels, so a scan
over a photo library costs one small read per photo. The result is cached in clerk's
catalog until the file changes.
"""

from __future__ import annotations

import importlib.util
import math
import re
import warnings
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import TYPE_CHECKING, Any

from clerk.plugins.api import Classifier, FileInfo

if TYPE_CHECKING:
    from PIL.Image import Exif

# (Pillow format, file extensions, MIME types); HEIF needs pillow-heif, AVIF a Pillow
# built with libavif: `supported()` keeps only what this installation can open. Pillow
# opens multi-picture JPEGs (phones' portrait and motion photos) as MPO through JPEG.
_KINDS: tuple[tuple[str, frozenset[str], frozenset[str]], ...] = (
    ("JPEG", frozenset({"jpg", "jpeg", "jpe", "jfif"}), frozenset({"image/jpeg"})),
    ("TIFF", frozenset({"tif", "tiff"}), frozenset({"image/tiff"})),
    ("WEBP", frozenset({"webp"}), frozenset({"image/webp"})),
    ("HEIF", frozenset({"heic", "heif", "hif"}), frozenset({"image/heic", "image/heif"})),
    ("AVIF", frozenset({"avif"}), frozenset({"image/avif"})),
)

# EXIF tag numbers (see PIL.ExifTags); spelt out so this module imports without Pillow
_IFD_EXIF, _IFD_GPS = 0x8769, 0x8825
_MAKE, _MODEL, _ORIENTATION, _SOFTWARE, _DATETIME = 0x010F, 0x0110, 0x0112, 0x0131, 0x0132
_DATETIME_ORIGINAL, _DATETIME_DIGITIZED = 0x9003, 0x9004
_OFFSET_TIME, _OFFSET_TIME_ORIGINAL, _OFFSET_TIME_DIGITIZED = 0x9010, 0x9011, 0x9012
_LENS_MAKE, _LENS_MODEL = 0xA433, 0xA434
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON, _GPS_ALT_REF, _GPS_ALT = 1, 2, 3, 4, 5, 6

# words a maker's legal name ends with; "NIKON CORPORATION" is "NIKON" in `camera`
_CORPORATE_WORDS = frozenset(
    {"corporation", "corp", "co", "co.,ltd", "ltd", "limited", "inc", "company", "imaging",
     "optical", "electronics", "electric", "gmbh", "ag"}
)  # fmt: skip
# model names that are known without their maker: a Pixel's Make is "Google", yet
# people (and rules like `exif.camera: "Pixel*"`) call it "Pixel 7"
_STANDALONE_MODELS = frozenset({"pixel", "nexus", "iphone", "ipad", "ipod"})

_EXIF_DATE = re.compile(r"^\s*(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_UTC_OFFSET = re.compile(r"^\s*([+-])(\d{2}):?(\d{2})\s*$")


class ExifReadError(ValueError):
    """The file is not an image this Pillow installation can read."""


class ExifClassifier(Classifier):
    """`{exif.taken:%Y}`, `{exif.camera}`, `attr: {exif.gps: true}` and the rest.

    Attributes a photo does not carry are left out, so `attr: {exif.taken: true}`
    tests for them and an `attr` test on a missing one does not match.
    """

    namespace = "exif"
    attributes = frozenset(
        {"taken", "make", "model", "camera", "lens", "software", "orientation", "width",
         "height", "format", "gps", "latitude", "longitude", "altitude", "error"}
    )  # fmt: skip

    def applies(self, file: FileInfo) -> bool:
        # by name, or by a MIME type already known; never sniff content just for this
        extensions, mimes, _ = supported()
        if file.ext.lower() in extensions:
            return True
        mime = file.mime_if_known
        return mime is not None and mime in mimes

    def classify(self, file: FileInfo) -> dict[str, Any]:
        return read_exif(file.path)


@cache
def supported() -> tuple[frozenset[str], frozenset[str], tuple[str, ...]]:
    """(extensions, MIME types, Pillow formats) this installation can read metadata of."""
    available = {"JPEG", "TIFF"} | {fmt for fmt in ("WEBP", "AVIF") if _pillow_has(fmt)}
    if _register_heif_opener():
        available.add("HEIF")
    kinds = [kind for kind in _KINDS if kind[0] in available]
    return (
        frozenset().union(*(exts for _, exts, _ in kinds)),
        frozenset().union(*(mimes for _, _, mimes in kinds)),
        tuple(fmt for fmt, _, _ in kinds),
    )


def _pillow_has(image_format: str) -> bool:
    """Whether Pillow was built with the codec (its plugin loads either way)."""
    from PIL import features

    try:
        return bool(features.check_module(image_format.lower()))
    except ValueError:  # a Pillow too old to know the format at all
        return False


def _register_heif_opener() -> bool:
    """HEIC/HEIF (iPhone photos) when the optional pillow-heif is installed."""
    if importlib.util.find_spec("pillow_heif") is None:
        return False
    try:
        from pillow_heif import register_heif_opener
    except (ImportError, OSError):  # installed but broken (libheif): go on without HEIF
        return False
    register_heif_opener()
    return True


def read_exif(path: str) -> dict[str, Any]:
    """The `exif` attributes of the image at `path`.

    Raises `ExifReadError` when the file is not an image Pillow can read (clerk records
    that against the file). An image whose metadata is damaged still gives its size and
    format, with the reason under `error`.
    """
    # Pillow reports some damage as a warning and goes on with what it could read: that
    # becomes `error`, on the file it concerns, rather than a line on stderr
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        attrs = _read(path)
    # only UserWarnings ("Corrupt EXIF data"); a DecompressionBombWarning is about the
    # pixels, which are never decoded here
    damage = [w for w in caught if issubclass(w.category, UserWarning)]
    if damage and "error" not in attrs:
        attrs["error"] = f"damaged EXIF: {str(damage[0].message).strip()}"
    return attrs


def _read(path: str) -> dict[str, Any]:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path, formats=supported()[2])
    except UnidentifiedImageError as exc:
        raise ExifReadError(f"not an image clerk-exif can read: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        # a truncated or damaged header: Pillow's parsers raise all of these
        raise ExifReadError(f"cannot read the image header: {exc}") from None
    with image:
        attrs: dict[str, Any] = {
            # an MPO is a JPEG with extra pictures in it; users know it as a JPEG
            "format": "JPEG" if image.format == "MPO" else image.format,
            "width": image.width,
            "height": image.height,
        }
        try:
            attrs.update(exif_attributes(image.getexif()))
        except Exception as exc:  # damaged EXIF: keep what the header said
            attrs["error"] = f"unreadable EXIF: {type(exc).__name__}: {exc}"
    return attrs


def exif_attributes(exif: Exif) -> dict[str, Any]:
    """The attributes found in a Pillow `Exif` (the base IFD, its Exif and GPS IFDs)."""
    details = exif.get_ifd(_IFD_EXIF)
    attrs: dict[str, Any] = {}
    make, model = _text(exif.get(_MAKE)), _text(exif.get(_MODEL))
    put(attrs, "make", make)
    put(attrs, "model", model)
    put(attrs, "camera", camera_name(make, model))
    put(attrs, "lens", _text(details.get(_LENS_MODEL)) or _text(details.get(_LENS_MAKE)))
    put(attrs, "software", _text(exif.get(_SOFTWARE)))
    put(attrs, "taken", _taken(exif, details))
    orientation = exif.get(_ORIENTATION)
    if isinstance(orientation, int) and 1 <= orientation <= 8:
        attrs["orientation"] = orientation
    attrs.update(gps_attributes(exif.get_ifd(_IFD_GPS)))
    return attrs


def put(attrs: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        attrs[key] = value


def _taken(exif: Exif, details: Any) -> datetime | None:
    """When the photo was taken: DateTimeOriginal, else DateTimeDigitized, else DateTime.

    With an OffsetTime* tag the datetime is aware; without one it is the camera's wall
    clock (naive), which is what a `{exif.taken:%Y/%m}` folder should follow.
    """
    candidates = (
        (details.get(_DATETIME_ORIGINAL), details.get(_OFFSET_TIME_ORIGINAL)),
        (details.get(_DATETIME_DIGITIZED), details.get(_OFFSET_TIME_DIGITIZED)),
        (exif.get(_DATETIME), details.get(_OFFSET_TIME)),
    )
    for value, offset in candidates:
        taken = parse_exif_datetime(_text(value), _text(offset))
        if taken is not None:
            return taken
    return None


def parse_exif_datetime(text: str | None, offset: str | None = None) -> datetime | None:
    """`"2023:05:17 14:03:22"` (+ `"+02:00"`) as a datetime; None for blank or bogus dates.

    Cameras without a set clock write `"0000:00:00 00:00:00"` or blanks: no date.
    """
    found = _EXIF_DATE.match(text or "")
    if found is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in found.groups())
    try:
        taken = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    zone = _parse_offset(offset)
    return taken.replace(tzinfo=zone) if zone is not None else taken


def _parse_offset(text: str | None) -> timezone | None:
    found = _UTC_OFFSET.match(text or "")
    if found is None:
        return None
    sign, hours, minutes = found.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta >= timedelta(hours=24):
        return None
    return timezone(-delta if sign == "-" else delta)


def camera_name(make: str | None, model: str | None) -> str | None:
    """The name people use for the camera.

    The model alone when it already names the maker ("Canon EOS R5", "NIKON D750") or is
    known on its own ("Pixel 7", "iPhone 13"); else maker and model ("SONY ILCE-7M3"),
    the maker without words like CORPORATION ("OLYMPUS E-M10").
    """
    maker = _short_maker(make) if make else None
    if not model:
        return maker
    if not maker:
        return model
    first_word = model.split()[0].lower()
    maker_words = {word.lower() for word in maker.split()}
    if (
        first_word in maker_words
        or first_word in _STANDALONE_MODELS
        or model.lower().startswith(maker.lower())
    ):
        return model
    return f"{maker} {model}"


def _short_maker(make: str) -> str:
    words = make.split()
    while len(words) > 1 and words[-1].strip(".,").lower() in _CORPORATE_WORDS:
        words.pop()
    return " ".join(words).rstrip(",")


def gps_attributes(gps: Any) -> dict[str, Any]:
    """`gps` (a position is recorded), `latitude`, `longitude` and `altitude` if known.

    Some phones write a GPS block with a timestamp but no position: that is `gps: false`.
    """
    latitude = _coordinate(gps.get(_GPS_LAT), _text(gps.get(_GPS_LAT_REF)), "S", 90)
    longitude = _coordinate(gps.get(_GPS_LON), _text(gps.get(_GPS_LON_REF)), "W", 180)
    if latitude is None or longitude is None:
        return {"gps": False}
    attrs: dict[str, Any] = {"gps": True, "latitude": latitude, "longitude": longitude}
    altitude = _number(gps.get(_GPS_ALT))
    if altitude is not None:
        below_sea = gps.get(_GPS_ALT_REF) in (1, b"\x01")
        attrs["altitude"] = round(-altitude if below_sea else altitude, 1)
    return attrs


def _coordinate(value: Any, ref: str | None, negative_ref: str, limit: float) -> float | None:
    """Degrees, minutes, seconds as signed decimal degrees (None if missing or absurd)."""
    if not isinstance(value, tuple) or not 1 <= len(value) <= 3:
        return None
    degrees = 0.0
    for index, part in enumerate(value):
        number = _number(part)
        if number is None or number < 0:
            return None
        degrees += number / 60**index
    if degrees > limit:
        return None
    sign = -1 if (ref or "").strip().upper() == negative_ref else 1
    return round(sign * degrees, 6)


def _number(value: Any) -> float | None:
    """A rational or number as a float; None for 0/0, x/0 and other non-numbers."""
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str | None:
    """An ASCII tag's text without the NUL padding some cameras write; None if blank."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", " ").strip()
    return text or None
