from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest

from ai.backend.common.contexts import bind_request_id, bind_triggered_user, bind_user
from ai.backend.common.data.user import UserData
from ai.backend.common.events import BgtaskDoneEvent, BgtaskUpdatedEvent
from ai.backend.common.events.producer import EventProducer
from ai.backend.common.exception import InvalidArgument
from ai.backend.common.message_queue import AbstractMessageQueue, AnycastMessage, QueueClosed

from ._events import Ping, Shout
from .conftest import Bus


async def _read(queue: AbstractMessageQueue, count: int) -> list[AnycastMessage]:
    out: list[AnycastMessage] = []
    messages = queue.consume()
    try:
        while len(out) < count:
            out.append(await anext(messages))
    finally:
        await messages.aclose()
    await queue.ack(*(m.msg_id for m in out))
    return out


async def test_metadata_is_captured_from_the_context(queue: AbstractMessageQueue) -> None:
    producer = EventProducer(queue, "agent-7")
    user = UserData(user_id=uuid.uuid4())
    trigger = UserData(user_id=uuid.uuid4(), is_admin=True)
    with bind_request_id("req-xyz"), bind_user(user), bind_triggered_user(trigger):
        await producer.anycast_event(Ping(seq=1))
    await producer.anycast_event(Ping(seq=2))
    first, second = await _read(queue, 2)
    assert first.fields["source"] == "agent-7"
    assert first.fields["name"] == "evtest_ping"
    assert orjson.loads(first.fields["payload"]) == {"seq": 1, "text": ""}
    meta = orjson.loads(first.fields["metadata"])
    assert list(meta) == ["request_id", "user", "triggered_user", "traceparent"]
    assert meta["request_id"] == "req-xyz"
    assert meta["user"]["user_id"] == str(user.user_id)
    assert meta["triggered_user"]["is_admin"] is True
    assert meta["traceparent"] is None
    assert orjson.loads(second.fields["metadata"])["request_id"] is None
    assert "_retry_count" not in first.fields


async def test_batch_is_one_call_in_order(queue: AbstractMessageQueue) -> None:
    producer = EventProducer(queue, "p")
    with bind_request_id("req-batch"):
        ids = await producer.anycast_events_batch([Ping(seq=i) for i in range(5)])
    assert len(ids) == 5
    messages = await _read(queue, 5)
    assert [m.msg_id for m in messages] == ids
    assert [orjson.loads(m.fields["payload"])["seq"] for m in messages] == list(range(5))
    assert all(orjson.loads(m.fields["metadata"])["request_id"] == "req-batch" for m in messages)
    assert producer.statistics().published == {"evtest_ping": 5}
    assert await producer.anycast_events_batch([]) == []


async def test_broadcast_with_cache(queue: AbstractMessageQueue) -> None:
    producer = EventProducer(queue, "manager")
    task_id = uuid.uuid4()
    event = BgtaskUpdatedEvent(task_id=task_id, current_progress=1, total_progress=3)
    await producer.broadcast_event_with_cache(event)
    cached = await queue.fetch_cached_broadcast(f"bgtask.{task_id}")
    assert cached is not None
    assert dict(cached) == producer.encode(event)
    await producer.broadcast_event_with_cache(Shout(seq=1), cache_id="custom.key")
    assert await queue.fetch_cached_broadcast("custom.key") is not None
    with pytest.raises(InvalidArgument, match="evtest_shout"):
        await producer.broadcast_event_with_cache(Shout(seq=2))
    await producer.produce_event(BgtaskDoneEvent(task_id=task_id))  # broadcast + its cache id
    done = await queue.fetch_cached_broadcast(f"bgtask.{task_id}")
    assert done is not None
    assert done["name"] == "bgtask_done"
    assert producer.statistics().published == {
        "bgtask_updated": 1,
        "evtest_shout": 1,
        "bgtask_done": 1,
    }


async def test_failed_publish_raises_and_counts(bus: Bus) -> None:
    queue = await bus.open(group="manager")
    producer = EventProducer(queue, "p")
    await queue.aclose()
    with pytest.raises(QueueClosed):
        await producer.anycast_event(Ping(seq=1))
    with pytest.raises(QueueClosed):
        await producer.anycast_events_batch([Ping(seq=1), Ping(seq=2)])
    with pytest.raises(QueueClosed):
        await producer.broadcast_event(Shout(seq=1))
    stats = producer.statistics()
    assert stats.failed == {"evtest_ping": 3, "evtest_shout": 1}
    assert stats.published == {}


async def test_broadcast_burst_waits_for_pool_connections(redis_url: str) -> None:
    """A burst of concurrent broadcasts (and cached ones) on a client bounded to 2 connections:
    the calls wait for a free connection instead of failing with "Too many connections"."""
    # Imported here so that ``-m "not redis"`` never imports redis-py.
    from ai.backend.common.clients.valkey import ValkeyClient, ValkeyTarget
    from ai.backend.common.message_queue import BroadcastMode, QueueConfig
    from ai.backend.common.message_queue.redis import RedisMessageQueue

    async with ValkeyClient(ValkeyTarget.from_url(redis_url, max_connections=2)) as client:
        config = QueueConfig(source="t", broadcast_mode=BroadcastMode.DURABLE, subscriber_id="s")
        async with RedisMessageQueue(client, config) as queue:
            producer = EventProducer(queue, "burst")
            await asyncio.gather(
                *(producer.broadcast_event(Shout(seq=i)) for i in range(150)),
                *(
                    producer.broadcast_event_with_cache(Shout(seq=i), cache_id=f"bgtask.{i}")
                    for i in range(150, 200)
                ),
            )
            stats = client.statistics()
            assert (stats.failures, stats.pool_waits > 0) == (0, True)
            assert await client.execute("XLEN", "events:broadcast") == 200
            assert await queue.fetch_cached_broadcast("bgtask.199") is not None
