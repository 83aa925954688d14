"""Patterns from rule files, compiled once and matched in time linear in the text.

Every pattern a rule applies to a file's name, path, content or attributes is compiled
here: `regex` and `content` patterns, and the globs of `name`, `path`, `mime`, `attr` and
a root's `ignore`. They run on RE2 (google-re2), which never backtracks, so no pattern
and no file can pin a worker: Python's `re` takes 2**n steps for `(a+)+$` on n a's and a
`!`. The price is RE2's syntax, which has no backreferences and no lookaround; `compile`
names such a construct and where it is (`PatternError.offset`), so `clerk check` can
point at it.

Subjects are `str`. A file name that is not UTF-8 (Python holds its bytes as lone
surrogates) is matched as if each such byte were U+FFFD, so `.` and `*` still match it,
and a group that captures it keeps the original byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import re2

from clerk.errors import SpecError

SYNTAX_URL = "https://github.com/google/re2/wiki/Syntax"
MAX_REPEAT = 1000  # RE2's limit on a counted repetition {n}

# Lone surrogates cannot be encoded to UTF-8; one replacement character each keeps
# every character offset where it was.
_SURROGATES = dict.fromkeys(range(0xD800, 0xE000), 0xFFFD)


class PatternError(SpecError):
    """A pattern RE2 cannot compile; `offset` is the character where the trouble is."""

    def __init__(self, message: str, pattern: str, offset: int):
        super().__init__(message)
        self.pattern = pattern
        self.offset = offset


class Match:
    """A successful match: its named groups, as text of the subject."""

    __slots__ = ("_match", "_names", "_subject", "_translated")

    def __init__(
        self, match: Any, names: Sequence[tuple[str, int]], subject: str, translated: bool
    ):
        self._match = match
        self._names = names
        self._subject = subject
        self._translated = translated

    def groupdict(self) -> dict[str, str]:
        """Named groups that took part in the match (the others are left out)."""
        fields: dict[str, str] = {}
        for name, index in self._names:
            start, end = self._match.span(index)
            if start >= 0:
                fields[name] = self._text(start, end)
        return fields

    def _text(self, start: int, end: int) -> str:
        encoded: bytes = self._match.string
        if not self._translated:
            return encoded[start:end].decode("utf-8", errors="replace")
        # byte offsets into the translated text -> character offsets into the original
        first = len(encoded[:start].decode("utf-8", errors="replace"))
        last = first + len(encoded[start:end].decode("utf-8", errors="replace"))
        return self._subject[first:last]


class Pattern:
    """A checked pattern, compiled when first matched. `pattern` is the text as written.

    RE2 holds about 4 KB per compiled pattern: `clerk check` of a rule file with 100,000
    patterns would hold 400 MB for nothing, so the check's compilation is dropped.
    """

    __slots__ = ("_encoded", "_ignore_case", "_names", "_regex", "pattern")

    def __init__(self, pattern: str, encoded: bytes, ignore_case: bool, names: tuple[Any, ...]):
        self.pattern = pattern
        self._encoded = encoded
        self._ignore_case = ignore_case
        self._names = names
        self._regex: Any = None

    @property
    def groupindex(self) -> dict[str, int]:
        """Named groups and their numbers, like `re.Pattern.groupindex`."""
        return dict(self._names)

    def search(self, subject: str) -> Match | None:
        """The first match anywhere in `subject`."""
        encoded, translated = _encode(subject)
        found = self._compiled().search(encoded)
        return None if found is None else Match(found, self._names, subject, translated)

    def fullmatch(self, subject: str) -> Match | None:
        """A match of the whole of `subject`."""
        encoded, translated = _encode(subject)
        found = self._compiled().fullmatch(encoded)
        return None if found is None else Match(found, self._names, subject, translated)

    def _compiled(self) -> Any:
        regex = self._regex
        if regex is None:  # two threads may both compile: the same answer
            regex = self._regex = _re2(self._encoded, self._ignore_case)
        return regex


_GROUP_NAME = re.compile(r"\(\?P?<([A-Za-z_]\w*)>")


def group_names(pattern: str) -> set[str]:
    """The named groups written in `pattern`, even one that does not compile: the fields
    a filter that failed might have provided (`clerk check` does not call them unknown)."""
    return set(_GROUP_NAME.findall(pattern))


def compile_pattern(pattern: str, *, ignore_case: bool = False) -> Pattern:
    """Check a user's regular expression, or raise `PatternError` saying what is wrong."""
    encoded, _ = _encode(pattern)
    try:
        regex = _re2(encoded, ignore_case)
    except re2.error as exc:
        raise _error(pattern, _decode(exc.args[0] if exc.args else b"")) from None
    names = tuple(sorted((_decode(name), index) for name, index in regex.groupindex.items()))
    return Pattern(pattern, encoded, ignore_case, names)


