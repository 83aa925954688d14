"""Schema, one migration function per change, applied on open (never edit an applied one)."""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("clerk")


@migrations()
def m001_catalog_and_journal(db: Database) -> None:
    # The catalog: one row per file clerk has seen. `relpath` is NULL once the file has
    # left every root (trashed, deleted), so the row keeps its history without blocking
    # a new file at the same place.
    db.table("files").create(
        {
            "id": int,
            "root": str,
            "relpath": str,
            "size": int,
            "mtime_ns": int,
            "dev": int,
            "inode": int,
            "mime": str,
            "hash": str,
            "tags": str,  # JSON list
            "attrs": str,  # JSON object, per classifier namespace
            "state": str,  # present | trashed | deleted | gone
            "first_seen": float,
            "last_seen": float,
        },
        pk="id",
        not_null={"root", "state"},
        defaults={"state": "present"},
    )
    db.execute("CREATE UNIQUE INDEX idx_files_location ON files(root, relpath)")
    db.table("files").create_index(["size"])
    db.table("files").create_index(["hash"])
    db.table("files").create_index(["dev", "inode"])

    # The operation journal: the intent row is committed before the file system is
    # touched, and its state says how far the op got.
    db.table("ops").create(
        {
            "id": int,
            "batch": str,
            "kind": str,  # move copy rename symlink hardlink trash delete archive ...
            "rule": str,
            "file_id": int,
            "src": str,
            "dst": str,
            "tmp": str,  # temp name used while copying across file systems
            "extra": str,  # JSON: kind-specific data (trashinfo path, archive member...)
            "on_conflict": str,
            "src_dev": int,
            "src_inode": int,
            "size": int,
            "mtime_ns": int,
            "hash": str,
            "dst_dev": int,
            "dst_inode": int,
            "state": str,  # pending | done | failed | skipped | undone
            "error": str,
            "undoes": int,  # id of the op this one reverses
            "created": float,
            "finished": float,
        },
        pk="id",
        not_null={"kind", "state"},
    )
    # `ops.file_id` names a `files` row without a foreign key: a first-seen file gets its
    # id reserved before its ops are journaled, and its row is written once, at its
    # final place, after the batch (one write instead of an insert and an update).
    db.table("sequences").create({"name": str, "next": int}, pk="name")
    db.table("sequences").insert({"name": "files", "next": 1})
    # no index on src/dst (long text keys cost more on every journaled op than the rare
    # lookup by path saves: `clerk files history` goes by file id), none on created
    # (ids grow with time)
    for columns in (["batch"], ["state"], ["file_id"]):
        db.table("ops").create_index(columns)

    # The timeline of everything that happened, for `clerk status` and run history.
    db.table("events").create(
        {"id": int, "ts": float, "kind": str, "subject": str, "data": str},
        pk="id",
        not_null={"ts", "kind"},
    )
    db.table("events").create_index(["ts"])
