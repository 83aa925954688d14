"""Write small photos with chosen EXIF metadata, to try rules on (and for tests).

    python -m clerk_exif.samples ~/Downloads/pixel.jpg --make Google --model "Pixel 7" \\
        --taken "2023-05-17 14:03:22"
    clerk explain ~/Downloads/pixel.jpg
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

EXIF_DATE_FORMAT = "%Y:%m:%d %H:%M:%S"


def write_photo(
    path: str | Path,
    *,
    make: str | None = None,
    model: str | None = None,
    taken: datetime | None = None,
    modified: datetime | None = None,
    gps: tuple[float, float] | None = None,
    altitude: float | None = None,
    lens: str | None = None,
    orientation: int | None = None,
    size: tuple[int, int] = (64, 48),
    image_format: str = "JPEG",
) -> Path:
    """Write a new image whose EXIF carries what is given (nothing given: no EXIF).

    Refuses to replace an existing file (`FileExistsError`).

    `taken` goes to DateTimeOriginal (with OffsetTimeOriginal when it is aware),
    `modified` to DateTime; `gps` is (latitude, longitude) in signed decimal degrees.
    """
    exif = Image.Exif()
    _put_base(exif, make, model, modified, orientation)
    _put_details(exif, taken, lens)
    if gps is not None:
        _put_gps(exif, gps, altitude)
    image = Image.new("RGB", size, (90, 140, 200))
    target = Path(path)
    with open(target, "xb") as out:  # "x": never overwrite someone's file
        if len(exif):
            image.save(out, format=image_format, exif=exif)
        else:
            image.save(out, format=image_format)
    return target


def _put_base(
    exif: Image.Exif,
    make: str | None,
    model: str | None,
    modified: datetime | None,
    orientation: int | None,
) -> None:
    if make is not None:
        exif[ExifTags.Base.Make] = make
    if model is not None:
        exif[ExifTags.Base.Model] = model
    if modified is not None:
        exif[ExifTags.Base.DateTime] = modified.strftime(EXIF_DATE_FORMAT)
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation


def _put_details(exif: Image.Exif, taken: datetime | None, lens: str | None) -> None:
    if taken is None and lens is None:
        return
    details = exif.get_ifd(ExifTags.IFD.Exif)
    if taken is not None:
        details[ExifTags.Base.DateTimeOriginal] = taken.strftime(EXIF_DATE_FORMAT)
        offset = taken.utcoffset()
        if offset is not None:
            details[ExifTags.Base.OffsetTimeOriginal] = _offset_text(offset)
    if lens is not None:
        details[ExifTags.Base.LensModel] = lens


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _put_gps(exif: Image.Exif, position: tuple[float, float], altitude: float | None) -> None:
    latitude, longitude = position
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N" if latitude >= 0 else "S"
    gps[ExifTags.GPS.GPSLatitude] = _degrees_minutes_seconds(abs(latitude))
    gps[ExifTags.GPS.GPSLongitudeRef] = "E" if longitude >= 0 else "W"
    gps[ExifTags.GPS.GPSLongitude] = _degrees_minutes_seconds(abs(longitude))
    if altitude is not None:
        gps[ExifTags.GPS.GPSAltitudeRef] = 1 if altitude < 0 else 0
        gps[ExifTags.GPS.GPSAltitude] = _rational(abs(altitude))


def _degrees_minutes_seconds(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return (IFDRational(degrees, 1), IFDRational(minutes, 1), _rational(seconds))


def _rational(value: float) -> IFDRational:
    fraction = Fraction(value).limit_denominator(10_000)
    return IFDRational(fraction.numerator, fraction.denominator)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m clerk_exif.samples", description=__doc__.splitlines()[0]
    )
    parser.add_argument("path", type=Path)
    parser.add_argument("--make")
    parser.add_argument("--model")
    parser.add_argument("--taken", type=datetime.fromisoformat, help="e.g. 2023-05-17 14:03")
    parser.add_argument("--gps", nargs=2, type=float, metavar=("LAT", "LON"))
    parser.add_argument("--lens")
    args = parser.parse_args(argv)
    gps = (args.gps[0], args.gps[1]) if args.gps else None
    try:
        write_photo(
            args.path, make=args.make, model=args.model, taken=args.taken, gps=gps, lens=args.lens
        )
    except FileExistsError:
        parser.exit(1, f"{args.path} exists already; give a new file name\n")
    print(args.path)


if __name__ == "__main__":
    main()