def _re2(encoded: bytes, ignore_case: bool) -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every error to stderr itself
    options.case_sensitive = not ignore_case
    return re2.compile(encoded, options)


def glob_pattern(glob: str, *, ignore_case: bool = False, path: bool = False) -> Pattern:
    """Compile one glob; see `globs_pattern`."""
    return globs_pattern([glob], ignore_case=ignore_case, path=path)


def globs_pattern(
    globs: Iterable[str], *, ignore_case: bool = False, path: bool = False
) -> Pattern:
    """One pattern that fully matches what any of `globs` matches.

    Name globs mean what `fnmatch` means: `*` any text, `?` one character, `[abc]`,
    `[a-z]` and `[!abc]` one of (or none of) a set. With `path=True`, `*` and `?` stay
    within one `/`-separated component and `**` spans any number of them.
    """
    globs = list(globs)
    body = "|".join(f"(?:{glob_to_regex(g, path=path)})" for g in globs)
    return compile_pattern("(?s)" + (body or r"[^\x00-\x{10FFFF}]"), ignore_case=ignore_case)


def glob_to_regex(glob: str, *, path: bool = False) -> str:
    """The RE2 text of one glob, unanchored (the caller matches it in full)."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if path and glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif path and glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*" if path else ".*")
            i += 1
        elif c == "?":
            out.append("[^/]" if path else ".")
            i += 1
        elif c == "[":
            i = _glob_class(glob, i, out)
        else:
            out.append(_literal(c))
            i += 1
    return "".join(out)


def _glob_class(glob: str, start: int, out: list[str]) -> int:
    """Translate the `[...]` at `start` (fnmatch's rules); return the index after it."""
    j = start + 1
    if j < len(glob) and glob[j] == "!":
        j += 1
    if j < len(glob) and glob[j] == "]":
        j += 1
    end = glob.find("]", j)
    if end == -1:  # no closing bracket: a literal `[`
        out.append(_literal("["))
        return start + 1
    body = glob[start + 1 : end]
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    items, k = [], 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            low, high = body[k], body[k + 2]
            if low <= high:  # fnmatch drops an empty range like z-a
                items.append(f"{_literal(low)}-{_literal(high)}")
            k += 3
        else:
            items.append(_literal(body[k]))
            k += 1
    if not items:
        out.append("." if negate else r"[^\x00-\x{10FFFF}]")
    else:
        out.append(f"[{'^' if negate else ''}{''.join(items)}]")
    return end + 1


def _literal(c: str) -> str:
    """`c` as RE2 text that matches only itself, inside or outside a class."""
    if c.isalnum() or c == "_" or ord(c) >= 0x80:
        return c
    if c.isprintable() and c != " ":
        return "\\" + c
    return f"\\x{{{ord(c):x}}}"


def _encode(text: str) -> tuple[bytes, bool]:
    try:
        return text.encode("utf-8"), False
    except UnicodeEncodeError:
        return text.translate(_SURROGATES).encode("utf-8"), True


def _decode(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


# --- saying what RE2 does not support ------------------------------------------------------

_BACKREFERENCE = "write the repeated text out instead"
_GROUP_CONSTRUCTS = (
    ("(?P=", "backreference (?P=name)", _BACKREFERENCE),
    ("(?=", "lookahead (?=...)", "match the text itself, or put a second filter under `not:`"),
    ("(?!", "lookahead (?!...)", "put the filter under `not:` instead"),
    ("(?<=", "lookbehind (?<=...)", "match the text itself"),
    ("(?<!", "lookbehind (?<!...)", "put a second filter under `not:` instead"),
    ("(?>", "atomic group (?>...)", "write a plain group (?:...): RE2 never backtracks"),
    ("(?(", "conditional group (?(...)...)", "split it into two rules or an `any:`"),
    ("(?#", "comment (?#...)", "remove it"),
)
_POSSESSIVE = "drop the `+`: RE2 never backtracks"
_FLAGS = re.compile(r"\(\?([a-zA-Z]+)[:)-]")
_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")


def _error(pattern: str, message: str) -> PatternError:
    found = _unsupported(pattern)
    if found is not None:
        offset, construct, advice = found
        return PatternError(
            f"{construct} is not supported by RE2, the pattern syntax of rules (it matches"
            f" in time linear in the text): {advice} (see {SYNTAX_URL})",
            pattern,
            offset,
        )
    _, _, fragment = message.partition(": ")
    offset = pattern.find(fragment) if fragment else -1
    return PatternError(
        f"invalid regular expression {pattern!r}: {message} (RE2 syntax, see {SYNTAX_URL})",
        pattern,
        max(offset, 0),
    )


def _unsupported(pattern: str) -> tuple[int, str, str] | None:
    """The first construct of Python's `re` that RE2 lacks: (offset, what, advice)."""
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            found = _unsupported_escape(pattern, i)
            if found is not None:
                return found
            i += 2
        elif c == "[":
            i = _skip_class(pattern, i)
        elif c == "(" and pattern.startswith("(?", i):
            for prefix, construct, advice in _GROUP_CONSTRUCTS:
                if pattern.startswith(prefix, i):
                    return i, construct, advice
            flags = _FLAGS.match(pattern, i)
            if flags and set(flags.group(1)) - set("imsU"):
                return i, f"flag (?{flags.group(1)})", "RE2 knows the flags i, m, s and U"
            i += 2
        elif c in "*+?" and pattern.startswith("+", i + 1) and i > 0:
            return i + 1, f"possessive quantifier {c}+", _POSSESSIVE
        elif c == "{" and (repeat := _REPEAT.match(pattern, i)) is not None:
            if any(int(g) > MAX_REPEAT for g in repeat.groups() if g):
                return i, f"repetition {repeat.group(0)}", f"RE2 repeats at most {MAX_REPEAT} times"
            if pattern.startswith("+", repeat.end()):
                return repeat.end(), f"possessive quantifier {repeat.group(0)}+", _POSSESSIVE
            i = repeat.end()
        else:
            i += 1
    return None


def _unsupported_escape(pattern: str, i: int) -> tuple[int, str, str] | None:
    escape = pattern[i + 1]
    if escape in "123456789":
        return i, f"backreference \\{escape}", _BACKREFERENCE
    if escape == "Z":
        return i, "\\Z", "write \\z for the end of the text"
    if escape in "uUN":
        return i, f"the escape \\{escape}", "write \\x{263A} for a code point"
    return None


def _skip_class(pattern: str, i: int) -> int:
    """The index after the character class that starts at `i`."""
    j = i + 1
    if pattern.startswith("^", j):
        j += 1
    if pattern.startswith("]", j):
        j += 1
    while j < len(pattern):
        if pattern[j] == "\\":
            j += 2
        elif pattern.startswith("[:", j) and (close := pattern.find(":]", j + 2)) != -1:
            j = close + 2
        elif pattern[j] == "]":
            return j + 1
        else:
            j += 1
    return j
