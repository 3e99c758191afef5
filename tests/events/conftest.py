"""Fixtures of the events tests: a ``bus`` harness per message-queue backend.

``bus.open(...)`` opens a queue client of the shared backend (memory broker or the test Redis),
``bus.advance(seconds)`` lets time pass (the memory backend moves its fake clock, Redis waits),
and every client is closed at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ai.backend.common.message_queue import (
    AbstractMessageQueue,
    ManualClock,
    MemoryBroker,
    MemoryMessageQueue,
    QueueConfig,
)

BUS_CONFIG = QueueConfig(
    source="test",
    block_seconds=0.05,
    heartbeat_ttl=0.6,
    reclaim_interval=0.05,
    retry_delay=0.1,
)
"""Short timings so that the Redis backend's real waits stay well under a second."""


class Bus:
    """Opens clients of one shared message-queue backend and closes them all at the end."""

    def __init__(
        self,
        name: str,
        make: Callable[[QueueConfig], AbstractMessageQueue],
        advance: Callable[[float], Awaitable[None]],
    ) -> None:
        self.name = name
        self._make = make
        self._advance = advance
        self._clients: list[AbstractMessageQueue] = []

    async def open(self, **overrides: Any) -> AbstractMessageQueue:
        """A new open client; ``overrides`` replace fields of ``BUS_CONFIG``."""
        client = self._make(dataclasses.replace(BUS_CONFIG, **overrides))
        self._clients.append(client)
        await client.open()
        return client

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of (clock) time pass."""
        await self._advance(seconds)

    async def aclose(self) -> None:
        """Close every client opened here."""
        for client in reversed(self._clients):
            await client.aclose()


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    deadline: float = 10.0,
    tick: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Poll ``condition`` until it holds (``tick`` runs between polls); fails after ``deadline``
    seconds."""
    async with asyncio.timeout(deadline):
        while True:
            result = condition()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            if tick is not None:
                await tick()
            await asyncio.sleep(0.005)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """The shared message-queue server of one backend."""
    harness: Bus
    if request.param == "memory":
        clock = ManualClock()
        broker = MemoryBroker(clock)

        async def advance_clock(seconds: float) -> None:
            clock.advance(seconds)
            await asyncio.sleep(0.01)

        harness = Bus("memory", lambda config: MemoryMessageQueue(broker, config), advance_clock)
    else:
        from ai.backend.common.clients.valkey import ValkeyTarget
        from ai.backend.common.message_queue.redis import RedisMessageQueue

        target = ValkeyTarget.from_url(request.getfixturevalue("redis_url"))
        harness = Bus("redis", lambda config: RedisMessageQueue(target, config), asyncio.sleep)
    try:
        yield harness
    finally:
        await harness.aclose()


@pytest.fixture
async def queue(bus: Bus) -> AbstractMessageQueue:
    """One open client of group ``manager``."""
    return await bus.open(group="manager", consumer_id="manager-1")
