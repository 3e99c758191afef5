from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from ai.backend.common.contexts import (
    ContextBundle,
    bind_request_id,
    bind_traceparent,
    bind_user,
    current_request_id,
)
from ai.backend.common.data.user import UserData
from ai.backend.common.events import HandlerConflict
from ai.backend.common.events.dispatcher import (
    CoalescingOptions,
    DispatchFailure,
    EventDispatcher,
    EventObserver,
)
from ai.backend.common.events.producer import EventProducer
from ai.backend.common.exception import InvalidArgument
from ai.backend.common.message_queue import (
    AbstractMessageQueue,
    AnycastMessage,
    BroadcastMessage,
    BroadcastMode,
    DeadLetter,
    QueueConfigError,
    QueueStatistics,
    QueueUnavailable,
)
from ai.backend.common.metrics import EventMetricObserver

from ._events import Note, Ping, Shout
from .conftest import Bus, wait_for


class Recorder:
    """An EventObserver that keeps what it saw."""

    def __init__(self) -> None:
        self.success: Counter[str] = Counter()
        self.failure: list[tuple[str, BaseException]] = []

    def observe_event_success(self, *, event_type: str, duration: float) -> None:
        assert duration >= 0
        self.success[event_type] += 1

    def observe_event_failure(
        self, *, event_type: str, duration: float, exception: BaseException
    ) -> None:
        self.failure.append((event_type, exception))


def _acked(dispatcher: EventDispatcher, count: int) -> Any:
    return lambda: dispatcher.statistics().acked >= count


async def test_handlers_receive_events(queue: AbstractMessageQueue) -> None:
    producer = EventProducer(queue, "tester")
    seen: list[tuple[str, str, int]] = []
    loop_thread = threading.get_ident()
    threads: set[int] = set()

    async def on_async(ctx: str, source: str, event: Ping) -> None:
        seen.append((ctx, source, event.seq))

    def on_sync(ctx: str, source: str, event: Ping) -> None:
        assert threading.get_ident() == loop_thread  # called on the loop
        seen.append((ctx, source, event.seq))

    def on_thread(ctx: str, source: str, event: Ping) -> None:
        threads.add(threading.get_ident())
        seen.append((ctx, source, event.seq))

    async with EventDispatcher(queue) as dispatcher:
        dispatcher.consume(Ping, "a", on_async)
        dispatcher.consume(Ping, "s", on_sync)
        dispatcher.consume(Ping, "t", on_thread, run_in_thread=True)
        await producer.anycast_events_batch([Ping(seq=i) for i in range(5)])
        await wait_for(_acked(dispatcher, 5))
        stats = dispatcher.statistics()
    assert sorted(seen) == sorted((c, "tester", i) for c in "ast" for i in range(5))
    assert threads
    assert loop_thread not in threads
    assert stats.handled == 15
    assert stats.failed == 0
    assert stats.per_event["evtest_ping"].handled == 15
    assert queue.statistics().in_flight == 0


async def test_context_is_restored_in_handlers(queue: AbstractMessageQueue) -> None:
    producer = EventProducer(queue, "tester")
    user = UserData(user_id=uuid.uuid4())
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    seen: dict[int, ContextBundle] = {}

    async def handler(ctx: None, source: str, event: Ping) -> None:
        seen[event.seq] = ContextBundle.capture()

    # Started inside a request: the dispatcher's workers must not inherit it.
    with bind_request_id("req-starter"):
        dispatcher = EventDispatcher(queue)
        await dispatcher.start()
    try:
        dispatcher.consume(Ping, None, handler, name="ctx")
        with bind_request_id("req-1"), bind_user(user), bind_traceparent(traceparent):
            expected = ContextBundle.capture()
            await producer.anycast_event(Ping(seq=1))
        await producer.anycast_event(Ping(seq=2))
        with bind_request_id("req-3"):
            await producer.anycast_event(Ping(seq=3))
        await wait_for(_acked(dispatcher, 3))
    finally:
        await dispatcher.aclose()
    assert seen[1] == expected
    assert seen[2] == ContextBundle()
    assert seen[3] == ContextBundle(request_id="req-3")
    assert current_request_id() is None


