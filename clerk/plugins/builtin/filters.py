"""The built-in filters, registered through `register_filters` like any plugin's."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from clerk.errors import SpecError
from clerk.plugins.api import FileInfo, Filter, Verdict
from clerk.plugins.hookspecs import hookimpl
from clerk.rules.copies import DEFAULT_ORIGINAL_BY, ORIGINAL_BY
from clerk.rules.patterns import Pattern, compile_pattern, glob_pattern
from clerk.rules.suggest import hint
from clerk.units import (
    Comparison,
    format_duration,
    format_size,
    parse_comparison,
    parse_duration,
    parse_size,
)


def _strings(value: Any, what: str) -> list[str]:
    """A string or a non-empty list of strings."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str | int | float) and not isinstance(v, bool)
                            for v in items):  # fmt: skip
        raise SpecError(f"{what} wants a string or a list of strings, got {value!r}")
    return [str(v) for v in items]


class NameFilter(Filter):
    """`name: "*.jpg"` or a list of globs, matched against the file name, case-insensitive.

    The mapping form takes `glob`, `startswith`, `endswith`, `contains` and
    `case_sensitive` (default false).
    """

    def __init__(self, value: Any):
        super().__init__(value)
        self.case_sensitive = False
        if isinstance(value, dict):
            unknown = set(value) - {"glob", "startswith", "endswith", "contains", "case_sensitive"}
            if unknown:
                raise SpecError(f"name: unknown option(s) {', '.join(sorted(unknown))}")
            self.case_sensitive = bool(value.get("case_sensitive", False))
            globs = []
            if "glob" in value:
                globs.extend(_strings(value["glob"], "name.glob"))
            for key, shape in (("startswith", "{}*"), ("endswith", "*{}"), ("contains", "*{}*")):
                if key in value:
                    globs.extend(shape.format(_escape_glob(s)) for s in _strings(value[key], key))
            if not globs:
                raise SpecError("name wants a glob, or one of glob/startswith/endswith/contains")
        else:
            globs = _strings(value, "name")
        self.globs = globs
        self.patterns = [glob_pattern(g, ignore_case=not self.case_sensitive) for g in globs]

    def match(self, file: FileInfo) -> Verdict:
        name = file.name
        for glob, pattern in zip(self.globs, self.patterns, strict=True):
            if pattern.fullmatch(name) is not None:
                return Verdict(True, f"name matches {glob!r}", seen=name, wanted=self.globs)
        return Verdict(
            False, f"name {name!r} matches none of {self.globs}", seen=name, wanted=self.globs
        )


