"""Daemon logging: to stdout, with `<N>` priority prefixes when journald reads it."""

from __future__ import annotations

import logging
import os
import sys

from clerk.output import OneLineFormatter

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(OneLineFormatter):
    """journald reads `<6>` at the start of a stdout line as the syslog priority."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        # one journal entry per line: continuation lines keep the priority too
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def under_journald() -> bool:
    """True when stdout is the journal stream systemd gave us (JOURNAL_STREAM=dev:ino)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not dev or not ino:
        return False
    try:
        st = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        return False
    return f"{st.st_dev}:{st.st_ino}" == value


def setup_logging(level: str, verbose: int = 0) -> None:
    """Route every clerk log line to stdout, replacing the CLI's stderr handler."""
    numeric = logging.DEBUG if verbose >= 2 else logging.getLevelName(level.upper())
    if verbose == 1:
        numeric = min(numeric, logging.INFO)
    handler = logging.StreamHandler(sys.stdout)
    if under_journald():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # APScheduler logs every tick at INFO: only worth seeing when debugging
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
