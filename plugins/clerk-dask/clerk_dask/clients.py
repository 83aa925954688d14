"""One `distributed.Client` per scheduler address per process, made on first use.

A client costs a connection, a thread and a second of setup, so every task of every
run that goes to the same scheduler shares one. A client whose connection is closed
(the scheduler went away for good) is replaced on the next use. Clients are closed
when the process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from clerk_dask import remote

_clients: dict[str, Any] = {}
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()
_LIVE = ("running", "connecting")


def client_for(address: str, connect_timeout: float) -> Any:
    """The shared client of `address`; raises OSError (or TimeoutError) when unreachable."""
    with _guard:
        lock = _locks.setdefault(address, threading.Lock())
    with lock:  # per address: a dead scheduler does not hold up tasks bound elsewhere
        client = _clients.get(address)
        if client is not None and client.status in _LIVE:
            return client
        if client is not None:
            _close(client)
        client = _connect(address, connect_timeout)
        _clients[address] = client
        return client


def _connect(address: str, connect_timeout: float) -> Any:
    from distributed import Client

    return Client(address, timeout=connect_timeout, set_as_default=False)


class ByValue:
    """A function of `clerk_dask.remote` that travels with the task, by value.

    Dask pickles a task with plain pickle, which sends functions by reference (the
    worker would have to import clerk_dask); this wrapper unpickles on the worker as
    the function itself, rebuilt by cloudpickle (which every worker has).
    """

    def __init__(self, function: Callable[..., Any]):
        if function.__module__ != remote.__name__:
            raise ValueError(f"only functions of {remote.__name__} travel by value")
        self.function = function
        self.__name__ = function.__name__  # dask names the task after it

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        import cloudpickle

        cloudpickle.register_pickle_by_value(remote)  # only ever concerns this module
        return cloudpickle.loads, (cloudpickle.dumps(self.function),)


def _close(client: Any) -> None:
    with contextlib.suppress(Exception):  # already gone: nothing to tidy
        client.close(timeout=2)


@atexit.register
def close_all() -> None:
    """Close every client this process made (also called by tests between clusters)."""
    with _guard:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        _close(client)