def _escape_glob(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


class RegexFilter(Filter):
    """`regex: 'IMG_(?P<num>\\d+)'`: searched in the file name; named groups become fields.

    Mapping form: `{pattern: ..., on: name | relpath | path}`.
    """

    def __init__(self, value: Any):
        super().__init__(value)
        self.on = "name"
        if isinstance(value, dict):
            unknown = set(value) - {"pattern", "on"}
            if unknown:
                raise SpecError(f"regex: unknown option(s) {', '.join(sorted(unknown))}")
            if "pattern" not in value:
                raise SpecError("regex wants a pattern")
            self.on = value.get("on", "name")
            if self.on not in ("name", "relpath", "path"):
                raise SpecError(f"regex.on must be name, relpath or path, got {self.on!r}")
            value = value["pattern"]
        if not isinstance(value, str):
            raise SpecError(f"regex wants a pattern string, got {value!r}")
        self.pattern = compile_pattern(value)

    def provides(self) -> frozenset[str]:
        return frozenset(self.pattern.groupindex)

    def match(self, file: FileInfo) -> Verdict:
        subject = {"name": file.name, "relpath": file.relpath, "path": file.path}[self.on]
        m = self.pattern.search(subject)
        if m is None:
            return Verdict(False, f"{self.on} does not match /{self.pattern.pattern}/")
        fields = m.groupdict()
        return Verdict(True, f"{self.on} matches /{self.pattern.pattern}/", fields)


class ExtensionFilter(Filter):
    """`extension: [jpg, png]`: the file name's extension, case-insensitive, dot optional."""

    def __init__(self, value: Any):
        super().__init__(value)
        self.extensions = frozenset(e.lower().lstrip(".") for e in _strings(value, "extension"))
        self._wanted = sorted(self.extensions)
        self._shown = ", ".join(self._wanted)

    def match(self, file: FileInfo) -> Verdict:
        ext = file.ext.lower()
        if ext in self.extensions:
            return Verdict(True, f"extension {ext!r}", seen=ext, wanted=self._wanted)
        return Verdict(
            False, f"extension {ext!r} not in [{self._shown}]", seen=ext, wanted=self._wanted
        )


class MimeFilter(Filter):
    """`mime: image/*`: the type libmagic finds in the content (not the name), glob or list."""

    cost = 2

    def __init__(self, value: Any):
        super().__init__(value)
        self.globs = [g.lower() for g in _strings(value, "mime")]
        for glob in self.globs:
            if "/" not in glob:
                raise SpecError(f"mime wants a type like image/* or application/pdf, got {glob!r}")
        self.patterns = [glob_pattern(g) for g in self.globs]

    def match(self, file: FileInfo) -> Verdict:
        mime = file.mime
        for glob, pattern in zip(self.globs, self.patterns, strict=True):
            if pattern.fullmatch(mime) is not None:
                return Verdict(True, f"mime {mime} matches {glob}", seen=mime, wanted=self.globs)
        return Verdict(
            False, f"mime {mime} matches none of {self.globs}", seen=mime, wanted=self.globs
        )


def _comparisons(value: Any, what: str, parse: Callable[[str], float]) -> list[Comparison]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise SpecError(f"{what} wants a comparison like '>= 10KB'")
    return [parse_comparison(v, parse) for v in items]


class SizeFilter(Filter):
    """`size: ">= 10KB"` or a list of comparisons that must all hold (`[">1KB", "<5MB"]`)."""

    def __init__(self, value: Any):
        super().__init__(value)
        self.comparisons = _comparisons(value, "size", parse_size)
        self._shown = " and ".join(c.text(format_size) for c in self.comparisons)
        self._wanted = [c.as_json() for c in self.comparisons]

    def match(self, file: FileInfo) -> Verdict:
        size = file.size
        ok = all(c.test(size) for c in self.comparisons)
        return Verdict(
            ok,
            f"size {format_size(size)} {'is' if ok else 'is not'} {self._shown}",
            seen=size,
            wanted=self._wanted,
        )


class AgeFilter(Filter):
    """`age: "> 30d"`: time since the last modification, compared with a duration."""

    def __init__(self, value: Any):
        super().__init__(value)
        self.comparisons = _comparisons(value, "age", parse_duration)
        self._shown = " and ".join(c.text(format_duration) for c in self.comparisons)
        self._wanted = [c.as_json() for c in self.comparisons]

    def match(self, file: FileInfo) -> Verdict:
        age = file.now.timestamp() - file.st.st_mtime
        ok = all(c.test(age) for c in self.comparisons)
        return Verdict(
            ok,
            f"age {format_duration(age)} {'is' if ok else 'is not'} {self._shown}",
            seen=round(age, 3),
            wanted=self._wanted,
        )


# matched against stripped text: `\s*` next to `\s*` made re try every split of a long run
# of spaces (minutes for 200,000 of them)
_DATE_CMP = re.compile(r"(>=|<=|>|<|==|=)?\s*(\d{4}-\d{2}-\d{2}(?:[T ][\d:]+)?)")
_NUMBER_CMP = re.compile(r"(>=|<=|>|<|==|!=)\s*(-?\d+(?:\.\d+)?)")


class ModifiedFilter(Filter):
    """`modified: "> 7d"` (like age) or `modified: ">= 2024-01-01"` (a date)."""

    def __init__(self, value: Any):
        super().__init__(value)
        self.dates: list[tuple[str, datetime]] = []
        self.ages: list[Comparison] = []
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, date):
                item = f">= {item.isoformat()}"
            m = _DATE_CMP.fullmatch(str(item).strip())
            if m:
                try:
                    when = datetime.fromisoformat(m.group(2)).astimezone()
                except (ValueError, OverflowError) as exc:
                    raise SpecError(f"modified: bad date {m.group(2)!r}: {exc}") from None
                op = m.group(1) or ">="
                self.dates.append(("==" if op == "=" else op, when))
            else:
                self.ages.append(parse_comparison(item, parse_duration))
        shown = [c.text(format_duration) for c in self.ages]
        shown += [f"{op} {when:%Y-%m-%d %H:%M}" for op, when in self.dates]
        self._shown = " and ".join(shown)
        self._wanted: list[dict[str, Any]] = [c.as_json() for c in self.ages]
        self._wanted += [{"op": op, "value": when} for op, when in self.dates]

    def match(self, file: FileInfo) -> Verdict:
        mtime = file.mtime
        age = file.now.timestamp() - file.st.st_mtime
        ok = all(c.test(age) for c in self.ages) and all(
            Comparison(op, when.timestamp()).test(mtime.timestamp()) for op, when in self.dates
        )
        return Verdict(
            ok,
            f"modified {mtime:%Y-%m-%d %H:%M} ({format_duration(age)} ago)"
            f" {'is' if ok else 'is not'} {self._shown}",
            seen=mtime,
            wanted=self._wanted,
        )


