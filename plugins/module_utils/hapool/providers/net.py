"""Network helpers shared by providers: waiting for a host's web server to accept connections."""

from __future__ import annotations

import socket
import time


def wait_tcp(address: str, port: int, deadline: float, *, interval: float = 0.05) -> bool:
    """Try to connect to ``address:port`` until it accepts or ``time.monotonic()`` passes
    ``deadline``; True once a connection was accepted (it is closed at once). Tries at least
    once, even when the deadline has already passed."""
    while True:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)
