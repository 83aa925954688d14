"""Schema, one migration function per change, applied on open (never edit an applied one)."""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("clerk")


@migrations()
def m001_catalog_and_journal(db: Database) -> None:
    # The catalog: one row per file clerk has seen. `relpath` is NULL once the file has
    # left every root, so the row keeps its history without blocking a new file at the
    # same place (since m005 a file clerk removed keeps its place).
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


@migrations()
def m002_runs(db: Database) -> None:
    # Execution runs (clerk/engine). A run is one execution of a workflow; its status
    # and every task's status are rows, committed at every change, so a crash loses
    # nothing that happened and `clerk runs` can read them while the runner writes.
    db.table("runs").create(
        {
            "id": int,
            "workflow": str,
            "status": str,  # PENDING RUNNING PAUSED COMPLETED FAILED CANCELLED
            "trigger": str,  # manual | rule:<name> | schedule
            "inputs": str,  # JSON: template fields (path, name, ...) and params
            "definition": str,  # JSON: the workflow as it was when the run was made
            "created": float,
            "started": float,
            "finished": float,
            "error": str,
            "runner_pid": int,  # the process executing it (crash recovery)
            "runner_host": str,
            "requested": str,  # cancel | pause | resume, asked by another process
        },
        pk="id",
        not_null={"workflow", "status", "created"},
    )
    db.table("runs").create_index(["status"])
    db.table("runs").create_index(["workflow", "created"])
    # One row per task of a run: its current state. Attempts are run_events.
    db.table("task_runs").create(
        {
            "id": int,
            "run_id": int,
            "task": str,
            "status": str,
            "attempt": int,  # 1 for the first try
            "next_attempt_at": float,  # a retry waits until then
            "started": float,
            "finished": float,
            "exit_code": int,
            "error_code": str,
            "error": str,
            "recoverable": int,
            "pid": int,
            "pgid": int,
            "proc_start": int,  # the leader's start time, to recognise its group after a crash
            "wall": float,
            "cpu_user": float,
            "cpu_sys": float,
            "max_rss": int,  # bytes
            "outputs": str,  # JSON
            "stdout_log": str,
            "stderr_log": str,
        },
        pk="id",
        not_null={"run_id", "task", "status"},
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.execute("CREATE UNIQUE INDEX idx_task_runs_run_task ON task_runs(run_id, task)")
    db.table("task_runs").create_index(["status"])
    # The run timeline: started, completed, failed, retried, cancelled, ...
    db.table("run_events").create(
        {"id": int, "run_id": int, "task": str, "ts": float, "kind": str, "data": str},
        pk="id",
        not_null={"run_id", "ts", "kind"},
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("run_events").create_index(["run_id", "ts"])


@migrations()
def m003_schedules(db: Database) -> None:
    # Lifecycle jobs (rules with schedule:/every:). APScheduler is only the timer: the
    # config says which jobs exist, this table remembers when each last ran, so a run
    # missed while the daemon was down happens once at start.
    db.table("schedules").create(
        {
            "name": str,
            "spec": str,  # "cron 0 3 * * *" or "every 3600s", as last scheduled
            "first_seen": float,
            "last_run": float,
            "last_status": str,  # ok | failed
            "last_summary": str,  # JSON: the sweep's counts
        },
        pk="name",
    )
    # Files the daemon handed to the rules engine and has not seen through yet: a row
    # left here by a crash or a failed batch means "handle again", whatever the catalog
    # says about the file (the daemon must not trust a catalog row it saw written).
    db.table("daemon_inflight").create(
        {"root": str, "relpath": str, "trigger": str, "since": float},
        pk=("root", "relpath"),
    )


@migrations()
def m004_pending_ops_index(db: Database) -> None:
    # Only pending ops are ever looked up by state (recovery, `clerk db stats`). An index
    # of every op's state cost two entries per journaled op (pending removed, done
    # added); one of only the pending ops stays as small as a batch.
    db.execute("DROP INDEX IF EXISTS idx_ops_state")
    db.execute("CREATE INDEX idx_ops_pending ON ops(id) WHERE state = 'pending'")


@migrations()
def m005_removed_files_keep_their_place(db: Database) -> None:
    # A file clerk trashed, deleted or archived keeps the root and relpath it had, so
    # `clerk files history PATH` finds it by the name it was known by. Only present
    # files claim a place: a new file may arrive where a trashed one was. Files that
    # vanished behind clerk's back (state gone) still give their place up (NULL).
    db.execute("DROP INDEX IF EXISTS idx_files_location")
    db.execute(
        "CREATE UNIQUE INDEX idx_files_place ON files(root, relpath) WHERE state = 'present'"
    )
    db.execute(
        "CREATE INDEX idx_files_removed ON files(root, relpath)"
        " WHERE state IN ('trashed', 'deleted', 'archived')"
    )


@migrations()
def m006_task_interruptions(db: Database) -> None:
    # How often a task was cut off by its runner's death (kill -9, power loss). Such an
    # attempt has not failed: it runs again once without spending a retry, and only a
    # second interruption fails the task (clerk.engine.runner, `on_interrupt:`).
    db.table("task_runs").add_column("interruptions", int, not_null_default=0)
