from __future__ import annotations

import pytest

from clerk.errors import SpecError
from clerk.units import (
    format_duration,
    format_size,
    parse_comparison,
    parse_duration,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10KB", 10_000), ("10kb", 10_000), ("1.5MiB", 1_572_864), ("512Mi", 512 * 1024**2),
     ("0", 0), (512, 512), ("2 GB", 2 * 1000**3), ("7B", 7)],
)  # fmt: skip
def test_sizes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["big", "10 XB", "-1", "", True, -5])
def test_bad_sizes_say_what_is_expected(bad: object) -> None:
    with pytest.raises(SpecError, match=r"size|negative"):
        parse_size(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5s", 5), ("1h30m", 5400), ("300ms", 0.3), ("2d", 172800), ("1w", 604800), (30, 30),
     ("45", 45)],
)  # fmt: skip
def test_durations(text: str | int, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["soon", "5 parsecs", "m5", "", "1h 30x"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(SpecError, match="duration"):
        parse_duration(bad)


def test_comparisons() -> None:
    c = parse_comparison(">= 10KB", parse_size)
    assert (c.op, c.value) == (">=", 10_000)
    assert c.test(10_000) and not c.test(9_999)
    assert parse_comparison("< 30d", parse_duration).test(86400)
    assert parse_comparison("100", parse_size).test(100)  # bare value means ==
    with pytest.raises(SpecError):
        parse_comparison(">= lots", parse_size)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(864035, "10d 0h"), (2592000, "30d"), (90, "1m 30s"), (3600, "1h"), (5400, "1h 30m"),
     (5, "5s"), (0, "0ms"), (0.3, "300ms"), (86399, "23h 59m"), (604800, "7d")],
)  # fmt: skip
def test_durations_for_people(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown
    assert parse_duration(shown.replace(" ", "")) <= seconds  # reads back, never more


@pytest.mark.parametrize(
    ("size", "shown"),
    [(6, "6 B"), (999, "999 B"), (10_000, "10 KB"), (10_240, "10 KiB"), (1_234_567, "1.23 MB"),
     (5 * 1024**2, "5 MiB"), (10**7, "10 MB")],
)  # fmt: skip
def test_sizes_for_people(size: int, shown: str) -> None:
    assert format_size(size) == shown


def test_comparisons_shown_and_as_json() -> None:
    age = parse_comparison("> 30d", parse_duration)
    assert age.text(format_duration) == "> 30d"
    assert age.as_json() == {"op": ">", "value": 2592000}
    assert isinstance(age.as_json()["value"], int)  # no 2592000.0 / 2.592e+06 in JSON


LONG = 200_000  # characters: a quadratic parse of this takes minutes


@pytest.mark.parametrize(
    ("parse", "bad"),
    [
        (parse_size, 10**400), (parse_size, float("inf")), (parse_size, float("nan")),
        (parse_size, "9" * 400 + "KB"), (parse_size, 2**63), (parse_size, "1e999"),
        (parse_duration, 10**400), (parse_duration, float("inf")),
        (parse_duration, float("nan")), (parse_duration, "9" * 400 + "d"),
        (parse_duration, 10**12), (parse_duration, "99999999999w"),
    ],
)  # fmt: skip
def test_numbers_past_every_range_are_spec_errors(parse: object, bad: object) -> None:
    with pytest.raises(SpecError):
        parse(bad)  # type: ignore[operator]


def test_the_largest_numbers_still_read() -> None:
    assert parse_size("1000TiB") == 1000 * 1024**4
    assert parse_duration("36500d") == 36500 * 86400


@pytest.mark.parametrize(
    "text",
    ["1" + " " * LONG + "!", "x" + " " * LONG + "y", "> 1" + " " * LONG + "!",
     " " * LONG + "x"],
)  # fmt: skip
def test_long_values_are_read_in_linear_time(text: str) -> None:
    # each of these took Python's re minutes (\s* next to \s* or .+?); a hang fails the suite
    for parse in (parse_size, parse_duration):
        with pytest.raises(SpecError):
            parse_comparison(text, parse)
        with pytest.raises(SpecError):
            parse(text)
