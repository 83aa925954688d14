from __future__ import annotations

import pytest

from clerk.errors import SpecError
from clerk.units import parse_comparison, parse_duration, parse_size


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
