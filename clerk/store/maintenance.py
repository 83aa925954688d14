"""`clerk db stats|check|backup`: looking after the store without stopping the daemon."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from clerk.private import open_private
from clerk.store import StoreError, open_store


def stats(path: Path) -> dict[str, Any]:
    db = open_store(path, readonly=True)
    data: dict[str, Any] = {"path": str(path), "size_bytes": path.stat().st_size}
    wal = Path(str(path) + "-wal")
    data["wal_bytes"] = wal.stat().st_size if wal.exists() else 0
    for table in db.table_names():
        if not table.startswith("_"):
            data[f"rows.{table}"] = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    for table, column in (("files", "state"), ("ops", "state")):
        if table in db.table_names():
            for value, count in db.execute(
                f"SELECT {column}, count(*) FROM {table} GROUP BY {column} ORDER BY {column}"
            ):
                data[f"{table}.{column}.{value}"] = count
    applied = db.execute("SELECT name FROM _sqlite_migrations ORDER BY id").fetchall()
    data["migrations"] = [name for (name,) in applied]
    return data


def integrity_problems(path: Path) -> list[str]:
    db = open_store(path, readonly=True)
    problems = [row[0] for row in db.execute("PRAGMA integrity_check") if row[0] != "ok"]
    problems += [
        f"foreign key: {table} row {rowid} -> {parent}"
        for table, rowid, parent, _ in db.execute("PRAGMA foreign_key_check")
    ]
    pending = db.execute("SELECT count(*) FROM ops WHERE state = 'pending'").fetchone()[0]
    if pending:
        problems.append(
            f"{pending} operation(s) pending: interrupted; the next scan or daemon start "
            "recovers them"
        )
    return problems


def backup(path: Path, dest: str | os.PathLike[str]) -> int:
    """SQLite's online backup API: a consistent copy while writers go on."""
    if not path.exists():
        raise StoreError(f"no store at {path}")
    target = Path(dest)
    try:  # claimed with O_EXCL (never overwritten) and owner-only: it is the whole store
        os.close(open_private(target, os.O_RDWR | os.O_EXCL))
    except FileExistsError:
        raise StoreError(f"{target} exists; clerk does not overwrite files") from None
    except OSError as exc:
        raise StoreError(f"cannot write the backup {target}: {exc.strerror}") from None
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    copy = sqlite3.connect(str(target))
    pages = 0

    def count(status: int, remaining: int, total: int) -> None:
        nonlocal pages
        pages = total

    try:
        source.backup(copy, progress=count)
    finally:
        copy.close()
        source.close()
    return pages
