"""Error types shared by every room, and the `Problem` record `clerk check` prints."""

from __future__ import annotations

from typing import NamedTuple

# NamedTuples rather than dataclasses: this module is imported by `clerk --help`, and
# the dataclasses module costs it a few milliseconds.


class Location(NamedTuple):
    """Where something was written: a file and a 1-based line and column (0 when unknown)."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col or 1}"
        return self.file


# Line breaks and other control characters, shown escaped: a message quotes what a user
# wrote (a root path with a newline in it), and one problem is one line of output.
_ONE_LINE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_ONE_LINE |= {0x2028: "\\u2028", 0x2029: "\\u2029", ord("\n"): "\\n", ord("\t"): "\\t"}


class Problem(NamedTuple):
    """One thing wrong with the configuration, reported as `file:line:col: message`."""

    where: Location
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.where}: {prefix}{self.message}".translate(_ONE_LINE)


class ClerkError(Exception):
    """Base of errors a user can fix; the CLI prints them without a traceback."""


class ConfigError(ClerkError):
    """Configuration (config.yaml or rule files) is invalid; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SpecError(ValueError):
    """Raised by a filter, action or classifier constructor when its YAML value is wrong.

    The loader turns it into a `Problem` at the location of the offending value, so the
    message should say what is wrong and what would be right, e.g.
    ``size wants a comparison like ">= 10KB", got "big"``.

    `key` (and `index`, an item of a list value) names the value that is wrong, where
    the error is about one key of several: an executor's task keys, which `clerk check`
    then reports at that key (item) rather than at the task.
    """

    def __init__(self, message: str = "", *, key: str | None = None, index: int | None = None):
        super().__init__(message)
        self.key = key
        self.index = index


class RenderError(ClerkError):
    """A template could not be rendered, or rendered to a path outside every root."""
