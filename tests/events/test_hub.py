from __future__ import annotations

import asyncio
import uuid

import pytest

from ai.backend.common.events import (
    ALL_IDS,
    AbstractEvent,
    BgtaskDoneEvent,
    BgtaskUpdatedEvent,
    EventDomain,
)
from ai.backend.common.events.dispatcher import EventDispatcher
from ai.backend.common.events.hub import EventFetcher, EventHub, QueuePropagator
from ai.backend.common.events.producer import EventProducer
from ai.backend.common.exception import InvalidArgument
from ai.backend.common.message_queue import AbstractMessageQueue

from ._events import Ping
from .conftest import Bus, wait_for

T1 = uuid.UUID("00000000-0000-0000-0000-000000000001")
T2 = uuid.UUID("00000000-0000-0000-0000-000000000002")


def _updated(task: uuid.UUID, step: int) -> BgtaskUpdatedEvent:
    return BgtaskUpdatedEvent(task_id=task, current_progress=step, total_progress=10)


def _drain(propagator: QueuePropagator) -> list[AbstractEvent]:
    out: list[AbstractEvent] = []
    while propagator._buffer:
        out.append(propagator._buffer.popleft())
    return out


async def test_propagators_receive_matching_events() -> None:
    hub = EventHub()
    one, every, other = QueuePropagator(), QueuePropagator(), QueuePropagator()
    await hub.register(one, [(EventDomain.BGTASK, str(T1))])
    await hub.register(every, [(EventDomain.BGTASK, ALL_IDS)])
    await hub.register(other, [(EventDomain.LOG, ALL_IDS)])
    events = [_updated(T1, 1), _updated(T2, 1), BgtaskDoneEvent(task_id=T1)]
    for event in events:
        await hub.propagate_event(event)
    no_id = Ping(seq=1)  # no domain_id(): wildcard propagators only, not cached
    assert no_id.domain_id() is None
    await hub.propagate_event(no_id)
    assert _drain(one) == [events[0], events[2]]
    assert _drain(every) == events
    assert _drain(other) == [no_id]
    assert hub.statistics().cached == 2
    await hub.aclose()


async def test_late_subscriber_gets_cached_event() -> None:
    hub = EventHub()
    await hub.propagate_event(_updated(T1, 1))
    await hub.propagate_event(_updated(T1, 2))
    await hub.propagate_event(_updated(T2, 5))
    late = QueuePropagator()
    await hub.register(late, [(EventDomain.BGTASK, str(T1))])
    await hub.propagate_event(_updated(T1, 3))
    await hub.propagate_event(BgtaskDoneEvent(task_id=T1))
    await late.close()
    received = [event async for event in late]
    assert received == [_updated(T1, 2), _updated(T1, 3), BgtaskDoneEvent(task_id=T1)]
    wildcard = QueuePropagator()
    await hub.register(wildcard, [(EventDomain.BGTASK, ALL_IDS)])
    assert _drain(wildcard) == []  # a wildcard gets no cached event
    assert hub.cached_event(EventDomain.BGTASK, str(T1)) == BgtaskDoneEvent(task_id=T1)
    hub.forget(EventDomain.BGTASK, str(T1))
    assert hub.cached_event(EventDomain.BGTASK, str(T1)) is None
    await hub.aclose()


async def test_unregister_releases_everything() -> None:
    hub = EventHub()
    propagator = QueuePropagator()
    await hub.register(propagator, [(EventDomain.BGTASK, str(T1)), (EventDomain.BGTASK, ALL_IDS)])
    with pytest.raises(InvalidArgument, match="already registered"):
        await hub.register(propagator, [])
    assert hub.statistics().propagators == 1
    assert hub.statistics().aliases == 2
    reader = asyncio.create_task(_collect(propagator))
    await hub.propagate_event(_updated(T1, 1))
    await hub.unregister(propagator.id())
    assert await reader == [_updated(T1, 1)]  # the reader ended: the propagator was closed
    assert propagator.closed
    stats = hub.statistics()
    assert (stats.propagators, stats.aliases) == (0, 0)
    await hub.propagate_event(_updated(T1, 2))
    assert _drain(propagator) == []
    await hub.unregister(propagator.id())  # unknown: no-op
    await hub.aclose()


async def _collect(propagator: QueuePropagator) -> list[AbstractEvent]:
    return [event async for event in propagator]


async def test_close_by_alias_closes_its_propagators() -> None:
    hub = EventHub()
    a, b = QueuePropagator(), QueuePropagator()
    await hub.register(a, [(EventDomain.BGTASK, str(T1))])
    await hub.register(b, [(EventDomain.BGTASK, str(T2))])
    await hub.close_by_alias(EventDomain.BGTASK, str(T1))
    assert a.closed
    assert not b.closed
    assert hub.statistics().propagators == 1
    await hub.aclose()
    assert b.closed


async def test_queue_propagator_drops_oldest_when_full() -> None:
    propagator = QueuePropagator(maxsize=2)
    for step in range(4):
        await propagator.propagate_event(_updated(T1, step))
    assert propagator.dropped == 2
    await propagator.close()
    await propagator.propagate_event(_updated(T1, 9))  # ignored after close
    assert [e async for e in propagator] == [_updated(T1, 2), _updated(T1, 3)]


async def test_cache_is_bounded() -> None:
    hub = EventHub(cache_size=2)
    for task in (T1, T2, uuid.uuid4()):
        await hub.propagate_event(_updated(task, 1))
    assert hub.statistics().cached == 2
    assert hub.cached_event(EventDomain.BGTASK, str(T1)) is None
    assert hub.cached_event(EventDomain.BGTASK, str(T2)) is not None


async def test_hub_fed_by_dispatcher_and_fetcher(bus: Bus, queue: AbstractMessageQueue) -> None:
    hub = EventHub()
    producer = EventProducer(queue, "manager")
    propagator = QueuePropagator()
    await hub.register(propagator, [(EventDomain.BGTASK, str(T1))])
    async with EventDispatcher(queue) as dispatcher:
        dispatcher.subscribe(BgtaskUpdatedEvent, None, hub.on_event)
        dispatcher.subscribe(BgtaskDoneEvent, None, hub.on_event)
        await wait_for(lambda: queue.statistics().subscriptions >= 1)
        await producer.broadcast_event_with_cache(_updated(T1, 4))
        await producer.broadcast_event_with_cache(BgtaskDoneEvent(task_id=T1, message="ok"))
        await wait_for(lambda: hub.statistics().propagated == 2)
    await hub.aclose()
    assert [e async for e in propagator] == [
        _updated(T1, 4),
        BgtaskDoneEvent(task_id=T1, message="ok"),
    ]
    fetcher = EventFetcher(queue)
    assert await fetcher.fetch_cached_event(f"bgtask.{T1}") == BgtaskDoneEvent(
        task_id=T1, message="ok"
    )
    assert await fetcher.fetch_cached_event(f"bgtask.{T2}") is None