async def test_redelivery_runs_only_failed_handlers(bus: Bus, queue: AbstractMessageQueue) -> None:
    producer = EventProducer(queue, "tester")
    calls: Counter[str] = Counter()

    async def a(ctx: None, source: str, event: Ping) -> None:
        calls["a"] += 1

    async def b(ctx: None, source: str, event: Ping) -> None:
        calls["b"] += 1
        if calls["b"] == 1:
            raise RuntimeError("b fails once")

    async def c(ctx: None, source: str, event: Ping) -> None:
        calls["c"] += 1

    async with EventDispatcher(queue) as dispatcher:
        dispatcher.consume(Ping, None, a, name="A")
        dispatcher.consume(Ping, None, b, name="B")
        dispatcher.consume(Ping, None, c, name="C")
        await producer.anycast_event(Ping(seq=1))
        await wait_for(lambda: dispatcher.statistics().nacked == 1)
        assert calls == {"a": 1, "b": 1, "c": 1}
        await wait_for(_acked(dispatcher, 1), tick=lambda: bus.advance(0.1))
        stats = dispatcher.statistics()
    assert calls == {"a": 1, "b": 2, "c": 1}
    assert stats.failed == 1
    assert stats.handled == 3
    assert stats.received == 2
    assert queue.statistics().in_flight == 0


async def test_handlers_of_a_message_run_in_order(queue: AbstractMessageQueue) -> None:
    order: list[str] = []

    def make(tag: str) -> Any:
        async def handler(ctx: None, source: str, event: Ping) -> None:
            await asyncio.sleep(0)
            order.append(f"{tag}{event.seq}")

        return handler

    async with EventDispatcher(queue, max_concurrency=1) as dispatcher:
        for tag in "xyz":
            dispatcher.consume(Ping, None, make(tag), name=tag)
        await EventProducer(queue, "t").anycast_events_batch([Ping(seq=1), Ping(seq=2)])
        await wait_for(_acked(dispatcher, 2))
    assert order == ["x1", "y1", "z1", "x2", "y2", "z2"]


async def test_always_failing_handler_dead_letters(bus: Bus) -> None:
    queue = await bus.open(group="manager", consumer_id="m-1", max_deliveries=3)
    producer = EventProducer(queue, "tester")
    healthy = False
    calls: Counter[str] = Counter()

    async def ok(ctx: None, source: str, event: Ping) -> None:
        calls["ok"] += 1

    async def broken(ctx: None, source: str, event: Ping) -> None:
        calls["broken"] += 1
        if not healthy:
            raise ValueError(f"cannot handle seq {event.seq}")

    async with EventDispatcher(queue) as dispatcher:
        dispatcher.consume(Ping, None, ok, name="ok")
        dispatcher.consume(Ping, None, broken, name="broken")
        await producer.anycast_event(Ping(seq=7))
        letters: list[DeadLetter] = []

        async def dead() -> bool:
            letters[:] = await queue.list_dead_letters()
            return bool(letters)

        await wait_for(dead, tick=lambda: bus.advance(0.1))
        (letter,) = letters
        assert letter.attempts == 3
        assert letter.group == "manager"
        assert "broken" in letter.error
        assert "cannot handle seq 7" in letter.error
        assert letter.fields["name"] == "evtest_ping"
        assert calls == {"ok": 1, "broken": 3}
        # fixed: replay it, and it is handled (a fresh message, so both handlers run)
        healthy = True
        assert len(await queue.replay_dead_letters()) == 1
        await wait_for(_acked(dispatcher, 1), tick=lambda: bus.advance(0.1))
    assert calls == {"ok": 2, "broken": 4}
    assert await queue.list_dead_letters() == []


