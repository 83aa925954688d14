"""`python -m clerk.engine.worker [--config FILE] [--profile NAME]`: execute every
queued run of the store, then exit (what `clerk run` without `--wait` and the rules'
`run` action start, detached; see clerk.engine.service.ensure_worker)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clerk.app import App


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clerk-worker")
    parser.add_argument("--config")
    parser.add_argument("--profile")
    args = parser.parse_args(argv)
    from clerk.app import App
    from clerk.output import OneLineFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])

    return work_queue(App(args.config, args.profile))


def work_queue(app: App) -> int:
    """Execute queued runs while holding the worker lock; 0 when all completed."""
    from clerk.engine.runs import COMPLETED, RunStore
    from clerk.engine.service import make_runner, try_lock, worker_lock_path

    lock_path = worker_lock_path(app)
    fd = try_lock(lock_path)
    if fd is None:
        return 0  # another worker has the queue
    store = RunStore(app.store)
    orphans = store.release_orphans()  # runs whose runner died: recovered when adopted
    if orphans:
        logging.info("recovering run(s) %s, whose runner stopped", orphans)
    runner = make_runner(app)
    while True:
        runner.execute([], adopt=store.queued)
        # Let go of the lock, then look once more: a run queued after our last look
        # finds the lock free and starts a worker, one queued before is seen here.
        os.close(fd)
        if not store.queued():
            break
        fd = try_lock(lock_path)
        if fd is None:
            break
    failed = {run: status for run, status in runner.results.items() if status != COMPLETED}
    logging.info("executed %d run(s), %d did not complete", len(runner.results), len(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
