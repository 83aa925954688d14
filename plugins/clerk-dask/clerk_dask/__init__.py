"""clerk-dask: run workflow tasks on an existing Dask cluster (`executor: dask`).

Installed with pip, clerk finds it through the entry point group `clerk`; nothing else
needs configuring. See the package README for the task keys.
"""

from __future__ import annotations

from collections.abc import Callable

from clerk.engine.api import Executor
from clerk.plugins.hookspecs import hookimpl
from clerk_dask.executor import DaskExecutor

__version__ = "0.1.0"


@hookimpl
def register_executors(register: Callable[[str, type[Executor]], None]) -> None:
    register("dask", DaskExecutor)


__all__ = ["DaskExecutor", "register_executors"]
