"""The sd_notify protocol: READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1.

A handful of lines over a datagram socket, written here rather than taken from the PyPI
`sdnotify` package, which has been unmaintained since 2017 (no abstract-namespace
fixes, no MONOTONIC_USEC for Type=notify-reload).
"""

from __future__ import annotations

import logging
import os
import socket
import time

# How long a state change (READY, RELOADING, STOPPING, WATCHDOG) may wait for room in
# the socket's buffer. systemd reads at once; a receiver that does not read must not
# stall the daemon's work (a blocking send did, forever, once the buffer was full).
SEND_TIMEOUT = 0.5

log = logging.getLogger("clerk.daemon.notify")


class Notifier:
    """Sends state lines to $NOTIFY_SOCKET; does nothing when not under systemd."""

    def __init__(self, address: str | None = None):
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._sock: socket.socket | None = None
        if not address:
            return
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self._address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(SEND_TIMEOUT)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *lines: str, wait: bool = True) -> bool:
        """Send one datagram; `wait=False` (STATUS lines) drops it when the buffer is full."""
        if self._sock is None:
            return False
        try:
            data = "\n".join(lines).encode("utf-8")
            self._sock.sendto(data, 0 if wait else socket.MSG_DONTWAIT, self._address)
        except OSError as exc:  # systemd gone or socket full: never fatal for the daemon
            log.debug("sd_notify failed: %s", exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}", wait=False)

    def reloading(self) -> bool:
        # Type=notify-reload wants the monotonic time of the reload request
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading rules")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when not asked."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None
