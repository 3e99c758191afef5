"""Durable broadcasts through the EventDispatcher: in order, exactly once, across restarts.

A durable subscriber's position is stored when it asks the queue for the next broadcast, so the
dispatcher handles durable broadcasts one at a time and asks for the next only once every
subscriber handler of the current one has finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ai.backend.common.events.dispatcher import DispatchFailure, EventDispatcher
from ai.backend.common.events.producer import EventProducer
from ai.backend.common.message_queue import AbstractMessageQueue, BroadcastMode

from ._events import Murmur, Shout
from .conftest import Bus, wait_for

DURABLE: dict[str, Any] = {
    "consumer_id": "sse-1",
    "broadcast_mode": BroadcastMode.DURABLE,
    "subscriber_id": "sse-1",
}

Handler = Callable[[None, str, Shout], Awaitable[None]]


def recording(received: list[int]) -> Handler:
    """A handler that records each seq; every 5th broadcast is a little slower, so a later one
    would overtake it if broadcasts were handled side by side."""

    async def handler(ctx: None, source: str, event: Shout) -> None:
        if event.seq % 5 == 1:
            await asyncio.sleep(0.005)
        received.append(event.seq)

    return handler


async def start_life(
    bus: Bus, handler: Handler, **options: Any
) -> tuple[AbstractMessageQueue, EventDispatcher]:
    """One run of the subscriber process: its queue client and a started dispatcher."""
    queue = await bus.open(**DURABLE)
    dispatcher = EventDispatcher(queue, max_concurrency=4, **options)
    dispatcher.subscribe(Shout, None, handler, name="recorder")
    await dispatcher.start()
    await wait_for(lambda: queue.statistics().subscriptions >= 1)
    return queue, dispatcher


async def finish_in_new_life(
    bus: Bus, producer: EventProducer, received: list[int], first_live: int
) -> None:
    """Restart under the same subscriber id; one more broadcast marks the end of the backlog."""
    queue, dispatcher = await start_life(bus, recording(received))
    try:
        await producer.broadcast_event(Shout(seq=first_live))
        await wait_for(lambda: first_live in received)
    finally:
        await dispatcher.aclose()
        await queue.aclose()


async def test_durable_broadcasts_survive_close_exactly_once_in_order(bus: Bus) -> None:
    producer = EventProducer(await bus.open(), "agent-1")
    received: list[int] = []
    record = recording(received)
    entered = asyncio.Event()
    gate = asyncio.Event()

    async def handler(ctx: None, source: str, event: Shout) -> None:
        if event.seq == 12:
            entered.set()
            await gate.wait()
        await record(ctx, source, event)

    queue, dispatcher = await start_life(bus, handler)
    for i in range(30):
        await producer.broadcast_event(Shout(seq=i))
    async with asyncio.timeout(10):
        await entered.wait()
    # Closed mid-stream while broadcast 12 is being handled: it finishes, nothing after it
    # is taken, and the position stays right after it.
    closing = asyncio.create_task(dispatcher.aclose())
    await wait_for(lambda: not dispatcher.statistics().running)
    gate.set()
    await closing
    await queue.aclose()
    assert received == list(range(13))

    for i in range(30, 40):  # sent while the subscriber is away
        await producer.broadcast_event(Shout(seq=i))
    await finish_in_new_life(bus, producer, received, 40)
    assert received == list(range(41))


async def test_durable_broadcasts_survive_abort_exactly_once_in_order(bus: Bus) -> None:
    producer = EventProducer(await bus.open(), "agent-1")
    received: list[int] = []
    queue, dispatcher = await start_life(bus, recording(received))
    for i in range(20):
        await producer.broadcast_event(Shout(seq=i))
    await producer.broadcast_event(Murmur())  # no handler: taken once 0..19 are all handled
    await wait_for(lambda: dispatcher.statistics().broadcasts_received == 21)
    assert received == list(range(20))
    await queue.abort()  # the process dies; the stream goes on without it
    await dispatcher.aclose()

    for i in range(20, 35):
        await producer.broadcast_event(Shout(seq=i))
    await finish_in_new_life(bus, producer, received, 35)
    assert received == list(range(36))


async def test_durable_broadcast_in_progress_at_kill_may_come_again(bus: Bus) -> None:
    """Killed while a handler runs: nothing is lost and the order holds; that one broadcast
    may be handled again after the restart (its position was not stored)."""
    producer = EventProducer(await bus.open(), "agent-1")
    received: list[int] = []
    record = recording(received)
    entered = asyncio.Event()
    gate = asyncio.Event()

    async def handler(ctx: None, source: str, event: Shout) -> None:
        if event.seq == 7:
            entered.set()
            await gate.wait()
        await record(ctx, source, event)

    queue, dispatcher = await start_life(bus, handler)
    for i in range(12):
        await producer.broadcast_event(Shout(seq=i))
    async with asyncio.timeout(10):
        await entered.wait()
    await queue.abort()
    gate.set()
    await dispatcher.aclose()
    assert received == list(range(8))  # nothing after the one in progress was taken

    await finish_in_new_life(bus, producer, received, 12)
    assert received in (list(range(13)), [*range(8), *range(7, 13)])


async def test_failing_durable_broadcast_handler_is_not_retried(bus: Bus) -> None:
    producer = EventProducer(await bus.open(), "agent-1")
    received: list[int] = []
    failures: list[DispatchFailure] = []
    record = recording(received)

    async def handler(ctx: None, source: str, event: Shout) -> None:
        if event.seq == 1:
            raise RuntimeError("boom")
        await record(ctx, source, event)

    queue, dispatcher = await start_life(bus, handler, on_failure=failures.append)
    for i in range(4):
        await producer.broadcast_event(Shout(seq=i))
    await wait_for(lambda: received == [0, 2, 3])
    await dispatcher.aclose()
    await queue.aclose()
    assert [(f.stage, str(f.exception)) for f in failures] == [("handler", "boom")]
    # broadcasts have no nack: the failed one does not come back after a restart either
    await finish_in_new_life(bus, producer, received, 4)
    assert received == [0, 2, 3, 4]


async def test_durable_broadcast_cut_at_close_counts_as_seen(bus: Bus) -> None:
    producer = EventProducer(await bus.open(), "agent-1")
    received: list[int] = []
    record = recording(received)
    entered = asyncio.Event()
    never = asyncio.Event()

    async def handler(ctx: None, source: str, event: Shout) -> None:
        if event.seq == 1:
            entered.set()
            await never.wait()  # outlives the close timeout: cancelled
        await record(ctx, source, event)

    queue, dispatcher = await start_life(bus, handler, close_timeout=0.05)
    for i in range(3):
        await producer.broadcast_event(Shout(seq=i))
    async with asyncio.timeout(10):
        await entered.wait()
    await dispatcher.aclose()
    await queue.aclose()
    assert received == [0]
    await finish_in_new_life(bus, producer, received, 3)
    assert received == [0, 2, 3]