async def test_handler_errors_are_reported_and_pump_goes_on(
    bus: Bus, queue: AbstractMessageQueue
) -> None:
    recorder = Recorder()
    assert isinstance(recorder, EventObserver)
    failures: list[DispatchFailure] = []
    producer = EventProducer(queue, "tester")
    notes: list[int] = []

    async def broken(ctx: None, source: str, event: Ping) -> None:
        raise KeyError(event.seq)

    async def fine(ctx: None, source: str, event: Note) -> None:
        notes.append(event.seq)

    async with EventDispatcher(
        queue, observers=[recorder], on_failure=failures.append
    ) as dispatcher:
        dispatcher.consume(Ping, None, broken, name="broken")
        dispatcher.consume(Note, None, fine, name="fine")
        await producer.anycast_events_batch([Ping(seq=1), Note(seq=1), Ping(seq=2), Note(seq=2)])
        await wait_for(lambda: len(notes) == 2 and dispatcher.statistics().nacked >= 2)
        stats = dispatcher.statistics()
    assert recorder.success["evtest_note"] == 2
    assert [name for name, _ in recorder.failure[:2]] == ["evtest_ping", "evtest_ping"]
    handler_failures = [f for f in failures if f.stage == "handler"]
    assert {f.exception.args[0] for f in handler_failures} >= {1, 2}
    assert all(f.handler_id == "broken" and f.delivery_count >= 1 for f in handler_failures)
    assert stats.per_event["evtest_ping"].failed >= 2
    assert stats.per_event["evtest_note"].handled == 2


async def test_observer_errors_do_not_stop_handling(queue: AbstractMessageQueue) -> None:
    class Broken:
        def observe_event_success(self, *, event_type: str, duration: float) -> None:
            raise RuntimeError("observer bug")

        def observe_event_failure(
            self, *, event_type: str, duration: float, exception: BaseException
        ) -> None:
            raise RuntimeError("observer bug")

    failures: list[DispatchFailure] = []
    seen: list[int] = []

    async def handler(ctx: None, source: str, event: Ping) -> None:
        seen.append(event.seq)

    async with EventDispatcher(queue, observers=[Broken()], on_failure=failures.append) as d:
        d.consume(Ping, None, handler)
        await EventProducer(queue, "t").anycast_events_batch([Ping(seq=1), Ping(seq=2)])
        await wait_for(_acked(d, 2))
    assert sorted(seen) == [1, 2]
    assert [f.stage for f in failures] == ["observer", "observer"]


async def test_undecodable_payload_is_dead_lettered(queue: AbstractMessageQueue) -> None:
    seen: list[int] = []
    failures: list[DispatchFailure] = []

    async def handler(ctx: None, source: str, event: Ping) -> None:
        seen.append(event.seq)

    async with EventDispatcher(queue, on_failure=failures.append) as dispatcher:
        dispatcher.consume(Ping, None, handler)
        await queue.send({"name": "evtest_ping", "source": "x", "payload": '{"seq":"not-int"}'})
        await queue.send({"name": "evtest_ping", "source": "x", "payload": "{oops"})
        await queue.send(
            {"name": "evtest_ping", "source": "x", "payload": '{"seq":1}', "metadata": "[1]"}
        )
        await EventProducer(queue, "t").anycast_event(Ping(seq=2))
        await wait_for(lambda: seen == [2] and dispatcher.statistics().dead_lettered == 3)
        letters = await queue.list_dead_letters()
    assert len(letters) == 3
    assert all(letter.error.startswith("undecodable: ") for letter in letters)
    by_payload = {letter.fields["payload"]: letter.error for letter in letters}
    assert "seq" in by_payload['{"seq":"not-int"}']
    assert "JSON" in by_payload["{oops"]
    assert "metadata" in by_payload['{"seq":1}']
    assert [f.stage for f in failures] == ["decode"] * 3


