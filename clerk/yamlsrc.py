"""Read YAML while keeping where every key and value was written.

ruamel.yaml's round-trip loader records line and column on every mapping and sequence
(`.lc`), which is what lets `clerk check` say `rules.d/home.yaml:12:7: ...`. PyYAML
drops positions, so it is not used for anything a user writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from clerk.errors import Location, Problem


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def read_text(path: Path) -> tuple[str | None, list[Problem]]:
    """The text of a YAML file, or None and the problem that stopped reading it."""
    try:
        return path.read_text(encoding="utf-8"), []
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(Location(str(path)), f"cannot read: {exc}")]


def load_documents(path: Path, text: str | None = None) -> tuple[list[Any], list[Problem]]:
    """Parse every YAML document in `path`; return (documents, problems).

    A syntax error becomes one `Problem` at the line ruamel reports, never an exception.
    """
    if text is None:
        text, problems = read_text(path)
        if text is None:
            return [], problems
    try:
        docs = [d for d in _yaml().load_all(text) if d is not None]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        message = " ".join(str(x) for x in (exc.context, exc.problem) if x) or str(exc)
        return [], [Problem(Location(str(path), line, col), f"YAML syntax error: {message}")]
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        return [], [Problem(Location(str(path)), f"YAML error: {exc}")]
    return docs, []


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
        if isinstance(node, CommentedMap):
            line, col = node.lc.key(key) if part == "key" else node.lc.value(key)
            return Location(file, line + 1, col + 1)
        if isinstance(node, CommentedSeq):
            line, col = node.lc.item(key)
            return Location(file, line + 1, col + 1)
    except (KeyError, IndexError, TypeError, AttributeError):
        pass
    if part == "value":
        return _position(file, node, key, "key")
    return node_location(file, node)


def node_location(file: str, node: Any) -> Location:
    """Where a mapping or sequence starts."""
    lc = getattr(node, "lc", None)
    if lc is not None and lc.line is not None:
        return Location(file, lc.line + 1, (lc.col or 0) + 1)
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
