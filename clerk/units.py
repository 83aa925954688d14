"""The quantities people read and write: sizes, durations, comparisons and times.

Rule files are parsed here (`parse_size`, `parse_duration`, `parse_comparison`) and the
CLI shows them with the matching formatters (`format_size`, `format_duration`); times
are shown by one pair, `format_time` for people and `iso_time` for JSON, which
`clerk.output` applies to every datetime in a table or a `--json` document.

Sizes follow the usual convention: KB/MB/GB are powers of 1000, KiB/MiB/GiB (and the
Kubernetes-style Ki/Mi/Gi used in `resources.memory`) powers of 1024. Durations take
`ms s m h d w` and combinations such as `1h30m`; a bare number means seconds.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from clerk.errors import SpecError

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
    "ti": 1024**4, "tib": 1024**4,
}  # fmt: skip
# Matched against stripped text: a \s* next to another \s* (or next to .+?) made Python's
# re try every split of a long run of spaces, minutes for a value of 200,000 characters.
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)")
# The largest quantities a rule means: 2**63 - 1 bytes (what SQLite and setrlimit hold) and
# 100 years (datetime arithmetic on `after:` and `every:` stays far from year 9999).
MAX_SIZE = 2**63 - 1
MAX_DURATION = 100 * 365 * 86400

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt, "=": operator.eq,
}  # fmt: skip
_COMPARISON_RE = re.compile(r"(>=|<=|==|!=|>|<|=)?\s*(.+)", re.DOTALL)


def parse_size(text: str | int | float) -> int:
    """`"10KB"` -> 10000, `"1.5MiB"` -> 1572864, `512` -> 512."""
    if isinstance(text, bool):
        raise SpecError(f"expected a size like 10KB or 5MiB, got {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise SpecError(f"a size cannot be negative, got {_brief(text)}")
        return int(_bounded(text, MAX_SIZE, "a size", "8 EiB"))
    m = _SIZE_RE.fullmatch(str(text).strip())
    unit = m.group(2).lower() if m else None
    if not m or unit not in _SIZE_UNITS:
        raise SpecError(f"expected a size like 10KB, 5MiB or 512Mi, got {_brief(text)}")
    return int(_bounded(float(m.group(1)) * _SIZE_UNITS[unit], MAX_SIZE, "a size", "8 EiB"))


def parse_duration(text: str | int | float) -> float:
    """`"5s"` -> 5.0, `"1h30m"` -> 5400.0, `"300ms"` -> 0.3, `30` -> 30.0 (seconds)."""
    if isinstance(text, bool):
        raise SpecError(f"expected a duration like 30s, 5m or 2h, got {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise SpecError(f"a duration cannot be negative, got {_brief(text)}")
        return _bounded(text, MAX_DURATION, "a duration", "100 years")
    s = str(text).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return _bounded(float(s), MAX_DURATION, "a duration", "100 years")
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise SpecError(f"expected a duration like 30s, 5m, 2h or 1h30m, got {_brief(text)}")
    return _bounded(total, MAX_DURATION, "a duration", "100 years")


def _bounded(value: float, most: int, what: str, shown: str) -> float:
    """`value`, refused past `most` or when it is no number at all (inf, nan)."""
    try:
        number = float(value)
    except OverflowError:  # an int of 400 digits
        raise SpecError(f"{what} goes up to {shown}, got {_brief(value)}") from None
    if math.isnan(number) or math.isinf(number):
        raise SpecError(f"{what} wants a finite number, got {_brief(value)}")
    if number > most:
        raise SpecError(f"{what} goes up to {shown}, got {_brief(value)}")
    return number


def _brief(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}... ({len(text)} characters)"


@dataclass(frozen=True)
class Comparison:
    """A parsed `">= 10KB"`: an operator and a number; `test(x)` applies it."""

    op: str
    value: float

    def test(self, actual: float) -> bool:
        return _OPERATORS[self.op](actual, self.value)

    def text(self, show: Callable[[float], str]) -> str:
        """`"> 30d"` with `show=format_duration`: the quantity the way people read it."""
        return f"{self.op} {show(self.value)}"

    def as_json(self) -> dict[str, str | float]:
        """`{"op": ">", "value": 2592000}`: a plain number, for machines."""
        return {"op": self.op, "value": plain_number(self.value)}

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


def parse_comparison(
    text: str | int | float, parse_value: Callable[[str], float], default_op: str = "=="
) -> Comparison:
    """Parse `"> 30d"` or `">= 10KB"` with `parse_value` for the quantity."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return Comparison(default_op, float(parse_value(text)))  # type: ignore[arg-type]
    m = _COMPARISON_RE.fullmatch(str(text).strip())
    if not m or not m.group(2):
        raise SpecError(f"expected a comparison like '>= 10KB' or '> 30d', got {_brief(text)}")
    op = m.group(1) or default_op
    if op == "=":
        op = "=="
    return Comparison(op, float(parse_value(m.group(2))))


def plain_number(value: float) -> float:
    """`2592000.0` -> `2592000` (an int when it is one), so JSON shows no `.0` or `e+06`."""
    return int(value) if float(value).is_integer() else value


_DURATION_STEPS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_duration(seconds: float) -> str:
    """A duration for people: the two largest units, `864035` -> `10d 0h`, `2592000` ->
    `30d`, `90` -> `1m 30s`, `0.3` -> `300ms`.

    The second unit is left out only when nothing is left after the first, so a rounded
    `10d 0h` is not mistaken for exactly `10d`.
    """
    seconds = max(0.0, float(seconds))
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    for index, (unit, size) in enumerate(_DURATION_STEPS):
        if whole >= size or size == 1:
            count, rest = divmod(whole, size)
            if rest == 0 or size == 1:
                return f"{count}{unit}"
            next_unit, next_size = _DURATION_STEPS[index + 1]
            return f"{count}{unit} {rest // next_size}{next_unit}"
    raise AssertionError("unreachable: the last step is one second")


def moment(ts: float | datetime | None) -> datetime | None:
    """A time as the CLI shows it: seconds since the epoch (as stored) -> an aware
    datetime in local time, which `format_time` / `iso_time` (and `clerk.output`, for
    tables and `--json`) turn into text."""
    if ts is None or isinstance(ts, datetime):
        return ts
    return datetime.fromtimestamp(ts).astimezone()


def format_time(when: float | datetime | None) -> str:
    """A time for people: local time to the second, `2026-12-04 18:03:12` ('' for none)."""
    shown = moment(when)
    return "" if shown is None else shown.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def iso_time(when: float | datetime | None) -> str | None:
    """A time for machines (`--json`): ISO 8601 in local time with its UTC offset, to the
    second, `2026-12-04T18:03:12+01:00` (None stays None)."""
    shown = moment(when)
    return None if shown is None else shown.astimezone().isoformat(timespec="seconds")


def format_size(size: float) -> str:
    """A size for people, in the units rule files use: `6` -> `6 B`, `10000` -> `10 KB`,
    `10240` -> `10 KiB`, `1234567` -> `1.23 MB`."""
    size = max(0, int(size))
    if size < 1000:
        return f"{size} B"
    for unit, base in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= base and size % base == 0:  # written in binary units: shown exactly
            return f"{size // base} {unit}"
    for unit, base in (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if size >= base:
            return f"{size / base:.3g} {unit}"
    raise AssertionError("unreachable: sizes from 1000 up have a unit")