async def test_unhandled_names_are_acked(queue: AbstractMessageQueue) -> None:
    async def handler(ctx: None, source: str, event: Ping) -> None:
        pass

    async with EventDispatcher(queue) as dispatcher:
        dispatcher.consume(Ping, None, handler)
        await queue.send({"name": "some_future_event", "source": "x", "payload": "{}"})
        await EventProducer(queue, "t").anycast_event(Note(seq=1))  # known, no handler here
        await EventProducer(queue, "t").anycast_event(Ping(seq=1))
        await wait_for(_acked(dispatcher, 3))
        stats = dispatcher.statistics()
    assert stats.unhandled == 2
    assert stats.handled == 1
    assert await queue.list_dead_letters() == []
    assert queue.statistics().in_flight == 0


async def test_coalescing_acks_every_message(queue: AbstractMessageQueue) -> None:
    producer = EventProducer(queue, "tester")
    batches: list[int] = []
    every: list[int] = []

    async def coalesced(ctx: None, source: str, event: Ping) -> None:
        batches.append(event.seq)

    async def each(ctx: None, source: str, event: Ping) -> None:
        every.append(event.seq)

    async with EventDispatcher(queue, max_concurrency=1) as dispatcher:
        dispatcher.consume(
            Ping, None, coalesced, coalescing=CoalescingOptions(max_wait=60, max_batch_size=5)
        )
        dispatcher.consume(Ping, None, each)
        await producer.anycast_events_batch([Ping(seq=i) for i in range(1, 11)])
        await wait_for(_acked(dispatcher, 10))
        stats = dispatcher.statistics()
    assert batches == [5, 10]  # once per batch, with the latest event
    assert every == list(range(1, 11))
    assert stats.coalesced == 8
    assert stats.nacked == 0
    assert queue.statistics().in_flight == 0


async def test_coalescing_flushes_after_max_wait(queue: AbstractMessageQueue) -> None:
    batches: list[int] = []

    async def coalesced(ctx: None, source: str, event: Ping) -> None:
        batches.append(event.seq)

    async with EventDispatcher(queue) as dispatcher:
        dispatcher.consume(
            Ping, None, coalesced, coalescing=CoalescingOptions(max_wait=0.01, max_batch_size=100)
        )
        await EventProducer(queue, "t").anycast_events_batch([Ping(seq=i) for i in range(3)])
        await wait_for(_acked(dispatcher, 3))
    assert 1 <= len(batches) <= 3
    assert batches[-1] == 2


async def test_coalesced_failure_nacks_the_batch_and_keeps_marks(
    bus: Bus, queue: AbstractMessageQueue
) -> None:
    calls: Counter[str] = Counter()
    seqs: list[int] = []

    async def coalesced(ctx: None, source: str, event: Ping) -> None:
        calls["coalesced"] += 1
        if calls["coalesced"] == 1:
            raise RuntimeError("first batch fails")

    async def each(ctx: None, source: str, event: Ping) -> None:
        seqs.append(event.seq)

    async with EventDispatcher(queue, max_concurrency=1) as dispatcher:
        dispatcher.consume(
            Ping, None, coalesced, coalescing=CoalescingOptions(max_wait=60, max_batch_size=3)
        )
        dispatcher.consume(Ping, None, each, name="each")
        await EventProducer(queue, "t").anycast_events_batch([Ping(seq=i) for i in range(3)])
        await wait_for(lambda: dispatcher.statistics().nacked == 3)
        await wait_for(_acked(dispatcher, 3), tick=lambda: bus.advance(0.1))
    assert calls["coalesced"] == 2
    assert sorted(seqs) == [0, 1, 2]  # "each" succeeded the first time and is not re-run


