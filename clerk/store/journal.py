"""The operation journal (`ops` table): writes used by fileops, and the queries behind
`clerk undo`, `clerk files history` and the op listings.

Paths go in through `to_db` and come out through `from_db`; `extra` is a JSON object.
Rows come back as dicts with decoded paths and the `extra` object parsed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlite_utils import Database

from clerk.store import MAX_VARIABLES, execute_rows, from_db, to_db, write_txn

INTENT_COLUMNS: tuple[str, ...] = (
    "batch", "kind", "rule", "file_id", "src", "dst", "tmp", "extra", "on_conflict",
    "src_dev", "src_inode", "size", "mtime_ns", "hash", "state", "error", "undoes",
    "created", "finished",
)  # fmt: skip
# Most intents (a plain move of a file by a rule) leave the other columns NULL; binding
# fewer parameters makes their insert markedly cheaper.
PLAIN_COLUMNS: tuple[str, ...] = (
    "batch", "kind", "rule", "file_id", "src", "dst", "on_conflict", "src_dev",
    "src_inode", "size", "mtime_ns", "state", "created",
)  # fmt: skip


_INSERT_HEAD = f"INSERT INTO ops (id, {', '.join(INTENT_COLUMNS)})"
_INSERT_PLAIN_HEAD = f"INSERT INTO ops (id, {', '.join(PLAIN_COLUMNS)})"
_FINISH_SQL = (
    "UPDATE ops SET state = ?, error = ?, dst_dev = ?, dst_inode = ?, "
    "hash = coalesce(?, hash), finished = ? WHERE id = ?"
)
# A redo (the reverse of a reverse) is bookkeeping: the original op is "done" again and
# is what a later undo acts on, so redo rows themselves are never offered for undo.
_UNDOABLE = (
    "o.state = 'done' AND NOT (o.kind = 'delete' AND o.undoes IS NULL) "
    "AND NOT EXISTS (SELECT 1 FROM ops p WHERE p.id = o.undoes AND p.undoes IS NOT NULL)"
)


def insert_ops(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> int:
    """Insert rows with consecutive ids; returns the first id.

    A row holds values for INTENT_COLUMNS, or for PLAIN_COLUMNS (told apart by length).
    """
    (last,) = conn.execute("SELECT coalesce(max(id), 0) FROM ops").fetchone()
    first = int(last) + 1
    plain_width = len(PLAIN_COLUMNS)
    numbered = [(first + i, *row) for i, row in enumerate(rows)]
    plain = [row for row in numbered if len(row) == plain_width + 1]
    if plain:
        execute_rows(conn, _INSERT_PLAIN_HEAD, plain)
    if len(plain) != len(numbered):
        execute_rows(conn, _INSERT_HEAD, [row for row in numbered if len(row) != plain_width + 1])
    return first


def finish_ops(conn: sqlite3.Connection, outcomes: Sequence[Sequence[Any]]) -> None:
    """Outcomes: (state, error, dst_dev, dst_inode, hash, finished, id)."""
    conn.executemany(_FINISH_SQL, outcomes)


def finish_renamed(conn: sqlite3.Connection, ranges: Sequence[tuple[int, int]], now: float) -> None:
    """Mark ranges of ids (inclusive) done, the file now at dst with the source's inode.

    The common case of a batch (plain same-file-system moves) in one statement per
    run of consecutive ids instead of one per op.
    """
    conn.executemany(
        "UPDATE ops SET state = 'done', dst_dev = src_dev, dst_inode = src_inode, "
        "finished = ? WHERE id BETWEEN ? AND ? AND state = 'pending'",
        ((now, low, high) for low, high in ranges),
    )


def retarget_op(db: Database, op_id: int, dst: str, extra: dict[str, Any] | None) -> None:
    """Record a changed destination before acting on it (a conflict appeared)."""
    with write_txn(db) as conn:
        conn.execute(
            "UPDATE ops SET dst = ?, extra = ? WHERE id = ?",
            (to_db(dst), encode_extra(extra), op_id),
        )


def settle_reversals(conn: sqlite3.Connection, op_ids: Sequence[int]) -> None:
    """For each finished undo/redo op, update the op it reverses.

    An undo marks the original 'undone'. A redo (undo of an undo) marks the undo
    'undone' and puts the original back to 'done', carrying the redo's destination and
    identity so the next undo checks the file that is there now.
    """
    for op_id in op_ids:
        row = conn.execute("SELECT undoes FROM ops WHERE id = ?", (op_id,)).fetchone()
        if row is None or row[0] is None:
            continue
        (grand,) = conn.execute("SELECT undoes FROM ops WHERE id = ?", (row[0],)).fetchone()
        conn.execute("UPDATE ops SET state = 'undone' WHERE id = ?", (row[0],))
        if grand is not None:
            conn.execute(
                "UPDATE ops SET state = 'done', dst = r.dst, extra = r.extra, "
                "src_dev = r.src_dev, src_inode = r.src_inode, size = r.size, "
                "mtime_ns = r.mtime_ns, dst_dev = r.dst_dev, dst_inode = r.dst_inode, "
                "hash = coalesce(r.hash, ops.hash) FROM (SELECT * FROM ops WHERE id = ?) AS r "
                "WHERE ops.id = ?",
                (op_id, grand),
            )


def encode_extra(extra: dict[str, Any] | None) -> str | None:
    # ensure_ascii keeps surrogate-escaped (non-UTF-8) paths as \\udcXX escapes
    return json.dumps(extra, ensure_ascii=True, sort_keys=True) if extra else None


def decode_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("src", "dst", "tmp"):
        if key in out and out[key] is not None:
            out[key] = from_db(out[key])
    out["extra"] = json.loads(out["extra"]) if out.get("extra") else {}
    return out


def get_op(db: Database, op_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM ops WHERE id = ?", [op_id]))
    return decode_row(rows[0]) if rows else None


def pending_ops(db: Database) -> list[dict[str, Any]]:
    rows = db.query("SELECT * FROM ops WHERE state = 'pending' ORDER BY id")
    return [decode_row(row) for row in rows]


def select_ops(
    db: Database,
    *,
    op_id: int | None = None,
    last: int | None = None,
    batch: str | None = None,
    since: float | None = None,
) -> list[int]:
    """Ids of undoable ops (state 'done'), newest first, narrowed by every filter given.

    `last` keeps the newest N of what the other filters select. Permanent deletes are
    never undoable, so they are not listed.
    """
    where: list[str] = [_UNDOABLE]
    params: list[Any] = []
    if op_id is not None:
        where.append("o.id = ?")
        params.append(op_id)
    if batch is not None:
        where.append("o.batch = ?")
        params.append(batch)
    if since is not None:
        where.append("o.created >= ?")
        params.append(since)
    sql = f"SELECT o.id FROM ops o WHERE {' AND '.join(where)} ORDER BY o.id DESC"
    if last is not None:
        sql += " LIMIT ?"
        params.append(max(0, last))
    return [row[0] for row in db.execute(sql, params).fetchall()]


def list_ops(
    db: Database, *, limit: int = 50, state: str | None = None, batch: str | None = None
) -> list[dict[str, Any]]:
    """The newest ops first, optionally only one state or one batch."""
    where: list[str] = ["1"]
    params: list[Any] = []
    if state is not None:
        where.append("state = ?")
        params.append(state)
    if batch is not None:
        where.append("batch = ?")
        params.append(batch)
    sql = f"SELECT * FROM ops WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
    return [decode_row(r) for r in db.query(sql, [*params, limit])]


def history(
    db: Database, *, path: str | None = None, file_id: int | None = None
) -> list[dict[str, Any]]:
    """Everything that happened to a file, oldest first.

    By `file_id`: the ops journaled for that catalog row. By `path`: the ops that
    touched the path, followed back through earlier names (an op that put the file
    at `path` leads to the ops on its source, and so on).
    """
    if file_id is not None:
        rows = db.query("SELECT * FROM ops WHERE file_id = ? ORDER BY id", [file_id])
        found = {r["id"]: decode_row(r) for r in rows}
    else:
        found = {}
    if path is not None:
        found.update(_path_history(db, path))
    return [found[k] for k in sorted(found)]


def _path_history(db: Database, path: str) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    todo, seen = [path], set[str]()
    while todo and len(seen) < 1000:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        value = to_db(current)
        for raw in db.query("SELECT * FROM ops WHERE src = ? OR dst = ?", [value, value]):
            row = decode_row(raw)
            found[row["id"]] = row
            # how the file got here: follow the source of ops that put it at `current`
            if row["dst"] == current and row["kind"] not in ("copy", "symlink", "hardlink"):
                todo.append(row["src"])
    return found


#: the kinds that leave the file where it was and make something elsewhere; a rule made
#: only of these is applied once to a version of a file (`done_in_place`)
IN_PLACE_KINDS: tuple[str, ...] = ("copy", "symlink", "hardlink", "archive")


def done_in_place(
    db: Database, file_ids: Sequence[int], rules: Sequence[str]
) -> dict[tuple[int, str], tuple[int, int, int]]:
    """(file id, rule) -> (op id, size, mtime_ns) of the newest op of `IN_PLACE_KINDS`
    that `rule` did to the file and that is still done (not undone): the source's
    version when it was done, for the engine to tell whether that version is the one
    it meets again. One query for a batch of files."""
    if not file_ids or not rules:
        return {}
    found: dict[tuple[int, str], tuple[int, int, int]] = {}
    kinds = ", ".join(f"'{k}'" for k in IN_PLACE_KINDS)
    rule_marks = ", ".join("?" * len(rules))
    step = max(1, MAX_VARIABLES - len(rules))
    for start in range(0, len(file_ids), step):
        chunk = file_ids[start : start + step]
        sql = (
            "SELECT file_id, rule, max(id), size, mtime_ns FROM ops "
            f"WHERE state = 'done' AND kind IN ({kinds}) AND rule IN ({rule_marks}) "
            f"AND file_id IN ({', '.join('?' * len(chunk))}) GROUP BY file_id, rule"
        )  # max(id): SQLite takes the other bare columns from that row
        for file_id, rule, op_id, size, mtime_ns in db.execute(sql, [*rules, *chunk]):
            found[(file_id, rule)] = (op_id, size, mtime_ns)
    return found
