"""Behaviour of the in-memory backend that needs its fake clock or its broker's internals."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from contextlib import aclosing

import pytest

from ai.backend.common.message_queue import (
    BROADCAST_CACHE_TTL,
    AnycastMessage,
    ManualClock,
    MemoryBroker,
    MemoryMessageQueue,
    QueueClosed,
    QueueConfig,
)

from .conftest import collect, wait_for


def event(n: int) -> dict[str, str]:
    return {"name": "agent_started", "source": "t", "payload": f'{{"n":{n}}}', "metadata": "{}"}


async def test_cached_broadcast_expires_on_the_clock() -> None:
    clock = ManualClock()
    async with MemoryMessageQueue(MemoryBroker(clock)) as queue:
        await queue.broadcast(event(1), cache_id="bgtask.1")
        clock.advance(BROADCAST_CACHE_TTL - 1)
        assert await queue.fetch_cached_broadcast("bgtask.1") == event(1)
        clock.advance(1)
        assert await queue.fetch_cached_broadcast("bgtask.1") is None


async def test_trim_keeps_pending_and_undelivered() -> None:
    broker = MemoryBroker(ManualClock())
    config = QueueConfig(anycast_trim_maxlen=10, block_seconds=0.01)
    async with (
        MemoryMessageQueue(broker, QueueConfig(group="fast", anycast_trim_maxlen=10)) as fast,
        MemoryMessageQueue(broker, QueueConfig(group="stopped")) as stopped,
        MemoryMessageQueue(broker, config) as producer,
    ):
        ids = await producer.send_batch([event(i) for i in range(100)])
        async with aclosing(fast.consume()) as messages:
            got = await collect(messages, 100)
            await fast.ack(*(m.msg_id for m in got))
        await producer.send(event(100))
        assert broker.stream_length() == 101  # "stopped" has not read any of them
        async with aclosing(stopped.consume()) as messages:
            got = await collect(messages, 101)
            assert [m.msg_id for m in got[:100]] == ids
            await stopped.ack(*(m.msg_id for m in got[:50]))
            await producer.send(event(101))
            # everything below the oldest pending entry may go, beyond the last 10
            assert broker.stream_length() == 52
            await stopped.ack(*(m.msg_id for m in got[50:]))
            await collect(messages, 1)
            await producer.send(event(102))
            # "fast" last read event 99: it still has to see 100..102
            assert broker.stream_length() == 4


async def test_abort_then_aclose_is_a_no_op() -> None:
    broker = MemoryBroker(ManualClock())
    queue = MemoryMessageQueue(broker, QueueConfig(group="g", consumer_id="c"))
    await queue.open()
    await queue.abort()
    await queue.aclose()
    with pytest.raises(QueueClosed):
        await queue.open()


async def test_liveness_follows_the_heartbeat_task_on_a_real_clock() -> None:
    """On a clock other than ManualClock a task beats every heartbeat_ttl / 3: a live slow
    consumer keeps its message past several TTLs, and loses it once its heartbeat stops."""
    broker = MemoryBroker()  # the system clock
    config = QueueConfig(group="g", heartbeat_ttl=0.3, block_seconds=0.02, reclaim_interval=0.02)
    async with (
        MemoryMessageQueue(broker, dataclasses.replace(config, consumer_id="slow")) as slow,
        MemoryMessageQueue(broker, dataclasses.replace(config, consumer_id="other")) as other,
        MemoryMessageQueue(broker) as producer,
    ):
        held = await producer.send(event(1))
        async with aclosing(slow.consume()) as messages:
            await collect(messages, 1)
            got: list[AnycastMessage] = []

            async def pump() -> None:
                async with aclosing(other.consume()) as it:
                    async for message in it:
                        got.append(message)

            pumping = asyncio.create_task(pump())
            try:
                await asyncio.sleep(0.7)  # more than two heartbeat lifetimes
                marker = await producer.send(event(2))
                await wait_for(lambda: any(m.msg_id == marker for m in got))
                assert [m.msg_id for m in got] == [marker]  # the held one was not taken
                await slow.abort()  # its heartbeat stops: it is dead heartbeat_ttl later
                await wait_for(lambda: len(got) == 2)
                assert (got[1].msg_id, got[1].delivery_count) == (held, 2)
            finally:
                pumping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pumping