async def test_broadcast_subscribers_all_receive(bus: Bus) -> None:
    sender = await bus.open(group="agent", consumer_id="agent-1")
    listener = await bus.open(group="manager", consumer_id="manager-1")
    producer = EventProducer(sender, "agent-1")
    got: dict[str, list[tuple[int, str | None]]] = {"a": [], "b": []}

    async def make(tag: str) -> Any:
        async def handler(ctx: None, source: str, event: Shout) -> None:
            got[tag].append((event.seq, current_request_id()))

        return handler

    async with EventDispatcher(listener) as dispatcher:
        dispatcher.subscribe(Shout, None, await make("a"), name="a")
        dispatcher.subscribe(Shout, None, await make("b"), name="b")
        await wait_for(lambda: listener.statistics().subscriptions >= 1)
        with bind_request_id("req-b"):
            await producer.broadcast_event(Shout(seq=1))
        await producer.broadcast_event(Shout(seq=2))
        await wait_for(lambda: len(got["a"]) == 2 and len(got["b"]) == 2)
        stats = dispatcher.statistics()
    assert sorted(got["a"]) == [(1, "req-b"), (2, None)]
    assert sorted(got["b"]) == sorted(got["a"])
    assert stats.broadcasts_received == 2
    assert stats.acked == 0


async def test_durable_broadcast_subscriber(bus: Bus) -> None:
    sender = await bus.open(group="agent", consumer_id="agent-1")
    listener = await bus.open(
        consumer_id="sse-1", broadcast_mode=BroadcastMode.DURABLE, subscriber_id="sse-1"
    )
    seen: list[int] = []

    def handler(ctx: None, source: str, event: Shout) -> None:
        seen.append(event.seq)

    async with EventDispatcher(listener) as dispatcher:
        dispatcher.subscribe(Shout, None, handler)
        await wait_for(lambda: listener.statistics().subscriptions >= 1)
        for i in range(5):
            await EventProducer(sender, "agent-1").broadcast_event(Shout(seq=i))
        await wait_for(lambda: len(seen) == 5)
    assert seen == [0, 1, 2, 3, 4]  # durable broadcasts are handled in order


async def test_concurrency_is_bounded(queue: AbstractMessageQueue) -> None:
    release = asyncio.Event()
    running = 0
    peak = 0

    async def slow(ctx: None, source: str, event: Ping) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await release.wait()
        finally:
            running -= 1

    async with EventDispatcher(queue, max_concurrency=3) as dispatcher:
        dispatcher.consume(Ping, None, slow)
        await EventProducer(queue, "t").anycast_events_batch([Ping(seq=i) for i in range(10)])
        await wait_for(
            lambda: dispatcher.statistics().in_flight == 3 and dispatcher.statistics().queued == 7
        )
        assert running == 3
        release.set()
        await wait_for(_acked(dispatcher, 10))
    assert peak == 3


async def test_close_drains_then_cancels(queue: AbstractMessageQueue) -> None:
    started = asyncio.Event()
    finished: list[int] = []
    cancelled: list[int] = []
    never = asyncio.Event()

    async def handler(ctx: None, source: str, event: Ping) -> None:
        started.set()
        try:
            if event.seq == 0:
                await asyncio.sleep(0.01)  # finishes within the close timeout
            else:
                await never.wait()  # never finishes: cancelled at close
        except asyncio.CancelledError:
            cancelled.append(event.seq)
            raise
        finished.append(event.seq)

    dispatcher = EventDispatcher(queue, max_concurrency=2, close_timeout=0.3)
    async with dispatcher:
        dispatcher.consume(Ping, None, handler)
        await EventProducer(queue, "t").anycast_events_batch([Ping(seq=0), Ping(seq=1)])
        await started.wait()
        await wait_for(lambda: dispatcher.statistics().in_flight == 2)
    stats = dispatcher.statistics()
    assert finished == [0]
    assert cancelled == [1]
    assert stats.acked == 1
    assert stats.nacked == 1  # handed back to the queue, not left pending
    assert not stats.running
    assert queue.statistics().in_flight == 0
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("EventDispatcher")]
    await dispatcher.aclose()  # idempotent


