"""Free loopback TCP ports for the servers the test harness starts.

Guarantees: within one process a port is handed out at most once, so servers started at the
same time never race for the same port.
Limits: another process may still take a port between the probe and the server's bind; the
server starters detect "address already in use" and retry with a new port.
"""

from __future__ import annotations

import socket
import threading

LOOPBACK = "127.0.0.1"

_lock = threading.Lock()
_handed_out: set[int] = set()


def free_port() -> int:
    """Return a loopback TCP port that is free now and was never handed out in this process."""
    with _lock:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((LOOPBACK, 0))
                port: int = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port


def handed_out() -> frozenset[int]:
    """Return every port handed out so far in this process."""
    with _lock:
        return frozenset(_handed_out)
