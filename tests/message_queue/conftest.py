"""Fixtures of the message-queue tests: one ``broker`` harness per backend, and a ``queue``.

``broker`` plays the shared server: every client it opens (``await broker.open(...)``) talks to
the same state, as several processes talk to one Redis. ``broker.advance(seconds)`` lets time
pass (the memory backend moves its fake clock, the Redis backend really waits), and
``broker.crash(queue)`` kills a client without cleanup. Suite tests use only these and the
interface, never the backend's name.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ai.backend.common.message_queue import (
    AbstractMessageQueue,
    AnycastMessage,
    ManualClock,
    MemoryBroker,
    MemoryMessageQueue,
    QueueConfig,
)
from tests._vectors import load_vectors as load_vectors  # re-exported for the suite modules

TEST_CONFIG = QueueConfig(
    source="test",
    block_seconds=0.05,
    heartbeat_ttl=1.0,  # refreshed every 1/3 s: tolerates a stalled loop
    reclaim_interval=0.05,
    retry_delay=0.2,
)
"""Short timings so that the Redis backend's real waits stay well under a second."""


class QueueHarness:
    """Opens clients of one shared backend and closes them all at the end."""

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
        """A new opened client; ``overrides`` replace fields of ``TEST_CONFIG``."""
        config = dataclasses.replace(TEST_CONFIG, **overrides)
        client = self._make(config)
        self._clients.append(client)
        await client.open()
        return client

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of (clock) time pass."""
        await self._advance(seconds)

    async def crash(self, client: AbstractMessageQueue) -> None:
        """Stop a client as a killed process would (no cleanup)."""
        await client.abort()

    async def aclose(self) -> None:
        """Close every client opened here."""
        for client in reversed(self._clients):
            await client.aclose()


async def collect(
    iterator: AsyncIterator[AnycastMessage],
    count: int,
    *,
    within: float = 10.0,
) -> list[AnycastMessage]:
    """The next ``count`` messages of an open ``consume()`` iterator (fails after ``within`` s)."""
    out: list[AnycastMessage] = []
    async with asyncio.timeout(within):
        while len(out) < count:
            out.append(await anext(iterator))
    return out


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float = 10.0
) -> None:
    """Poll ``condition`` until it holds; fails the test after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            result = condition()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[QueueHarness]:
    """The shared server of one backend, as a harness that opens clients of it."""
    harness: QueueHarness
    if request.param == "memory":
        clock = ManualClock()
        memory = MemoryBroker(clock)

        async def advance_clock(seconds: float) -> None:
            clock.advance(seconds)
            await asyncio.sleep(0.01)  # let woken readers run

        harness = QueueHarness(
            "memory", lambda config: MemoryMessageQueue(memory, config), advance_clock
        )
    else:
        # Imported here so that ``-m "not redis"`` never imports redis-py.
        from ai.backend.common.clients.valkey import ValkeyTarget
        from ai.backend.common.message_queue.redis import RedisMessageQueue

        url: str = request.getfixturevalue("redis_url")
        target = ValkeyTarget.from_url(url)
        harness = QueueHarness(
            "redis", lambda config: RedisMessageQueue(target, config), asyncio.sleep
        )
    try:
        yield harness
    finally:
        await harness.aclose()


@pytest.fixture
async def queue(broker: QueueHarness) -> AbstractMessageQueue:
    """One open client of group ``manager`` (closed by ``broker``)."""
    return await broker.open(group="manager", consumer_id="manager-1")