async def test_registration_rules(queue: AbstractMessageQueue) -> None:
    async def handler(ctx: None, source: str, event: Ping) -> None:
        pass

    dispatcher = EventDispatcher(queue)
    dispatcher.consume(Ping, None, handler)
    with pytest.raises(HandlerConflict, match="test_registration_rules"):
        dispatcher.consume(Ping, None, handler)
    dispatcher.consume(Ping, None, handler, name="second")
    dispatcher.subscribe(Shout, None, handler)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        dispatcher.consume(object, None, handler)  # type: ignore[arg-type,type-var]
    with pytest.raises(InvalidArgument):
        EventDispatcher(queue, max_concurrency=0)
    with pytest.raises(InvalidArgument):
        CoalescingOptions(max_wait=-1, max_batch_size=1)
    await dispatcher.aclose()  # never started: a no-op


async def test_handler_added_after_start_and_removed(queue: AbstractMessageQueue) -> None:
    seen: list[int] = []

    async def handler(ctx: None, source: str, event: Ping) -> None:
        seen.append(event.seq)

    producer = EventProducer(queue, "t")
    async with EventDispatcher(queue) as dispatcher:
        registered = dispatcher.consume(Ping, None, handler)
        await producer.anycast_event(Ping(seq=1))
        await wait_for(_acked(dispatcher, 1))
        dispatcher.remove(registered)
        await producer.anycast_event(Ping(seq=2))
        await wait_for(_acked(dispatcher, 2))
        stats = dispatcher.statistics()
    assert seen == [1]
    assert stats.unhandled == 1


async def test_metrics_observer_plugs_in(bus: Bus, queue: AbstractMessageQueue) -> None:
    registry = CollectorRegistry()
    observer = EventMetricObserver(registry)
    assert isinstance(observer, EventObserver)
    calls = 0

    async def flaky(ctx: None, source: str, event: Ping) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise InvalidArgument("first try fails")

    async with EventDispatcher(queue, observers=[observer]) as dispatcher:
        dispatcher.consume(Ping, None, flaky)
        await EventProducer(queue, "t").anycast_event(Ping(seq=1))
        await queue.send({"name": "evtest_ping", "source": "x", "payload": "{bad"})
        await wait_for(_acked(dispatcher, 1), tick=lambda: bus.advance(0.1))
        await wait_for(lambda: dispatcher.statistics().dead_lettered == 1)

    def sample(name: str, **labels: str) -> float:
        value = registry.get_sample_value(name, {"event_type": "evtest_ping", **labels})
        return 0.0 if value is None else value

    assert sample("backendai_event_count_total") == 2
    assert (
        sample(
            "backendai_event_failure_count_total",
            exception="InvalidArgument",
            domain="backendai",
            operation="generic",
            error_detail="invalid-parameters",
        )
        == 1
    )
    assert sample("backendai_event_redelivery_count_total") == 1
    assert sample("backendai_event_dead_letter_count_total") == 1


async def test_consume_without_group_is_reported(bus: Bus) -> None:
    queue = await bus.open(group=None, consumer_id="no-group")
    failures: list[DispatchFailure] = []

    async def handler(ctx: None, source: str, event: Ping) -> None:
        pass

    async with EventDispatcher(queue, on_failure=failures.append) as dispatcher:
        dispatcher.consume(Ping, None, handler)
        await wait_for(lambda: bool(failures))
        assert dispatcher.statistics().running
    assert [f.stage for f in failures] == ["pump"]
    assert isinstance(failures[0].exception, QueueConfigError)


