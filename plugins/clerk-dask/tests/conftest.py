"""A real Dask cluster (scheduler + one 2-thread worker) for the whole session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clerk_dask import clients
from clerk_dask.testing import DaskCluster, dask_cluster

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    with dask_cluster(tmp_path_factory.mktemp("dask"), worker_path=[HERE]) as running:
        yield running
        clients.close_all()  # before the scheduler goes: no reconnect noise
