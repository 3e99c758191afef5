"""In-memory keypair and nonce stores (stdlib only; one process; no mocks).

Guarantees: they pass the same conformance suites as the Redis stores
[tests/auth/test_keypair_store_conformance.py], [tests/auth/test_nonce_store_conformance.py].

Limits: state is per process, so replay protection covers one process only; entries of
``MemoryNonceStore`` are purged lazily on later calls, so memory follows the request rate times
the window [tests/auth/test_memory.py::test_nonce_store_purges_expired].
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

from .abc import AbstractKeypairStore, AbstractNonceStore
from .keys import check_access_key
from .types import Keypair

__all__ = ("MemoryKeypairStore", "MemoryNonceStore")


class MemoryKeypairStore(AbstractKeypairStore):
    """Keypairs in a dict."""

    def __init__(self, keypairs: Iterable[Keypair] = ()) -> None:
        self._keypairs = {check_access_key(kp.access_key, storing=True): kp for kp in keypairs}

    async def get(self, access_key: str) -> Keypair | None:
        """The keypair of ``access_key`` or ``None``."""
        keypair = self._keypairs.get(access_key)
        if keypair is None:  # put() refuses malformed keys, so only a miss needs the check
            check_access_key(access_key)
        return keypair

    async def put(self, keypair: Keypair) -> None:
        """Store or replace a keypair."""
        self._keypairs[check_access_key(keypair.access_key, storing=True)] = keypair

    async def delete(self, access_key: str) -> bool:
        """Remove a keypair; ``True`` if it existed."""
        return self._keypairs.pop(check_access_key(access_key), None) is not None


class MemoryNonceStore(AbstractNonceStore):
    """Seen keys with their expiry, in a dict and a heap; ``clock`` is monotonic seconds."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def _purge(self, now: float) -> None:
        heap, expiry = self._heap, self._expiry
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            if expiry.get(key) == when:
                del expiry[key]

    async def remember(self, key: str, ttl: timedelta) -> bool:
        """``True`` the first time ``key`` is seen within ``ttl``."""
        now = self._clock()
        self._purge(now)
        if key in self._expiry:
            return False
        when = now + max(ttl.total_seconds(), 0.001)
        self._expiry[key] = when
        heapq.heappush(self._heap, (when, key))
        return True
