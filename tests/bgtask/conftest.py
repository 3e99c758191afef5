"""Fixtures of the bgtask tests: a ``backend`` harness per task-store backend, and helpers.

``backend.open()`` opens a store of the shared backend (one memory store shared by every node, or
the test Redis), ``backend.advance(seconds)`` lets store time pass (the memory backend moves its
``ManualClock``, Redis really waits) and every store is closed at the end. ``backend.lease`` is
the lease TTL the suite uses: short on Redis so its real waits stay well under a second.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ai.backend.common.bgtask import AbstractTaskStore, MemoryTaskStore
from ai.backend.common.message_queue import ManualClock


class StoreBackend:
    """Opens stores of one shared backend and closes them all at the end."""

    def __init__(
        self,
        name: str,
        make: Callable[[], AbstractTaskStore],
        advance: Callable[[float], Awaitable[None]],
        lease: float,
    ) -> None:
        self.name = name
        self._make = make
        self._advance = advance
        self.lease = lease
        self._stores: list[AbstractTaskStore] = []

    async def open(self) -> AbstractTaskStore:
        """A new open store of the shared backend."""
        store = self._make()
        self._stores.append(store)
        await store.open()
        return store

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of store time pass."""
        await self._advance(seconds)

    async def aclose(self) -> None:
        """Close every store opened here."""
        for store in reversed(self._stores):
            await store.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[StoreBackend]:
    """The shared task-store backend of one kind."""
    harness: StoreBackend
    if request.param == "memory":
        clock = ManualClock()
        shared = MemoryTaskStore(clock)

        async def advance_clock(seconds: float) -> None:
            clock.advance(seconds)

        harness = StoreBackend("memory", lambda: shared, advance_clock, lease=10.0)
    else:
        # Imported here so that ``-m "not redis"`` never imports redis-py.
        valkey = importlib.import_module("ai.backend.common.clients.valkey")
        redis_store = importlib.import_module("ai.backend.common.bgtask.redis")
        target = valkey.ValkeyTarget.from_url(request.getfixturevalue("redis_url"))
        harness = StoreBackend(
            "redis", lambda: redis_store.RedisTaskStore(target), asyncio.sleep, lease=0.3
        )
    try:
        yield harness
    finally:
        await harness.aclose()


@pytest.fixture
async def store(backend: StoreBackend) -> AbstractTaskStore:
    """One open store of the backend."""
    return await backend.open()
