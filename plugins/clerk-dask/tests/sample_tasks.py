"""Callables the test cluster's worker imports (its PYTHONPATH is this directory)."""

from __future__ import annotations

import os
import time
from typing import Any


def measure(path: str, tasks: dict[str, Any], label: str = "") -> dict[str, Any]:
    """Outputs from a run field (`path`), an upstream task's outputs and a kwarg."""
    return {"name": os.path.basename(path), "label": label, "upstream": tasks,
            "pid": os.getpid()}  # fmt: skip


def answer() -> int:
    return 42


def fail(reason: str) -> None:
    raise ValueError(f"cannot handle {reason}")


def linger(seconds: float) -> dict[str, float]:
    """A call that runs for a while (a timeout or cancel leaves it to finish on its worker)."""
    time.sleep(seconds)
    return {"slept": seconds}
