"""Behaviour of the in-memory backend that needs its fake clock or its broker's internals."""

from __future__ import annotations

from contextlib import aclosing

import pytest

from ai.backend.common.message_queue import (
    BROADCAST_CACHE_TTL,
    ManualClock,
    MemoryBroker,
    MemoryMessageQueue,
    QueueClosed,
    QueueConfig,
)

from .conftest import collect


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