class FlakyQueue(AbstractMessageQueue):
    """Wraps a real queue client; its ``consume()`` iterators fail with ``QueueUnavailable``
    a given number of times, each after handing out ``after`` messages (a broken connection
    mid-stream), then it behaves."""

    def __init__(self, inner: AbstractMessageQueue, *, failures: int, after: int) -> None:
        self.inner = inner
        self.failures_left = failures
        self.after = after

    def consume(self) -> AsyncGenerator[AnycastMessage, None]:
        if self.failures_left <= 0:
            return self.inner.consume()
        self.failures_left -= 1
        return self._failing()

    async def _failing(self) -> AsyncGenerator[AnycastMessage, None]:
        handed = 0
        async with contextlib.aclosing(self.inner.consume()) as messages:
            if self.after:
                async for msg in messages:
                    yield msg
                    handed += 1
                    if handed == self.after:
                        break  # before asking for another: one taken is one handed out
        raise QueueUnavailable("events: connection lost (injected)")

    async def open(self) -> None:
        await self.inner.open()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def abort(self) -> None:
        await self.inner.abort()

    async def send(self, fields: Mapping[str, str]) -> str:
        return await self.inner.send(fields)

    async def send_batch(self, batch: Sequence[Mapping[str, str]]) -> list[str]:
        return await self.inner.send_batch(batch)

    async def ack(self, *msg_ids: str) -> None:
        await self.inner.ack(*msg_ids)

    async def nack(self, msg_id: str, error: str) -> None:
        await self.inner.nack(msg_id, error)

    async def dead_letter(self, msg_id: str, error: str) -> None:
        await self.inner.dead_letter(msg_id, error)

    async def mark_handled(self, msg_id: str, handler: str) -> None:
        await self.inner.mark_handled(msg_id, handler)

    async def handled(self, msg_id: str) -> frozenset[str]:
        return await self.inner.handled(msg_id)

    async def broadcast(self, fields: Mapping[str, str], *, cache_id: str | None = None) -> None:
        await self.inner.broadcast(fields, cache_id=cache_id)

    async def fetch_cached_broadcast(self, cache_id: str) -> Mapping[str, str] | None:
        return await self.inner.fetch_cached_broadcast(cache_id)

    def subscribe(self) -> AsyncGenerator[BroadcastMessage, None]:
        return self.inner.subscribe()

    async def list_dead_letters(
        self, *, limit: int = 100, after: str | None = None
    ) -> list[DeadLetter]:
        return await self.inner.list_dead_letters(limit=limit, after=after)

    async def replay_dead_letters(self, dlq_ids: Sequence[str] | None = None) -> list[str]:
        return await self.inner.replay_dead_letters(dlq_ids)

    async def purge_dead_letters(self, dlq_ids: Sequence[str] | None = None) -> int:
        return await self.inner.purge_dead_letters(dlq_ids)

    def statistics(self) -> QueueStatistics:
        return self.inner.statistics()


async def test_pump_recovers_after_consume_errors(bus: Bus, queue: AbstractMessageQueue) -> None:
    """Three consume() iterators break (two mid-stream): each break is reported as a ``pump``
    failure, the pump reads again with backoff, and every message is handled exactly once."""
    flaky = FlakyQueue(queue, failures=3, after=4)
    producer = EventProducer(await bus.open(), "tester")
    failures: list[DispatchFailure] = []
    seen: Counter[int] = Counter()

    async def handler(ctx: None, source: str, event: Ping) -> None:
        seen[event.seq] += 1

    await producer.anycast_events_batch([Ping(seq=i) for i in range(10)])
    async with EventDispatcher(flaky, on_failure=failures.append) as dispatcher:
        dispatcher.consume(Ping, None, handler)
        await wait_for(lambda: len(seen) == 10)
        for i in range(10, 15):  # and it keeps delivering what comes later
            await producer.anycast_event(Ping(seq=i))
        await wait_for(lambda: len(seen) == 15 and dispatcher.statistics().acked == 15)
        stats = dispatcher.statistics()
    assert flaky.failures_left == 0
    assert seen == Counter(range(15))  # nothing lost, nothing handled twice
    pump_failures = [f for f in failures if f.stage == "pump"]
    assert len(pump_failures) == 3
    assert all(isinstance(f.exception, QueueUnavailable) for f in pump_failures)
    assert [f.stage for f in failures] == ["pump"] * 3
    assert stats.nacked == 0
    assert queue.statistics().in_flight == 0