class PathFilter(Filter):
    """`path: "invoices/**/*.pdf"`: a glob on the path relative to the root.

    `*` stays within one directory, `**` spans any number; a list means any of them.
    """

    def __init__(self, value: Any):
        super().__init__(value)
        self.globs = _strings(value, "path")
        self.patterns = [glob_pattern(g.lstrip("/"), path=True) for g in self.globs]

    def match(self, file: FileInfo) -> Verdict:
        for glob, pattern in zip(self.globs, self.patterns, strict=True):
            if pattern.fullmatch(file.relpath) is not None:
                return Verdict(
                    True, f"path {file.relpath!r} matches {glob!r}",
                    seen=file.relpath, wanted=self.globs,
                )  # fmt: skip
        return Verdict(
            False, f"path {file.relpath!r} matches none of {self.globs}",
            seen=file.relpath, wanted=self.globs,
        )  # fmt: skip


class ContentFilter(Filter):
    """`content: 'Invoice\\s+(?P<customer>\\w+)'`: a regex over the first KiB of text.

    Case-insensitive when written `{pattern: ..., case_sensitive: false}`; named groups
    become template fields. Binary files (a NUL in the first KiB) never match.
    """

    cost = 2

    def __init__(self, value: Any):
        super().__init__(value)
        ignore_case = False
        if isinstance(value, dict):
            unknown = set(value) - {"pattern", "case_sensitive"}
            if unknown or "pattern" not in value:
                raise SpecError("content wants a pattern (and optionally case_sensitive)")
            ignore_case = not value.get("case_sensitive", True)
            value = value["pattern"]
        if not isinstance(value, str):
            raise SpecError(f"content wants a regular expression, got {value!r}")
        self.pattern = compile_pattern(value, ignore_case=ignore_case)

    def provides(self) -> frozenset[str]:
        return frozenset(self.pattern.groupindex)

    def match(self, file: FileInfo) -> Verdict:
        head = file.head
        if b"\0" in head:
            return Verdict(False, "binary content")
        m = self.pattern.search(head.decode("utf-8", errors="replace"))
        if m is None:
            return Verdict(False, f"content does not match /{self.pattern.pattern}/")
        fields = m.groupdict()
        return Verdict(True, f"content matches /{self.pattern.pattern}/", fields)


class DuplicateFilter(Filter):
    """`duplicate: true`: another present file has the same content (hash) and comes
    first in the order originals are picked by; `duplicate: {original: oldest}` picks
    another order (see `clerk.rules.copies`, which decides it). The original is never a
    duplicate, so a rule that trashes duplicates keeps one copy of each content.

    The file is hashed only when another file known to the run has the same size.
    """

    cost = 3

    def __init__(self, value: Any):
        super().__init__(value)
        self.want, self.by = True, DEFAULT_ORIGINAL_BY
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"original"}, key=str)
            if unknown:
                raise SpecError(
                    f"duplicate: unknown option {unknown[0]!r}{hint(unknown[0], ['original'])}"
                )
            self.by = value.get("original", DEFAULT_ORIGINAL_BY)
            if self.by not in ORIGINAL_BY:
                raise SpecError(f"duplicate: original {self.by!r} is not an order"
                                f"{hint(self.by, ORIGINAL_BY)}")  # fmt: skip
        elif isinstance(value, bool):
            self.want = value
        else:
            raise SpecError(
                f"duplicate wants true, false or {{original: {'|'.join(ORIGINAL_BY)}}}, "
                f"got {value!r}"
            )

    def provides(self) -> frozenset[str]:
        return frozenset({"original"})

    def copies(self) -> str | None:
        return self.by

    def match(self, file: FileInfo) -> Verdict:
        found = file.copies(self.by)
        by = self.by.replace("_", " ")
        if found.original is not None:
            return Verdict(self.want, f"duplicate of {found.original} (original: {by})",
                           {"original": found.original}, seen=found.original)  # fmt: skip
        if found.copied:
            return Verdict(not self.want, f"the original of its copies ({by})")
        return Verdict(not self.want, "no other file with the same content")


