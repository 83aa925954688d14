"""Read YAML while keeping where every key and value was written, within set limits.

Mappings and sequences come back as `YamlMap` and `YamlSeq` (a dict and a list) that
hold the line and column of every key, value and item, which is what lets
`clerk check` say `rules.d/home.yaml:12:7: ...`; scalars are plain Python values, typed
by YAML 1.2 (`yes` and `on` are strings, `0o17` is 15). PyYAML drops positions and reads
YAML 1.1, so it is not used for anything a user writes.

Events come from libyaml (ruamel.yaml's C parser, `ruamel.yaml[libyaml]`) or ruamel's
pure Python parser; the values are built here, straight from the events, so that the
limits below hold while the file is read, not after. A rule file is written by a
person, and one that breaks a limit is a mistake or an attack (billion laughs: nine
levels of nine aliases expand to 387 million nodes); either way it gets a file:line:col.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    MappingStartEvent,
    ScalarEvent,
)
from ruamel.yaml.main import YAML
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.parser import ParserError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scanner import ScannerError

try:  # libyaml, through ruamel.yaml[libyaml]
    from ruamel.yaml.cyaml import CParser
except ImportError:  # pragma: no cover - the dependency brings it
    CParser = None

from clerk.errors import Location, Problem

# The limits on one YAML file (a rule file or config.yaml). docs/rules.md lists them.
MAX_FILE_BYTES = 4 * 1024 * 1024  # 4 MiB: about 30,000 rules; checked in ~5 s, ~300 MB
MAX_DEPTH = 100  # nesting of mappings and sequences (rule files need about 10)
MAX_ALIAS_NODES = 10_000  # nodes that aliases (*name) may add, over the whole file

_CORE = "tag:yaml.org,2002:"
_STR, _SEQ, _MAP, _MERGE, _INT, _NULL, _BOOL = (
    _CORE + name for name in ("str", "seq", "map", "merge", "int", "null", "bool")
)


_MASK = 0xFFFFFFFF


def _pack(*numbers: int) -> int:
    """Lines and columns, 32 bits each, in one int: a big file has a million of them."""
    packed = 0
    for number in numbers:
        packed = packed << 32 | number
    return packed


class YamlMap(dict[Any, Any]):
    """A mapping read from YAML that knows where it, its keys and its values were written.

    Lines and columns count from 0 (ruamel's convention); `Location` adds 1.
    """

    __slots__ = ("col", "line", "marks")

    def __init__(self, line: int, col: int):
        super().__init__()
        self.line, self.col = line, col
        self.marks: dict[Any, int] = {}

    def key_mark(self, key: Any) -> tuple[int, int]:
        packed = self.marks[key]
        return packed >> 96, packed >> 64 & _MASK

    def value_mark(self, key: Any) -> tuple[int, int]:
        packed = self.marks[key]
        return packed >> 32 & _MASK, packed & _MASK


class YamlSeq(list[Any]):
    """A sequence read from YAML that knows where it and each item were written."""

    __slots__ = ("col", "line", "marks")

    def __init__(self, line: int, col: int):
        super().__init__()
        self.line, self.col = line, col
        self.marks: list[int] = []

    def item_mark(self, index: int) -> tuple[int, int]:
        packed = self.marks[index]
        return packed >> 32, packed & _MASK


class LimitError(MarkedYAMLError):
    """The file breaks one of the limits above, or is not data clerk reads; at `problem_mark`."""


def _error(message: str, mark: Any) -> LimitError:
    return LimitError(None, None, message, mark)


class _Frame:
    """A mapping or sequence being built, with what its end needs."""

    __slots__ = ("anchor", "container", "key", "key_mark", "merges", "start_mark", "weight_start")

    def __init__(self, container: Any, anchor: Any, weight_start: int, start_mark: Any):
        self.container = container
        self.anchor = anchor
        self.weight_start = weight_start
        self.start_mark = start_mark
        self.key: Any = _NO_KEY
        self.key_mark: Any = None
        self.merges: list[tuple[Any, Any]] | None = None  # (merged mapping, mark)


_NO_KEY = object()
_SCALAR_TAGS = frozenset(
    _CORE + name for name in ("str", "int", "float", "bool", "null", "timestamp", "binary")
)


class _Builder:
    """Builds documents straight from parser events, within the limits.

    Mappings and sequences become YamlMap/YamlSeq with the line and column of every key,
    value and item; scalars are typed by the YAML 1.2 core schema (or
    1.1 under a `%YAML 1.1` directive) and built by ruamel's SafeConstructor. An aliased
    value is the same object at each use; its nodes count against MAX_ALIAS_NODES.
    Nesting is an explicit stack, never Python recursion.
    """

    def __init__(self, events: Iterator[Any]):
        self.events = events
        self.weight = 0  # nodes so far, an alias counted as the nodes it stands for
        self.aliased = 0  # the part of weight that aliases added, over the whole file
        # anchor -> (value, nodes it stands for); None while its value is being built
        self.anchors: dict[Any, tuple[Any, int] | None] = {}
        self.set_version(None)

    def set_version(self, version: Any) -> None:
        self.core = version in (None, (1, 2))  # YAML 1.2's core schema
        resolver = VersionedResolver(version=version)
        self.implicit = resolver.versioned_resolver
        self.scalars = SafeConstructor(loader=SimpleNamespace(_resolver=resolver))

    def documents(self) -> list[Any]:
        docs = []
        for event in self.events:
            if isinstance(event, DocumentStartEvent):
                self.set_version(event.version)
                self.anchors = {}
                docs.append(self.document())
        return docs

    def document(self) -> Any:
        stack: list[_Frame] = []
        for event in self.events:
            if isinstance(event, ScalarEvent):
                self.weight += 1
                value = self.scalar(event)
                if event.anchor is not None:
                    self.anchors[event.anchor] = (value, 1)
                mark = event.start_mark
            elif isinstance(event, CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise _error(
                        f"nested more than {MAX_DEPTH} levels deep (mappings and sequences);"
                        " a rule file needs far fewer",
                        event.start_mark,
                    )
                stack.append(self.collection(event))
                continue
            elif isinstance(event, CollectionEndEvent):
                frame = stack.pop()
                if frame.merges:
                    _merge(frame.container, frame.merges)
                value = frame.container
                if frame.anchor is not None:
                    self.anchors[frame.anchor] = (value, self.weight - frame.weight_start)
                mark = frame.start_mark
            elif isinstance(event, AliasEvent):
                value = self.alias(event)
                mark = event.start_mark
            else:
                continue
            if not stack:
                return "<<" if value is _MERGE_KEY else value
            _add(stack[-1], value, mark)
        raise _error("the document ends too early", None)

    def collection(self, event: Any) -> _Frame:
        tag = event.tag
        mapping = isinstance(event, MappingStartEvent)
        if tag not in (None, "!", _MAP if mapping else _SEQ):
            raise _error(f"the tag {_shown_tag(tag)} is not supported here", event.start_mark)
        start = event.start_mark
        container = (YamlMap if mapping else YamlSeq)(start.line, start.column)
        frame = _Frame(container, event.anchor, self.weight, start)
        self.weight += 1
        if event.anchor is not None:
            self.anchors[event.anchor] = None  # open: an alias to it now is a loop
        return frame

    def alias(self, event: Any) -> Any:
        anchor = event.anchor
        if anchor not in self.anchors:
            raise _error(f"found undefined alias *{anchor}", event.start_mark)
        found = self.anchors[anchor]
        if found is None:
            raise _error(
                f"alias *{anchor} is inside its own anchor &{anchor} (a loop)", event.start_mark
            )
        value, weight = found
        self.weight += weight
        self.aliased += weight
        if self.aliased > MAX_ALIAS_NODES:
            raise _error(
                f"aliases expand to more than {MAX_ALIAS_NODES:,} nodes in this file"
                f" (*{anchor} adds {weight:,}); write the repeated part out, or split it",
                event.start_mark,
            )
        return value

    def scalar(self, event: Any) -> Any:
        value = event.value
        tag = event.tag
        if tag is None or tag == "!":
            if not event.implicit[0]:
                return value  # quoted: a string
            tag = _STR
            for candidate, regexp in self.implicit.get(value[:1], ()):
                if regexp.match(value):
                    tag = str(candidate)
                    break
            if tag == _STR:
                return value
            if tag == _MERGE:
                return _MERGE_KEY
        if tag not in _SCALAR_TAGS:
            raise _error(f"the tag {_shown_tag(tag)} is not supported here", event.start_mark)
        try:
            if self.core and event.implicit[0]:  # the common plain scalars, without a node
                if tag == _INT and value.isdecimal() and value.isascii():
                    return int(value)
                if tag == _NULL:
                    return None
                if tag == _BOOL:
                    return value in ("true", "True", "TRUE")
            node = ScalarNode(tag, value, event.start_mark, event.end_mark, style=event.style)
            return self.scalars.construct_non_recursive_object(node)
        except MarkedYAMLError:
            raise
        except (ValueError, KeyError, TypeError, IndexError, OverflowError, AttributeError):
            shown = (
                repr(value) if len(value) <= 40 else f"{value[:37]!r}... ({len(value)} characters)"
            )
            raise _error(f"cannot read {shown} as {_shown_tag(tag)}", event.start_mark) from None


def _shown_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


class _MergeKey:
    """The `<<` of a merge: `<<: *defaults` adds the keys the mapping does not have."""

    def __repr__(self) -> str:
        return "'<<'"


_MERGE_KEY = _MergeKey()


def _add(frame: _Frame, value: Any, mark: Any) -> None:
    """Put `value`, written at `mark`, into the collection being built."""
    container = frame.container
    if value is _MERGE_KEY and (type(container) is YamlSeq or frame.key is not _NO_KEY):
        value = "<<"  # only a key merges
    if type(container) is YamlSeq:
        container.marks.append(_pack(mark.line, mark.column))
        container.append(value)
        return
    if frame.key is _NO_KEY:
        try:
            duplicate = value in container
        except TypeError:
            raise _error("a key cannot be a mapping or a sequence", mark) from None
        if duplicate or (value is _MERGE_KEY and frame.merges is not None):
            raise _error(f"duplicate key {value!r}", mark)
        frame.key, frame.key_mark = value, mark
        return
    key, key_mark = frame.key, frame.key_mark
    frame.key = _NO_KEY
    if key is _MERGE_KEY:
        frame.merges = _merge_sources(value, mark)
        return
    container[key] = value
    container.marks[key] = _pack(key_mark.line, key_mark.column, mark.line, mark.column)


def _merge_sources(value: Any, mark: Any) -> list[tuple[Any, Any]]:
    sources = value if isinstance(value, list) else [value]
    if not sources or not all(isinstance(source, YamlMap) for source in sources):
        raise _error("<< wants a mapping or a list of mappings to merge", mark)
    return [(source, mark) for source in sources]


def _merge(mapping: YamlMap, merges: list[tuple[Any, Any]]) -> None:
    """Merged keys first (an earlier source wins), then the mapping's own keys."""
    own = list(mapping.items())
    merged: dict[Any, Any] = {}
    for source, _ in merges:
        for key, value in source.items():
            if key not in merged and key not in mapping:
                merged[key] = value
                mapping.marks[key] = source.marks[key]
    mapping.clear()
    mapping.update(merged)
    mapping.update(own)


def _libyaml_events(text: str) -> Iterator[Any]:
    return iter(CParser(text).get_event, None)  # None after the stream's end


def _python_events(text: str) -> Iterator[Any]:
    """Events from ruamel's pure Python parser (YAML 1.2: the reference grammar)."""
    return YAML(typ="safe", pure=True).parse(text)


def _parse(text: str) -> list[Any]:
    """The documents of `text`: by libyaml, in a tenth of the time, when it can.

    libyaml reads YAML 1.1's grammar, which refuses a `:` inside an unquoted value in
    `[...]` or `{...}` (like `{url: http://x}`), where 1.2 allows it; then ruamel's own
    parser, slower, reads the file, so that what loaded before still loads. (libyaml also
    allows a few things ruamel refuses, like a tab after `key:`.)
    """
    if CParser is None:
        return _Builder(_python_events(text)).documents()
    try:
        return _Builder(_libyaml_events(text)).documents()
    except ScannerError as exc:
        if "unexpected ':'" not in str(exc.problem):
            raise
        return _Builder(_python_events(text)).documents()


def read_text(path: Path) -> tuple[str | None, list[Problem]]:
    """The text of a YAML file, or None and the problem that stopped reading it."""
    where = Location(str(path))
    try:
        # O_NONBLOCK: a FIFO named rules.yaml must not hang `clerk check`
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None, [Problem(where, "cannot read: not a regular file")]
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, [Problem(where, f"cannot read: {exc.strerror or exc}")]
    if len(data) > MAX_FILE_BYTES:
        return None, [
            Problem(
                where,
                f"the file is larger than {MAX_FILE_BYTES // 2**20} MiB, the most clerk"
                " reads from one YAML file: split it into several files in rules.d/",
            )
        ]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        col = len(data[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        at = Location(str(path), data.count(b"\n", 0, exc.start) + 1, col)
        return None, [Problem(at, f"not UTF-8 text: byte 0x{data[exc.start]:02x} here")]


def load_documents(path: Path, text: str | None = None) -> tuple[list[Any], list[Problem]]:
    """Parse every YAML document in `path`; return (documents, problems).

    A syntax error or a broken limit becomes one `Problem` at the line and column it
    was found at, never an exception.
    """
    if text is None:
        text, problems = read_text(path)
        if text is None:
            return [], problems
    try:
        docs = [doc for doc in _parse(text) if doc is not None]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        message = " ".join(str(x) for x in (exc.context, exc.problem) if x) or str(exc)
        if isinstance(exc, ScannerError | ParserError):
            message = f"YAML syntax error: {message}"
        elif not isinstance(exc, LimitError):
            message = f"YAML error: {message}"
        return [], [Problem(Location(str(path), line, col), message)]
    except ReaderError as exc:
        where = _offset_location(str(path), text, exc.position)
        return [], [
            Problem(where, f"character U+{exc.character:04X} is not allowed in YAML ({exc.reason})")
        ]
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        return [], [Problem(Location(str(path)), f"YAML error: {exc}")]
    return docs, []


def _offset_location(file: str, text: str, offset: int) -> Location:
    line_start = text.rfind("\n", 0, offset) + 1
    return Location(file, text.count("\n", 0, offset) + 1, offset - line_start + 1)


def key_location(file: str, node: Any, key: Any) -> Location:
    """Where `key` of mapping `node` (or item `key` of a sequence) was written."""
    return _position(file, node, key, "key")


def value_location(file: str, node: Any, key: Any) -> Location:
    """Where the value under `key` of mapping `node` was written.

    An empty value (`key:` with nothing after it) has no place of its own: its key's.
    """
    try:
        empty = node[key] is None
    except (KeyError, IndexError, TypeError):
        empty = True
    return _position(file, node, key, "key" if empty else "value")


def _position(file: str, node: Any, key: Any, part: str) -> Location:
    try:
        if isinstance(node, YamlMap):
            line, col = node.key_mark(key) if part == "key" else node.value_mark(key)
            return Location(file, line + 1, col + 1)
        if isinstance(node, YamlSeq):
            line, col = node.item_mark(key)
            return Location(file, line + 1, col + 1)
    except (KeyError, IndexError, TypeError, AttributeError):
        pass
    if part == "value":
        return _position(file, node, key, "key")
    return node_location(file, node)


def node_location(file: str, node: Any) -> Location:
    """Where a mapping or sequence starts."""
    if isinstance(node, YamlMap | YamlSeq):
        return Location(file, node.line + 1, node.col + 1)
    return Location(file)


def offset_location(where: Location, line: str | None, offset: int) -> Location:
    """Where character `offset` of the one-line scalar written at `where` is.

    Follows the quoting: `''` in a single-quoted scalar is one character, an escape in
    a double-quoted one (`\\`, `\x41`) is one. A scalar that does not fit on its line
    (folded, a block scalar) has no such place: `where` itself.
    """
    start = where.col - 1
    if line is None or not where.line or not 0 <= start < len(line):
        return where
    quote = line[start]
    if quote not in "'\"":
        return where._replace(col=where.col + offset) if start + offset < len(line) else where
    i, seen = start + 1, 0
    while i < len(line):
        if seen == offset:
            return where._replace(col=i + 1)
        c = line[i]
        if c == quote and not (quote == "'" and line.startswith("''", i)):
            return where  # the scalar ended first: it goes on on the next line
        if quote == "'" and c == "'":
            i += 2
        elif quote == '"' and c == "\\":
            i += {"x": 4, "u": 6, "U": 10}.get(line[i + 1 : i + 2], 2)
        else:
            i += 1
        seen += 1
    return where


def brief(value: Any, width: int = 60) -> str:
    """`repr(plain(value))` for a message, cut to `width` characters.

    Only what is shown is rendered: a value can be a 4 MiB list.
    """
    pieces, size = [], 0
    for piece in _repr_pieces(value, width):
        pieces.append(piece)
        size += len(piece)
        if size > width:
            break
    text = "".join(pieces)
    return text if len(text) <= width else text[: width - 3] + "..."


def _repr_pieces(value: Any, width: int) -> Iterator[str]:
    if isinstance(value, dict):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield ", " if index else ""
            yield from _repr_pieces(key if isinstance(key, str) else str(key), width)
            yield ": "
            yield from _repr_pieces(item, width)
        yield "}"
    elif isinstance(value, list):
        yield "["
        for index, item in enumerate(value):
            yield ", " if index else ""
            yield from _repr_pieces(item, width)
        yield "]"
    elif isinstance(value, str):
        yield repr(value[: width + 1])
    else:
        yield repr(plain(value))


def plain(node: Any) -> Any:
    """Turn ruamel's commented containers and scalars into plain Python values."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, str) else k: plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node
