"""The conformance suite of AbstractMessageQueue: every backend passes all of it unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing

import pytest

from ai.backend.common.message_queue import (
    AbstractMessageQueue,
    AnycastMessage,
    BroadcastMessage,
    BroadcastMode,
    InvalidMessage,
    QueueClosed,
    QueueConfigError,
    UnknownMessage,
)
from ai.backend.common.message_queue.types import QueueStatistics

from .conftest import TEST_CONFIG, QueueHarness, collect, load_vectors, wait_for


def event(n: int, name: str = "agent_started") -> dict[str, str]:
    """An anycast entry in the upstream field order."""
    return {
        "name": name,
        "source": "test",
        "payload": f'{{"n":{n}}}',
        "metadata": '{"request_id":null}',
    }


@contextlib.asynccontextmanager
async def consuming(
    queue: AbstractMessageQueue, sink: list[AnycastMessage], *, ack: bool = True
) -> AsyncIterator[None]:
    """Run a consumer of ``queue`` in a task that appends to ``sink`` (and acks)."""

    async def run() -> None:
        async with aclosing(queue.consume()) as messages:
            async for message in messages:
                sink.append(message)
                if ack:
                    await queue.ack(message.msg_id)

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def subscribed(
    queue: AbstractMessageQueue, sink: list[BroadcastMessage]
) -> AsyncIterator[asyncio.Task[None]]:
    """Run a subscriber of ``queue`` in a task once it is registered with the server."""
    before = queue.statistics().subscriptions

    async def run() -> None:
        async with aclosing(queue.subscribe()) as messages:
            async for message in messages:
                sink.append(message)

    task = asyncio.create_task(run())
    try:
        await wait_for(lambda: queue.statistics().subscriptions > before)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- anycast ---------------------------------------------------------------------------


async def test_every_group_sees_every_message(broker: QueueHarness) -> None:
    manager = await broker.open(group="manager", consumer_id="m1")
    agent = await broker.open(group="agent", consumer_id="a1")
    producer = await broker.open()
    ids = await producer.send_batch([event(i) for i in range(5)])
    async with aclosing(manager.consume()) as m_it, aclosing(agent.consume()) as a_it:
        got_manager = await collect(m_it, 5)
        got_agent = await collect(a_it, 5)
    assert [m.msg_id for m in got_manager] == ids
    assert [m.msg_id for m in got_agent] == ids
    assert [m.fields for m in got_agent] == [event(i) for i in range(5)]
    await manager.ack(*ids)
    await agent.ack(*ids)
    assert manager.statistics().acked == 5


async def test_one_consumer_per_group(broker: QueueHarness) -> None:
    first = await broker.open(group="manager", consumer_id="m1")
    second = await broker.open(group="manager", consumer_id="m2")
    producer = await broker.open()
    got_first: list[AnycastMessage] = []
    got_second: list[AnycastMessage] = []
    async with consuming(first, got_first), consuming(second, got_second):
        ids = []
        for start in range(0, 40, 8):
            ids += await producer.send_batch([event(i) for i in range(start, start + 8)])
        await wait_for(lambda: len(got_first) + len(got_second) >= 40)
        await broker.advance(0.1)
    seen = [m.msg_id for m in got_first + got_second]
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen)) == 40


async def test_stream_order(queue: AbstractMessageQueue, broker: QueueHarness) -> None:
    producer = await broker.open()
    ids = [await producer.send(event(0))]
    ids += await producer.send_batch([event(i) for i in range(1, 30)])
    ids += [await producer.send(event(30))]
    async with aclosing(queue.consume()) as messages:
        got = await collect(messages, 31)
    assert [m.msg_id for m in got] == ids
    assert [m.fields["payload"] for m in got] == [f'{{"n":{i}}}' for i in range(31)]
    assert all(m.delivery_count == 1 for m in got)
    await queue.ack(*ids)


async def test_nack_redelivers_same_id(queue: AbstractMessageQueue, broker: QueueHarness) -> None:
    producer = await broker.open()
    msg_id = await producer.send(event(1))
    async with aclosing(queue.consume()) as messages:
        (first,) = await collect(messages, 1)
        assert (first.msg_id, first.delivery_count) == (msg_id, 1)
        for attempt in (2, 3):
            await queue.nack(msg_id, f"failure {attempt - 1}")
            assert queue.statistics().retry_waiting == 1
            assert queue.statistics().in_flight == 0
            await broker.advance(TEST_CONFIG.retry_delay)
            (again,) = await collect(messages, 1)
            assert (again.msg_id, again.delivery_count) == (msg_id, attempt)
            assert again.fields == first.fields
        await queue.ack(msg_id)
    stats = queue.statistics()
    assert (stats.in_flight, stats.retry_waiting, stats.acked) == (0, 0, 1)


async def test_dead_letter_after_max_deliveries(broker: QueueHarness) -> None:
    queue = await broker.open(group="manager", consumer_id="m1", max_deliveries=3)
    producer = await broker.open()
    doomed = await producer.send(event(1))
    async with aclosing(queue.consume()) as messages:
        for attempt in (1, 2, 3):
            (message,) = await collect(messages, 1)
            assert (message.msg_id, message.delivery_count) == (doomed, attempt)
            await queue.nack(doomed, f"boom {attempt}")
            await broker.advance(TEST_CONFIG.retry_delay)
        survivor = await producer.send(event(2))
        (message,) = await collect(messages, 1)
        assert message.msg_id == survivor  # the doomed one is not delivered a 4th time
        await queue.ack(survivor)
    (letter,) = await queue.list_dead_letters()
    assert letter.original_id == doomed
    assert letter.group == "manager"
    assert letter.fields == event(1)
    assert letter.error == "boom 3"
    assert letter.attempts == 3
    assert letter.history == ("boom 1", "boom 2")
    stats = queue.statistics()
    assert (stats.dead_lettered, stats.in_flight, stats.retry_waiting) == (1, 0, 0)


async def test_dead_letter_at_once(queue: AbstractMessageQueue, broker: QueueHarness) -> None:
    producer = await broker.open()
    msg_id = await producer.send(event(7))
    async with aclosing(queue.consume()) as messages:
        await collect(messages, 1)
        await queue.dead_letter(msg_id, "undecodable payload")
        assert queue.statistics().in_flight == 0
    (letter,) = await queue.list_dead_letters()
    assert (letter.original_id, letter.error, letter.attempts) == (msg_id, "undecodable payload", 1)
    assert letter.history == ()


async def test_list_and_purge_dead_letters(
    queue: AbstractMessageQueue, broker: QueueHarness
) -> None:
    producer = await broker.open()
    ids = await producer.send_batch([event(i) for i in range(3)])
    async with aclosing(queue.consume()) as messages:
        await collect(messages, 3)
        for msg_id in ids:
            await queue.dead_letter(msg_id, f"bad {msg_id}")
    letters = await queue.list_dead_letters()
    assert [letter.original_id for letter in letters] == ids
    assert [letter.original_id for letter in await queue.list_dead_letters(limit=2)] == ids[:2]
    after = await queue.list_dead_letters(after=letters[1].dlq_id)
    assert [letter.original_id for letter in after] == ids[2:]
    assert await queue.purge_dead_letters([letters[0].dlq_id]) == 1
    assert [letter.original_id for letter in await queue.list_dead_letters()] == ids[1:]
    assert await queue.purge_dead_letters() == 2
    assert await queue.list_dead_letters() == []


async def test_replay_reaches_only_that_group(broker: QueueHarness) -> None:
    manager = await broker.open(group="manager", consumer_id="m1")
    agent = await broker.open(group="agent", consumer_id="a1")
    producer = await broker.open()
    msg_id = await producer.send(event(1))
    async with aclosing(manager.consume()) as m_it, aclosing(agent.consume()) as a_it:
        await collect(m_it, 1)
        await manager.dead_letter(msg_id, "handler bug")
        await collect(a_it, 1)
        await agent.ack(msg_id)

        new_ids = await manager.replay_dead_letters()
        assert len(new_ids) == 1
        assert new_ids[0] != msg_id
        assert await manager.list_dead_letters() == []
        marker = await producer.send(event(2))

        got = await collect(m_it, 2)
        assert {m.msg_id for m in got} == {new_ids[0], marker}
        replayed = next(m for m in got if m.msg_id == new_ids[0])
        assert replayed.fields == event(1)
        assert replayed.delivery_count == 1
        await manager.ack(*(m.msg_id for m in got))
        (next_for_agent,) = await collect(a_it, 1)
        assert next_for_agent.msg_id == marker  # the agent group never sees the replay
        await agent.ack(marker)


async def test_replay_selected_dead_letters(
    queue: AbstractMessageQueue, broker: QueueHarness
) -> None:
    producer = await broker.open()
    ids = await producer.send_batch([event(i) for i in range(2)])
    async with aclosing(queue.consume()) as messages:
        await collect(messages, 2)
        for msg_id in ids:
            await queue.dead_letter(msg_id, "bad")
        letters = await queue.list_dead_letters()
        (new_id,) = await queue.replay_dead_letters([letters[1].dlq_id])
        (replayed,) = await collect(messages, 1)
        assert (replayed.msg_id, replayed.fields) == (new_id, event(1))
        await queue.ack(new_id)
    assert [letter.original_id for letter in await queue.list_dead_letters()] == ids[:1]


async def test_dead_consumer_is_reclaimed(broker: QueueHarness) -> None:
    doomed = await broker.open(group="manager", consumer_id="m1")
    survivor = await broker.open(group="manager", consumer_id="m2")
    producer = await broker.open()
    ids = await producer.send_batch([event(i) for i in range(3)])
    async with aclosing(doomed.consume()) as messages:
        await collect(messages, 3)
    await broker.crash(doomed)
    got: list[AnycastMessage] = []
    async with consuming(survivor, got):
        await broker.advance(TEST_CONFIG.heartbeat_ttl / 4)
        assert got == []  # its heartbeat has not expired yet
        await broker.advance(TEST_CONFIG.heartbeat_ttl)
        await wait_for(lambda: len(got) >= 3)
    assert sorted(m.msg_id for m in got) == ids
    assert all(m.delivery_count == 2 for m in got)
    assert survivor.statistics().reclaimed == 3


async def test_restarted_consumer_gets_its_own_pending_back(broker: QueueHarness) -> None:
    first_life = await broker.open(group="manager", consumer_id="m1")
    producer = await broker.open()
    ids = await producer.send_batch([event(i) for i in range(3)])
    async with aclosing(first_life.consume()) as messages:
        await collect(messages, 3)
        await first_life.ack(ids[0])
    await broker.crash(first_life)
    second_life = await broker.open(group="manager", consumer_id="m1")  # same name
    async with aclosing(second_life.consume()) as messages:
        got = await collect(messages, 2)
        assert sorted(m.msg_id for m in got) == ids[1:]
        assert all(m.delivery_count == 2 for m in got)
        await second_life.ack(*ids[1:])
    assert second_life.statistics().reclaimed == 0  # its own, not taken from another


async def test_closed_consumer_is_reclaimed_at_once(broker: QueueHarness) -> None:
    leaving = await broker.open(group="manager", consumer_id="m1")
    staying = await broker.open(group="manager", consumer_id="m2")
    producer = await broker.open()
    ids = await producer.send_batch([event(i) for i in range(2)])
    async with aclosing(leaving.consume()) as messages:
        await collect(messages, 2)
    await leaving.aclose()
    got: list[AnycastMessage] = []
    async with consuming(staying, got):
        await wait_for(lambda: len(got) >= 2)
    assert sorted(m.msg_id for m in got) == ids


async def test_live_slow_consumer_is_not_stolen(broker: QueueHarness) -> None:
    slow = await broker.open(group="manager", consumer_id="m1")
    other = await broker.open(group="manager", consumer_id="m2")
    producer = await broker.open()
    await producer.send(event(1))
    async with aclosing(slow.consume()) as messages:
        (message,) = await collect(messages, 1)
        got: list[AnycastMessage] = []
        async with consuming(other, got):
            for _ in range(2):  # two heartbeat lifetimes pass while the handler runs
                await broker.advance(TEST_CONFIG.heartbeat_ttl)
            marker = await producer.send(event(2))
            await wait_for(lambda: any(m.msg_id == marker for m in got))
            assert [m.msg_id for m in got] == [marker]
            assert other.statistics().reclaimed == 0
        await slow.ack(message.msg_id)


async def test_handled_survives_redelivery(broker: QueueHarness) -> None:
    first = await broker.open(group="manager", consumer_id="m1")
    second = await broker.open(group="manager", consumer_id="m2")
    producer = await broker.open()
    msg_id = await producer.send(event(1))
    async with aclosing(first.consume()) as messages:
        await collect(messages, 1)
        assert await first.handled(msg_id) == frozenset()
        await first.mark_handled(msg_id, "h1")
        assert await first.handled(msg_id) == {"h1"}
        await first.nack(msg_id, "h2 failed")
        await broker.advance(TEST_CONFIG.retry_delay)
        (again,) = await collect(messages, 1)
        assert again.delivery_count == 2
        assert await first.handled(msg_id) == {"h1"}
        await first.mark_handled(msg_id, "h3")
    await broker.crash(first)
    got: list[AnycastMessage] = []
    async with consuming(second, got, ack=False):
        await broker.advance(TEST_CONFIG.heartbeat_ttl + 0.1)
        await wait_for(lambda: len(got) >= 1)
    assert got[0].msg_id == msg_id
    assert await second.handled(msg_id) == {"h1", "h3"}
    await second.ack(msg_id)
    assert await second.handled(msg_id) == frozenset()


async def test_backpressure_bounds_in_flight(broker: QueueHarness) -> None:
    queue = await broker.open(group="manager", consumer_id="m1", max_in_flight=4, batch_size=3)
    producer = await broker.open()
    ids = await producer.send_batch([event(i) for i in range(20)])
    got: list[AnycastMessage] = []
    observed: list[QueueStatistics] = []

    async def run() -> None:
        async with aclosing(queue.consume()) as messages:
            async for message in messages:
                got.append(message)
                observed.append(queue.statistics())

    task = asyncio.create_task(run())
    try:
        await wait_for(lambda: len(got) == 4)
        await broker.advance(0.2)  # reading has had time to go on, and must not have
        assert len(got) == 4
        assert queue.statistics().in_flight == 4
        acked = 0
        while acked < 20:
            await queue.ack(got[acked].msg_id)
            acked += 1
            target = min(20, acked + 4)
            await wait_for(lambda: len(got) >= target)  # noqa: B023
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [m.msg_id for m in got] == ids
    assert max(stats.in_flight for stats in observed) == 4
    assert all(stats.max_in_flight == 4 for stats in observed)


async def test_redeliveries_respect_backpressure(broker: QueueHarness) -> None:
    queue = await broker.open(group="manager", consumer_id="m1", max_in_flight=3, batch_size=3)
    producer = await broker.open()
    ids = await producer.send_batch([event(i) for i in range(4)])
    async with aclosing(queue.consume()) as messages:
        first = await collect(messages, 3)
        for message in first:
            await queue.nack(message.msg_id, "later")
        (fourth,) = await collect(messages, 1)  # read while the three wait for their retry
        assert fourth.msg_id == ids[3]
        await broker.advance(TEST_CONFIG.retry_delay)
        again = await collect(messages, 2)  # three are due, but only two fit
        assert {m.msg_id for m in again} <= set(ids[:3])
        assert queue.statistics().in_flight == 3
        await queue.ack(fourth.msg_id, *(m.msg_id for m in again))
        (last,) = await collect(messages, 1)
        assert {last.msg_id, *(m.msg_id for m in again)} == set(ids[:3])
        await queue.ack(last.msg_id)
    assert queue.statistics().in_flight == 0


# -- broadcast -------------------------------------------------------------------------


async def test_volatile_broadcast_reaches_every_subscriber(broker: QueueHarness) -> None:
    producer = await broker.open()
    first = await broker.open()
    second = await broker.open()
    got_first: list[BroadcastMessage] = []
    got_second: list[BroadcastMessage] = []
    async with subscribed(first, got_first), subscribed(second, got_second):
        for i in range(5):
            await producer.broadcast(event(i, "bgtask_updated"))
        await wait_for(lambda: len(got_first) == 5 and len(got_second) == 5)
    expected = [event(i, "bgtask_updated") for i in range(5)]
    assert [m.fields for m in got_first] == expected
    assert [m.fields for m in got_second] == expected
    assert all(m.msg_id is None for m in got_first)


async def test_volatile_broadcast_misses_while_away(broker: QueueHarness) -> None:
    producer = await broker.open()
    subscriber = await broker.open()
    got: list[BroadcastMessage] = []
    async with subscribed(subscriber, got):
        await producer.broadcast(event(1))
        await wait_for(lambda: len(got) == 1)
    await producer.broadcast(event(2))  # nobody listens
    async with subscribed(subscriber, got):
        await producer.broadcast(event(3))
        await wait_for(lambda: len(got) == 2)
    assert [m.fields for m in got] == [event(1), event(3)]


async def test_durable_broadcast_resumes(broker: QueueHarness) -> None:
    producer = await broker.open()
    durable = {"broadcast_mode": BroadcastMode.DURABLE, "subscriber_id": "sse-1"}
    first_life = await broker.open(**durable)
    got: list[BroadcastMessage] = []
    async with subscribed(first_life, got) as task:
        for i in range(3):
            await producer.broadcast(event(i))
        await wait_for(lambda: len(got) == 3)
        await first_life.aclose()
        await wait_for(task.done)  # closing the client ends the iterator by itself
    for i in range(3, 7):  # sent while the subscriber is away
        await producer.broadcast(event(i))
    second_life = await broker.open(**durable)
    async with subscribed(second_life, got):
        await producer.broadcast(event(7))
        await wait_for(lambda: len(got) >= 8)
        await broker.advance(0.1)
    assert [m.fields for m in got] == [event(i) for i in range(8)]
    ids = [m.msg_id for m in got]
    assert all(msg_id is not None for msg_id in ids)
    assert len(set(ids)) == 8


async def test_durable_subscribers_are_independent(broker: QueueHarness) -> None:
    producer = await broker.open()
    one = await broker.open(broadcast_mode=BroadcastMode.DURABLE, subscriber_id="one")
    two = await broker.open(broadcast_mode=BroadcastMode.DURABLE, subscriber_id="two")
    got_one: list[BroadcastMessage] = []
    got_two: list[BroadcastMessage] = []
    async with subscribed(one, got_one), subscribed(two, got_two):
        for i in range(4):
            await producer.broadcast(event(i))
        await wait_for(lambda: len(got_one) == 4 and len(got_two) == 4)
    assert [m.fields for m in got_one] == [m.fields for m in got_two]


async def test_cached_broadcast(broker: QueueHarness) -> None:
    producer = await broker.open()
    reader = await broker.open()
    assert await reader.fetch_cached_broadcast("bgtask.missing") is None
    await producer.broadcast(event(1, "bgtask_updated"), cache_id="bgtask.1")
    assert await reader.fetch_cached_broadcast("bgtask.1") == event(1, "bgtask_updated")
    await producer.broadcast(event(2, "bgtask_done"), cache_id="bgtask.1")
    assert await reader.fetch_cached_broadcast("bgtask.1") == event(2, "bgtask_done")


# -- wire format -----------------------------------------------------------------------


def _broadcast_fields(envelope: Mapping[str, object]) -> dict[str, str]:
    import json

    decoded = json.loads(str(envelope["broadcast_json"]))
    return {str(k): str(v) for k, v in decoded.items()}


async def test_upstream_envelopes_round_trip(
    queue: AbstractMessageQueue, broker: QueueHarness
) -> None:
    envelopes = load_vectors()["event_envelopes"]
    producer = await broker.open()
    sent: list[dict[str, str]] = []
    for envelope in envelopes:
        for key in ("anycast_stream_fields", "anycast_stream_fields_retry2"):
            sent.append(dict(envelope[key]))
    await producer.send_batch(sent)
    async with aclosing(queue.consume()) as messages:
        got = await collect(messages, len(sent))
    for message, fields in zip(got, sent, strict=True):
        assert list(message.fields.items()) == list(fields.items())
    await queue.ack(*(m.msg_id for m in got))

    subscriber = await broker.open()
    received: list[BroadcastMessage] = []
    async with subscribed(subscriber, received):
        for n, envelope in enumerate(envelopes):
            await producer.broadcast(_broadcast_fields(envelope), cache_id=f"bgtask.{n}")
        await wait_for(lambda: len(received) == len(envelopes))
    for n, (broadcast, envelope) in enumerate(zip(received, envelopes, strict=True)):
        expected = list(_broadcast_fields(envelope).items())
        assert list(broadcast.fields.items()) == expected
        cached = await subscriber.fetch_cached_broadcast(f"bgtask.{n}")
        assert cached is not None
        assert list(cached.items()) == expected


# -- lifecycle and errors --------------------------------------------------------------


async def test_close_leaves_nothing_behind(broker: QueueHarness) -> None:
    queue = await broker.open(group="manager", consumer_id="m1")
    producer = await broker.open()
    await producer.send(event(1))
    got: list[AnycastMessage] = []
    received: list[BroadcastMessage] = []

    async def consume() -> None:
        async with aclosing(queue.consume()) as messages:
            async for message in messages:
                got.append(message)
                await queue.ack(message.msg_id)

    async def subscribe() -> None:
        async with aclosing(queue.subscribe()) as messages:
            async for message in messages:
                received.append(message)

    consumer = asyncio.create_task(consume())
    subscriber = asyncio.create_task(subscribe())
    await wait_for(lambda: len(got) == 1 and queue.statistics().subscriptions == 1)
    await queue.aclose()
    # both iterators end by themselves: no cancel needed, no task left behind
    async with asyncio.timeout(10):
        await consumer
        await subscriber
    assert queue.statistics().subscriptions == 0
    assert queue.statistics().in_flight == 0
    await queue.aclose()  # idempotent
    with pytest.raises(QueueClosed):
        await queue.send(event(2))
    with pytest.raises(QueueClosed):
        queue.consume()


async def test_errors_are_queue_errors(queue: AbstractMessageQueue, broker: QueueHarness) -> None:
    no_group = await broker.open()
    with pytest.raises(QueueConfigError):
        no_group.consume()
    with pytest.raises(UnknownMessage):
        await queue.nack("1-0", "never delivered")
    with pytest.raises(UnknownMessage):
        await queue.dead_letter("1-0", "never delivered")
    await queue.ack("1-0")  # acking an unknown id is a no-op
    with pytest.raises(InvalidMessage):
        await queue.send({})
    with pytest.raises(InvalidMessage):
        await queue.broadcast({"name": 1})  # type: ignore[dict-item]
    durable_without_id = await broker.open(broadcast_mode=BroadcastMode.DURABLE)
    with pytest.raises(QueueConfigError):
        durable_without_id.subscribe()
    for bad in ("garbage", "1-x", "-5-0"):
        with pytest.raises(InvalidMessage):
            await queue.list_dead_letters(after=bad)
        with pytest.raises(InvalidMessage):
            await queue.replay_dead_letters([bad])
        with pytest.raises(InvalidMessage):
            await queue.purge_dead_letters([bad])
    not_open = await broker.open()
    await not_open.aclose()
    with pytest.raises(QueueClosed):
        await not_open.broadcast(event(1))


async def test_closing_an_unstarted_iterator_frees_the_client(broker: QueueHarness) -> None:
    queue = await broker.open(
        group="manager",
        consumer_id="m1",
        broadcast_mode=BroadcastMode.DURABLE,
        subscriber_id="s1",
    )
    producer = await broker.open()
    await queue.consume().aclose()  # closed before its first step: it holds nothing
    await queue.subscribe().aclose()
    msg_id = await producer.send(event(1))
    async with aclosing(queue.consume()) as messages:
        (message,) = await collect(messages, 1)
        assert message.msg_id == msg_id
        await queue.ack(msg_id)
    got: list[BroadcastMessage] = []
    async with subscribed(queue, got):
        await producer.broadcast(event(2))
        await wait_for(lambda: len(got) == 1)
    assert got[0].fields == event(2)


async def test_ack_rejects_malformed_ids_before_settling_any(
    queue: AbstractMessageQueue, broker: QueueHarness
) -> None:
    producer = await broker.open()
    msg_id = await producer.send(event(1))
    async with aclosing(queue.consume()) as messages:
        await collect(messages, 1)
        await queue.mark_handled(msg_id, "h1")
        for bad in ("garbage", "1-x", "replay:zzz", " 1-0", "1-0-0", "18446744073709551616-0"):
            with pytest.raises(InvalidMessage, match="ack"):
                await queue.ack(bad)
            with pytest.raises(InvalidMessage, match="ack"):
                await queue.ack(msg_id, bad)
        assert queue.statistics().in_flight == 1  # the good id was not settled either
        assert queue.statistics().acked == 0
        assert await queue.handled(msg_id) == {"h1"}  # and its record is intact
        await queue.ack(msg_id)
    assert queue.statistics().acked == 1


async def test_close_under_flow_loses_nothing(broker: QueueHarness) -> None:
    """Consumers of one group are closed at random points of a steady flow (in the middle of
    a batch, or while waiting for the next entry): every message sent is acked by one of them
    or by the consumer that comes last; none is lost, none is handed out by a closed client."""
    rng = random.Random(20240603)
    producer = await broker.open()
    last = await broker.open(group="manager", consumer_id="last")  # the group exists first
    sent: list[str] = []
    acked: set[str] = set()
    late: list[str] = []  # handed out by a client after its aclose() returned
    flowing = asyncio.Event()
    flowing.set()
    stop = asyncio.Event()

    async def produce() -> None:
        n = 0
        while not stop.is_set():
            await flowing.wait()
            sent.append(await producer.send(event(n)))
            n += 1
            await asyncio.sleep(0.002)

    async def consume(queue: AbstractMessageQueue, closed: asyncio.Event) -> None:
        async with aclosing(queue.consume()) as messages:
            async for message in messages:
                if closed.is_set():
                    late.append(message.msg_id)
                with contextlib.suppress(QueueClosed):
                    await queue.ack(message.msg_id)
                    acked.add(message.msg_id)

    producing = asyncio.create_task(produce())
    try:
        for n in range(8):
            queue = await broker.open(group="manager", consumer_id=f"m{n}")
            closed = asyncio.Event()
            consumer = asyncio.create_task(consume(queue, closed))
            target = len(acked) + rng.randint(1, 12)
            await wait_for(lambda: len(acked) >= target)  # noqa: B023
            if rng.random() < 0.5:  # close while it waits for the next entry
                flowing.clear()
                await broker.advance(0.02)
            await queue.aclose()
            closed.set()
            flowing.set()
            async with asyncio.timeout(10):
                await consumer  # the iterator ends by itself
        stop.set()
        await producing
    finally:
        stop.set()
        flowing.set()
        producing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producing
    got: list[AnycastMessage] = []
    async with consuming(last, got):
        for _ in range(60):  # closed consumers' leftovers are taken at once
            if set(sent) <= acked | {m.msg_id for m in got}:
                break
            await broker.advance(TEST_CONFIG.heartbeat_ttl / 4)
        await wait_for(lambda: set(sent) <= acked | {m.msg_id for m in got})
    assert late == []
    assert len(sent) > 8


async def test_volatile_subscription_starts_on_first_step(broker: QueueHarness) -> None:
    producer = await broker.open()
    subscriber = await broker.open()
    await subscriber.subscribe().aclose()  # never run: nothing registered, nothing left
    assert subscriber.statistics().subscriptions == 0
    messages = subscriber.subscribe()
    await producer.broadcast(event(1))  # before the first step: not received
    assert subscriber.statistics().subscriptions == 0
    first = asyncio.create_task(anext(messages))
    try:
        await wait_for(lambda: subscriber.statistics().subscriptions == 1)
        await producer.broadcast(event(2))
        async with asyncio.timeout(10):
            received = await first
        assert received.fields == event(2)
    finally:
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await messages.aclose()
    assert subscriber.statistics().subscriptions == 0


async def test_dead_letter_history_keeps_the_earlier_errors(broker: QueueHarness) -> None:
    queue = await broker.open(
        group="manager", consumer_id="m1", max_deliveries=4, error_history_limit=2
    )
    producer = await broker.open()
    msg_id = await producer.send(event(1))
    async with aclosing(queue.consume()) as messages:
        for attempt in range(1, 5):
            (message,) = await collect(messages, 1)
            assert message.delivery_count == attempt
            await queue.nack(msg_id, f"e{attempt}")
            await broker.advance(TEST_CONFIG.retry_delay)
    (letter,) = await queue.list_dead_letters()
    assert (letter.error, letter.attempts) == ("e4", 4)
    assert letter.history == ("e2", "e3")  # the last error_history_limit earlier errors


async def test_ack_of_a_waiting_message_settles_it(
    queue: AbstractMessageQueue, broker: QueueHarness
) -> None:
    producer = await broker.open()
    msg_id = await producer.send(event(1))
    async with aclosing(queue.consume()) as messages:
        await collect(messages, 1)
        await queue.nack(msg_id, "later")
        assert queue.statistics().retry_waiting == 1
        await queue.ack(msg_id)  # e.g. handled elsewhere meanwhile
        assert queue.statistics().retry_waiting == 0
        await broker.advance(TEST_CONFIG.retry_delay)
        marker = await producer.send(event(2))
        (message,) = await collect(messages, 1)
        assert message.msg_id == marker  # the acked one never comes back
        await queue.ack(marker)
    stats = queue.statistics()
    assert (stats.in_flight, stats.retry_waiting, stats.acked) == (0, 0, 2)


async def test_handled_records_expire_after_handled_ttl(broker: QueueHarness) -> None:
    queue = await broker.open(group="manager", consumer_id="m1", handled_ttl=0.3)
    producer = await broker.open()
    msg_id = await producer.send(event(1))
    async with aclosing(queue.consume()) as messages:
        await collect(messages, 1)
        await queue.mark_handled(msg_id, "h1")
        await queue.nack(msg_id, "h2 failed")
        assert await queue.handled(msg_id) == {"h1"}
        await broker.advance(0.4)  # longer than handled_ttl (and retry_delay)
        (again,) = await collect(messages, 1)
        assert again.msg_id == msg_id
        assert await queue.handled(msg_id) == frozenset()
        await queue.ack(msg_id)


async def test_durable_cursor_expires_after_its_ttl(broker: QueueHarness) -> None:
    producer = await broker.open()
    durable = {
        "broadcast_mode": BroadcastMode.DURABLE,
        "subscriber_id": "sse-1",
        "durable_cursor_ttl": 0.3,
    }
    first_life = await broker.open(**durable)
    got: list[BroadcastMessage] = []
    async with subscribed(first_life, got):
        await producer.broadcast(event(1))
        await wait_for(lambda: len(got) == 1)
    await first_life.aclose()
    await producer.broadcast(event(2))  # sent while it is away
    await broker.advance(0.4)  # away for longer than durable_cursor_ttl: its cursor is gone
    second_life = await broker.open(**durable)
    async with subscribed(second_life, got):
        await producer.broadcast(event(3))
        await wait_for(lambda: len(got) == 2)
    assert [m.fields for m in got] == [event(1), event(3)]  # it starts from the newest