class TagFilter(Filter):
    """`tag: invoice` or `tag: [a, b]`: the file carries all these tags (see the tag action)."""

    cost = 1

    def __init__(self, value: Any):
        super().__init__(value)
        self.tags = set(_strings(value, "tag"))

    def match(self, file: FileInfo) -> Verdict:
        tags, wanted = sorted(file.tags), sorted(self.tags)
        missing = self.tags - file.tags
        if missing:
            return Verdict(False, f"missing tag(s) {sorted(missing)}", seen=tags, wanted=wanted)
        return Verdict(True, f"tagged {wanted}", seen=tags, wanted=wanted)


class AttrFilter(Filter):
    """`attr: {exif.camera: "Pixel*"}`: a classifier attribute; every entry must hold.

    Strings are globs (case-insensitive); `true`/`false` test presence; numbers compare
    equal, or use a comparison string like `"> 3"` for numeric attributes.
    """

    cost = 3

    def __init__(self, value: Any):
        super().__init__(value)
        if not isinstance(value, dict) or not value:
            raise SpecError("attr wants a mapping like {exif.camera: 'Pixel*'}")
        self.tests: list[tuple[str, str, Any]] = []
        for key, want in value.items():
            namespace, dot, attr = str(key).partition(".")
            if not dot or not namespace or not attr:
                raise SpecError(
                    f"attr keys are namespace.attribute (like exif.camera), got {key!r}"
                )
            self.tests.append((namespace, attr, want))
        # a string is a comparison (for numbers) and a case-insensitive glob, read once
        self._wants = {want: _attr_want(want) for _, _, want in self.tests if isinstance(want, str)}

    def namespaces(self) -> frozenset[str]:
        return frozenset(ns for ns, _, _ in self.tests)

    def attributes(self) -> frozenset[str]:
        return frozenset(f"{ns}.{attr}" for ns, attr, _ in self.tests)

    def match(self, file: FileInfo) -> Verdict:
        seen: dict[str, Any] = {}
        wanted = {f"{ns}.{attr}": want for ns, attr, want in self.tests}
        for namespace, attr, want in self.tests:
            have = seen[f"{namespace}.{attr}"] = file.attrs(namespace).get(attr)
            read = self._wants.get(want) if isinstance(want, str) else None
            if not _attr_matches(have, want, read):
                return Verdict(False, f"{namespace}.{attr} is {have!r}", seen=seen, wanted=wanted)
        return Verdict(
            True, ", ".join(f"{key} {seen[key]!r} ~ {want!r}" for key, want in wanted.items()),
            seen=seen, wanted=wanted,
        )  # fmt: skip


def _attr_want(want: str) -> tuple[Comparison | None, Pattern]:
    cmp = _NUMBER_CMP.fullmatch(want.strip())
    comparison = Comparison(cmp.group(1), float(cmp.group(2))) if cmp else None
    return comparison, glob_pattern(want, ignore_case=True)


def _attr_matches(have: Any, want: Any, read: tuple[Comparison | None, Pattern] | None) -> bool:
    if isinstance(want, bool):
        return (have is not None and have is not False) == want
    if have is None:
        return False
    if read is not None:
        comparison, glob = read
        if comparison is not None and isinstance(have, int | float):
            return comparison.test(float(have))
        return glob.fullmatch(str(have)) is not None
    return bool(have == want)


BUILTIN_FILTERS: dict[str, type[Filter]] = {
    "name": NameFilter,
    "regex": RegexFilter,
    "extension": ExtensionFilter,
    "mime": MimeFilter,
    "size": SizeFilter,
    "age": AgeFilter,
    "modified": ModifiedFilter,
    "path": PathFilter,
    "content": ContentFilter,
    "duplicate": DuplicateFilter,
    "tag": TagFilter,
    "attr": AttrFilter,
}


@hookimpl(trylast=True)
def register_filters(register: Callable[[str, type[Filter]], None]) -> None:
    for name, cls in BUILTIN_FILTERS.items():
        register(name, cls)
