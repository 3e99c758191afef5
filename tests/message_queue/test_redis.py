"""Redis-only behaviour of RedisMessageQueue and the queue-level proof items of issue #3."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from ai.backend.common.clients.valkey import (
    ValkeyClient,
    ValkeyConnectionError,
    ValkeyStreamClient,
    ValkeyTarget,
)
from ai.backend.common.message_queue import (
    ANYCAST_STREAM,
    BROADCAST_CHANNEL,
    AnycastMessage,
    BroadcastMessage,
    BroadcastMode,
    MessageQueueError,
    QueueClosed,
    QueueConfig,
    QueueTimeout,
    QueueUnavailable,
)
from ai.backend.common.message_queue.redis import RedisMessageQueue, heartbeat_key
from ai.backend.common.message_queue.redis import _base as redis_base
from tests._harness.plugin import RedisServerFactory
from tests._harness.sentinel import RedisSentinelSet

from .conftest import collect, load_vectors, wait_for

FAST = QueueConfig(
    source="test", block_seconds=0.05, heartbeat_ttl=0.6, reclaim_interval=0.05, retry_delay=0.1
)


def event(n: int) -> dict[str, str]:
    return {"name": "tick", "source": "test", "payload": f'{{"n":{n}}}', "metadata": "{}"}


@contextlib.asynccontextmanager
async def opened(target: ValkeyTarget, **overrides: Any) -> AsyncIterator[RedisMessageQueue]:
    config = dataclasses.replace(FAST, **overrides)
    async with RedisMessageQueue(target, config) as queue:
        yield queue


@pytest.fixture
def target(redis_url: str) -> ValkeyTarget:
    return ValkeyTarget.from_url(redis_url)


@pytest.fixture
async def raw(target: ValkeyTarget) -> AsyncIterator[ValkeyClient]:
    """A plain client to look at (and tamper with) what the queue wrote."""
    async with ValkeyClient(target) as client:
        yield client


# -- wire format -----------------------------------------------------------------------


def _vector_fields(envelope: dict[str, Any], key: str) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in envelope[key].items()]


async def test_wire_format_byte_for_byte(target: ValkeyTarget, raw: ValkeyClient) -> None:
    envelopes = load_vectors()["event_envelopes"]
    streams = ValkeyStreamClient(raw)
    async with opened(target) as producer:
        for envelope in envelopes:
            for key in ("anycast_stream_fields", "anycast_stream_fields_retry2"):
                msg_id = await producer.send(envelope[key])
                (entry,) = await streams.range(ANYCAST_STREAM, msg_id, msg_id)
                assert entry.fields is not None
                assert list(entry.fields.items()) == _vector_fields(envelope, key)
        async with raw.subscription(BROADCAST_CHANNEL) as sub:
            for n, envelope in enumerate(envelopes):
                fields = json.loads(envelope["broadcast_json"])
                await producer.broadcast(fields, cache_id=f"bgtask.{n}")
                got = await sub.get(5)
                assert got == (BROADCAST_CHANNEL, envelope["broadcast_json"].encode())
                cached = await raw.execute("GET", f"bgtask.{n}")
                assert cached == envelope["broadcast_json"].encode()
                assert 0 < await raw.execute("TTL", f"bgtask.{n}") <= 300


async def test_decodes_what_upstream_wrote(target: ValkeyTarget, raw: ValkeyClient) -> None:
    envelopes = load_vectors()["event_envelopes"]
    async with opened(target, group="manager", consumer_id="m1") as queue:
        written = []
        for envelope in envelopes:
            for key in ("anycast_stream_fields", "anycast_stream_fields_retry2"):
                fields = envelope[key]
                await raw.execute("XADD", ANYCAST_STREAM, "*", *sum(fields.items(), ()))
                written.append(fields)
        async with aclosing(queue.consume()) as messages:
            got = await collect(messages, len(written))
        assert [list(m.fields.items()) for m in got] == [list(f.items()) for f in written]
        assert [m.fields.get("_retry_count") for m in got[:2]] == [None, "2"]
        await queue.ack(*(m.msg_id for m in got))

        received: list[BroadcastMessage] = []

        async def listen() -> None:
            async with aclosing(queue.subscribe()) as it:
                async for message in it:
                    received.append(message)

        task = asyncio.create_task(listen())
        await wait_for(lambda: queue.statistics().subscriptions == 1)
        for envelope in envelopes:
            await raw.execute("PUBLISH", BROADCAST_CHANNEL, envelope["broadcast_json"])
        await wait_for(lambda: len(received) == len(envelopes))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for message, envelope in zip(received, envelopes, strict=True):
            assert message.fields == json.loads(envelope["broadcast_json"])


# -- retention ---------------------------------------------------------------------------


async def test_trim_never_drops_pending(target: ValkeyTarget, raw: ValkeyClient) -> None:
    streams = ValkeyStreamClient(raw)
    bound = 50
    async with opened(target, group="stopped", consumer_id="s1"):
        pass  # the group exists; its only consumer is gone
    big = {"anycast_trim_maxlen": bound, "max_in_flight": 1000}
    async with opened(target, group="fast", consumer_id="f1", **big) as fast:
        async with opened(target) as producer:
            sent = []
            for start in range(0, 10 * bound, 25):
                sent += await producer.send_batch([event(i) for i in range(start, start + 25)])
        async with aclosing(fast.consume()) as messages:
            got = await collect(messages, 10 * bound)
            await fast.ack(*(m.msg_id for m in got))
        assert [m.msg_id for m in got] == sent
        await streams.trim_retained(ANYCAST_STREAM, maxlen=bound)  # what the trimmer runs
        assert await streams.length(ANYCAST_STREAM) == 10 * bound  # "stopped" needs them all

        async with opened(target, group="stopped", consumer_id="s2", **big) as back:
            async with aclosing(back.consume()) as messages:
                again = await collect(messages, 10 * bound)
            assert [m.msg_id for m in again] == sent  # all of them, in order
            await back.ack(*(m.msg_id for m in again[: 5 * bound]))
            await streams.trim_retained(ANYCAST_STREAM, maxlen=bound)
            kept = [e.id for e in await streams.range(ANYCAST_STREAM)]
            assert kept[-5 * bound :] == sent[5 * bound :]  # the pending half is intact
            assert len(kept) < 10 * bound
            await back.ack(*(m.msg_id for m in again[5 * bound :]))

            async def trimmed() -> bool:
                return await streams.length(ANYCAST_STREAM) <= 2 * bound + 100

            await wait_for(trimmed)  # the background trimmer applies the bound


# -- crash -------------------------------------------------------------------------------


@pytest.mark.slow
async def test_kill_9_consumer_loses_nothing(
    redis_url: str, target: ValkeyTarget, raw: ValkeyClient
) -> None:
    script = Path(__file__).with_name("_consumer_process.py")
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), redis_url, "workers", "victim", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            assert (await process.stdout.readline()).strip() == b"ready"
        async with opened(target) as producer:
            sent = await producer.send_batch([event(i) for i in range(300)])

        async def started_enough() -> bool:
            return int(await raw.execute("LLEN", "trace:victim")) >= 60

        await wait_for(started_enough, within=30)
        process.send_signal(signal.SIGKILL)  # in the middle of its batch
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    trace = [t.decode() for t in await raw.execute("LRANGE", "trace:victim", 0, -1)]
    started = {t.removeprefix("start:") for t in trace if t.startswith("start:")}
    recorded_acked = {t.removeprefix("acked:") for t in trace if t.startswith("acked:")}
    # The server's view at the kill: what the victim still had pending, what it never got.
    streams = ValkeyStreamClient(raw)
    pending = {p.id for p in await streams.pending(ANYCAST_STREAM, "workers", count=1000)}
    (group,) = await streams.groups(ANYCAST_STREAM)
    last = tuple(map(int, group.last_delivered_id.split("-")))
    undelivered = {i for i in sent if tuple(map(int, i.split("-"))) > last}
    acked = set(sent) - pending - undelivered  # acked by the victim before it died
    assert pending  # killed in the middle of its batch
    assert recorded_acked <= acked
    assert acked <= started  # it handled every message it acked

    got: list[AnycastMessage] = []
    async with opened(target, group="workers", consumer_id="heir", heartbeat_ttl=1.0) as heir:
        async with aclosing(heir.consume()) as messages:
            async with asyncio.timeout(30):
                async for message in messages:
                    got.append(message)
                    await heir.ack(message.msg_id)
                    if {m.msg_id for m in got} >= pending | undelivered:
                        break
        assert heir.statistics().reclaimed == len(pending)
    handled_again = {m.msg_id for m in got}
    assert handled_again == pending | undelivered  # nothing lost
    assert not handled_again & acked  # nothing the victim had acked runs again
    assert {m.msg_id for m in got if m.delivery_count > 1} == pending
    assert started - acked <= pending  # in flight at the kill: handled again


# -- durable broadcast ---------------------------------------------------------------------


async def test_durable_subscriber_gets_what_it_missed(
    target: ValkeyTarget, raw: ValkeyClient
) -> None:
    durable = {"broadcast_mode": BroadcastMode.DURABLE, "subscriber_id": "sse-hub"}
    received: list[BroadcastMessage] = []

    async def listen(queue: RedisMessageQueue, count: int) -> None:
        async with aclosing(queue.subscribe()) as it:
            async for message in it:
                received.append(message)
                if len(received) == count:
                    return

    async with opened(target) as producer:
        async with opened(target, **durable) as first:
            task = asyncio.create_task(listen(first, 5))
            await wait_for(lambda: first.statistics().subscriptions == 1)
            for i in range(5):
                await producer.broadcast(event(i))
            async with asyncio.timeout(10):
                await task
        for i in range(5, 505):  # sent while it is away (a restart)
            await producer.broadcast(event(i))
        async with opened(target, **durable) as second:
            task = asyncio.create_task(listen(second, 700))
            await wait_for(lambda: len(received) == 505)
            # the connection drops under it: it resumes from its cursor, nothing lost
            await raw.execute("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            for i in range(505, 700):
                await producer.broadcast(event(i))
            async with asyncio.timeout(20):
                await task
    assert [m.fields for m in received] == [event(i) for i in range(700)]
    ids = [m.msg_id for m in received]
    assert len(set(ids)) == 700


# -- malformed input -----------------------------------------------------------------------


async def test_malformed_entries_dead_lettered(target: ValkeyTarget, raw: ValkeyClient) -> None:
    async with opened(target, group="manager", consumer_id="m1") as queue:
        bad_ids = [
            await raw.execute("XADD", ANYCAST_STREAM, "*", "source", "x"),
            await raw.execute("XADD", ANYCAST_STREAM, "*", "name", "n", "payload", b"\xff\xfe"),
            await raw.execute("XADD", ANYCAST_STREAM, "*", b"\xff", b"1", "name", "n"),
        ]
        good = await raw.execute("XADD", ANYCAST_STREAM, "*", *sum(event(1).items(), ()))
        async with aclosing(queue.consume()) as messages:
            (message,) = await collect(messages, 1)  # the pump survived all three
            assert message.msg_id == good.decode()
            await queue.ack(message.msg_id)
            letters = await queue.list_dead_letters()
            assert [letter.original_id for letter in letters] == [i.decode() for i in bad_ids]
            assert "missing field(s) name, payload" in letters[0].error
            assert "not UTF-8" in letters[1].error
            assert letters[1].fields == {"name": "n", "payload": "\\xff\\xfe"}
            assert "not UTF-8" in letters[2].error
            assert queue.statistics().dead_lettered == 3
            assert queue.statistics().in_flight == 0
            # replay writes the original bytes back, and the pump dead-letters it again
            (new_id,) = await queue.replay_dead_letters([letters[1].dlq_id])
            replayed = await ValkeyStreamClient(raw).range("events:replay:manager")
            assert replayed[0].fields == {b"name": b"n", b"payload": b"\xff\xfe"}

            async def dead_again() -> bool:
                return any(
                    letter.original_id == new_id for letter in await queue.list_dead_letters()
                )

            pump = asyncio.create_task(anext(messages))
            await wait_for(dead_again)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump


# -- lifecycle ----------------------------------------------------------------------------


async def test_close_leaves_no_keys_behind(target: ValkeyTarget, raw: ValkeyClient) -> None:
    async with opened(target, group="manager", consumer_id="tidy") as tidy:
        assert await raw.execute("GET", heartbeat_key("manager", "tidy")) == b"alive"
    assert await raw.execute("KEYS", "events:hb:*") == []
    consumers = await raw.execute("XINFO", "CONSUMERS", ANYCAST_STREAM, "manager")
    assert consumers == []
    assert tidy.statistics().in_flight == 0

    async with opened(target) as producer, opened(target, group="manager", consumer_id="m") as q:
        await producer.send(event(1))
        async with aclosing(q.consume()) as messages:
            await collect(messages, 1)
    # it left a message pending: its heartbeat says "closed" so others take it at once
    assert await raw.execute("GET", heartbeat_key("manager", "m")) == b"closed"


async def test_failed_publish_raises(target: ValkeyTarget) -> None:
    async with opened(target, wait_replicas=1, wait_timeout=0.05) as producer:
        with pytest.raises(QueueUnavailable, match="0 of 1 replica"):
            await producer.send(event(1))
        with pytest.raises(QueueUnavailable):
            await producer.broadcast(event(1))


async def test_publish_waits_for_a_replica(redis_server_factory: RedisServerFactory) -> None:
    master = redis_server_factory()
    replica = redis_server_factory(replicaof=master.address)
    target = ValkeyTarget.single(master.host, master.port)

    async def replica_linked() -> bool:
        info = await asyncio.to_thread(replica.command, "INFO", "replication")
        return bool(info.get("master_link_status") == "up")

    await wait_for(replica_linked, within=20)
    async with opened(target, wait_replicas=1, wait_timeout=2.0) as producer:
        ids = await producer.send_batch([event(i) for i in range(10)])
    assert await asyncio.to_thread(replica.command, "XLEN", ANYCAST_STREAM) == len(ids)


# -- Sentinel failover ---------------------------------------------------------------------


class Flow:
    """A producer publishing ticks and a consumer acking them, both through failovers."""

    def __init__(self, target: ValkeyTarget, wait_replicas: int) -> None:
        self.target = target
        self.wait_replicas = wait_replicas
        self.sent: list[int] = []
        self.failed: list[tuple[int, str]] = []
        self.failed_at: list[float] = []
        self.received: set[int] = set()
        self.stop = asyncio.Event()

    async def produce(self) -> None:
        config = {"wait_replicas": self.wait_replicas, "wait_timeout": 1.0}
        async with opened(self.target, **config) as producer:
            n = 0
            while not self.stop.is_set():
                try:
                    await producer.send(event(n))
                    self.sent.append(n)
                except (QueueUnavailable, QueueTimeout) as exc:
                    self.failed.append((n, type(exc).__name__))
                    self.failed_at.append(asyncio.get_running_loop().time())
                n += 1
                await asyncio.sleep(0.005)

    async def consume(self, queue: RedisMessageQueue) -> None:
        async with aclosing(queue.consume()) as messages:
            async for message in messages:
                self.received.add(json.loads(message.fields["payload"])["n"])
                with contextlib.suppress(MessageQueueError):
                    await queue.ack(message.msg_id)


async def run_flow(
    redis_sentinel: RedisSentinelSet, wait_replicas: int, disrupt: Callable[[], Any]
) -> Flow:
    await asyncio.to_thread(redis_sentinel.wait_quorum)
    target = ValkeyTarget.sentinel(
        redis_sentinel.sentinels,
        redis_sentinel.service_name,
        connect_timeout=0.5,
        request_timeout=2.0,
        sentinel_check_interval=0.2,
    )
    flow = Flow(target, wait_replicas)
    async with opened(target, group="g", consumer_id="c1", heartbeat_ttl=3.0) as consumer:
        consuming = asyncio.create_task(flow.consume(consumer))
        producing = asyncio.create_task(flow.produce())
        try:
            await wait_for(lambda: len(flow.received) >= 50)
            await asyncio.to_thread(disrupt)
            before = len(flow.sent)
            await wait_for(lambda: len(flow.sent) >= before + 100, within=30)  # resumed
            flow.stop.set()
            await producing
            # give redelivery a chance: everything sent must arrive, or is counted lost
            with contextlib.suppress(TimeoutError):
                await wait_for(lambda: set(flow.sent) <= flow.received, within=15)
        finally:
            flow.stop.set()
            for task in (producing, consuming):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return flow


def _report(name: str, flow: Flow) -> None:
    lost = sorted(set(flow.sent) - flow.received)
    outage = flow.failed_at[-1] - flow.failed_at[0] if flow.failed_at else 0.0
    print(
        f"\n{name}: sent={len(flow.sent)} failed={len(flow.failed)} over {outage:.2f} s "
        f"({sorted({kind for _, kind in flow.failed})}) received={len(flow.received)} "
        f"acknowledged-but-lost={len(lost)} {lost[:20]}"
    )


@pytest.mark.slow
async def test_sentinel_failover_during_flow(redis_sentinel: RedisSentinelSet) -> None:
    flow = await run_flow(redis_sentinel, 1, redis_sentinel.failover)
    _report("graceful failover, wait_replicas=1", flow)
    assert set(flow.sent) <= flow.received  # no acknowledged publish lost
    assert max(flow.sent) > max(n for n, _ in flow.failed) if flow.failed else True


@pytest.mark.slow
@pytest.mark.parametrize("wait_replicas", [1, 0])
async def test_sentinel_master_killed_during_flow(
    redis_sentinel: RedisSentinelSet, wait_replicas: int
) -> None:
    def kill() -> None:
        killed = redis_sentinel.kill_master()
        redis_sentinel.wait_new_master()
        killed.start()  # it comes back; the sentinels make it a replica of the new master

    flow = await run_flow(redis_sentinel, wait_replicas, kill)
    _report(f"master SIGKILLed, wait_replicas={wait_replicas}", flow)
    assert flow.failed  # the outage was reported to the caller, not swallowed
    assert max(flow.sent) > max(n for n, _ in flow.failed)  # and the flow resumed
    if wait_replicas:
        assert set(flow.sent) <= flow.received  # no acknowledged publish lost


async def test_consumer_without_heartbeat_is_taken_over(
    target: ValkeyTarget, raw: ValkeyClient
) -> None:
    """An upstream consumer keeps no heartbeat: its entries are taken once idle > TTL."""
    async with opened(target, group="manager", consumer_id="ours") as ours:
        await raw.execute("XADD", ANYCAST_STREAM, "*", *sum(event(1).items(), ()))
        await raw.execute(
            "XREADGROUP", "GROUP", "manager", "upstream", "COUNT", 1, "STREAMS", ANYCAST_STREAM, ">"
        )
        async with aclosing(ours.consume()) as messages:
            (message,) = await collect(messages, 1)
            await ours.ack(message.msg_id)
        # taken over (same entry, second delivery), only once idle for heartbeat_ttl: the
        # claim filters on IDLE [test_stream.py::test_claim_from_moves_only_that_consumers_entries]
        assert message.delivery_count == 2
        assert ours.statistics().reclaimed == 1


async def test_queued_ack_fails_when_close_runs_out_of_grace(
    target: ValkeyTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ack queued behind a stalled one is failed (QueueClosed) when close gives up on the
    writer, never left waiting for ever."""
    monkeypatch.setattr(redis_base, "_CLOSE_GRACE", 0.2)
    stalled = asyncio.Event()
    release = asyncio.Event()

    async def hook(operation: str, call: Callable[[], Awaitable[Any]]) -> Any:
        if operation == "xack" and not stalled.is_set():
            stalled.set()  # the first ack hangs (a server stall, a retrying hook)
            await release.wait()
        return await call()

    config = dataclasses.replace(FAST, group="g", consumer_id="c")
    queue = RedisMessageQueue(target, config, hook=hook)
    await queue.open()
    direct: asyncio.Task[None] | None = None
    try:
        async with opened(target) as producer:
            await producer.send_batch([event(1), event(2)])
        async with aclosing(queue.consume()) as messages:
            first, second = await collect(messages, 2)
        direct = asyncio.create_task(queue.ack(first.msg_id))
        await stalled.wait()
        queued = asyncio.create_task(queue.ack(second.msg_id))
        await asyncio.sleep(0)  # it runs up to its wait for the writer
        await queue.aclose()
        async with asyncio.timeout(5):
            with pytest.raises(QueueClosed):
                await queued
    finally:
        release.set()
        if direct is not None:
            with contextlib.suppress(MessageQueueError):
                await direct
        await queue.aclose()


# -- transient errors on the settle paths --------------------------------------------------

RETRY_CLAIM = "claim_owned"
"""The hook operation of the retry path's claim."""


class Blip:
    """A hook that fails, or stalls, the next call of one operation once it is armed."""

    def __init__(self, operation: str, *, stall: bool = False) -> None:
        self.operation = operation
        self.stall = stall
        self.armed = False
        self.hit = asyncio.Event()

    async def __call__(self, operation: str, call: Callable[[], Awaitable[Any]]) -> Any:
        if self.armed and operation == self.operation:
            self.armed = False
            self.hit.set()
            if self.stall:
                await asyncio.Event().wait()  # until cancelled
            raise ValkeyConnectionError(f"simulated blip in {operation}")
        return await call()


@pytest.mark.parametrize("stall", [False, True], ids=["fails", "cancelled"])
async def test_retry_survives_a_failed_claim(target: ValkeyTarget, stall: bool) -> None:
    """The claim of a due retry fails (or its reader is cancelled): the message still comes
    back, it is not left waiting with nothing scheduled."""
    blip = Blip(RETRY_CLAIM, stall=stall)
    config = dataclasses.replace(FAST, group="g", consumer_id="c", retry_delay=0.1)
    async with RedisMessageQueue(target, config, hook=blip) as queue, opened(target) as producer:
        msg_id = await producer.send(event(1))
        async with aclosing(queue.consume()) as messages:
            await collect(messages, 1)
            blip.armed = True
            await queue.nack(msg_id, "transient")
            if stall:
                reader = asyncio.create_task(anext(messages))
                await blip.hit.wait()
                reader.cancel()  # the reader (and this iterator) stops in the claim
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        assert queue.statistics().retry_waiting == 1
        async with aclosing(queue.consume()) as messages:
            (again,) = await collect(messages, 1, within=5)
        assert blip.hit.is_set()
        assert (again.msg_id, again.delivery_count) == (msg_id, 2)
        await queue.ack(msg_id)
        assert queue.statistics().retry_waiting == 0


@pytest.mark.parametrize("how", ["final_nack", "dead_letter"])
async def test_failed_dead_letter_move_is_retried(target: ValkeyTarget, how: str) -> None:
    """Moving a message to the dead-letter stream fails once: the call raises, the message
    leaves the in-flight count (no slot is held for ever) and is moved on a later turn, never
    handed out again."""
    blip = Blip("dead_letter")
    config = dataclasses.replace(
        FAST, group="g", consumer_id="c", max_deliveries=2, max_in_flight=2, retry_delay=0.05
    )
    async with RedisMessageQueue(target, config, hook=blip) as queue, opened(target) as producer:
        poison = await producer.send(event(0))
        async with aclosing(queue.consume()) as messages:
            (message,) = await collect(messages, 1)
            if how == "final_nack":
                await queue.nack(poison, "e1")
                (message,) = await collect(messages, 1)
                assert message.delivery_count == 2
            blip.armed = True
            settle = queue.nack if how == "final_nack" else queue.dead_letter
            with pytest.raises(QueueUnavailable):
                await settle(poison, "e2")
            assert queue.statistics().in_flight == 0
            others = await producer.send_batch([event(i) for i in range(1, 3)])
            got = await collect(messages, 2)  # two slots: the poison holds none of them
            assert [m.msg_id for m in got] == others
            await queue.ack(*others)

            async def dead_lettered() -> bool:
                return len(await queue.list_dead_letters()) == 1

            pump = asyncio.create_task(anext(messages))  # drives the retry path
            try:
                await wait_for(dead_lettered)
                assert not pump.done()  # the poison was never handed out again
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
        (letter,) = await queue.list_dead_letters()
        assert (letter.original_id, letter.error) == (poison, "e2")
        assert letter.attempts == (2 if how == "final_nack" else 1)
        stats = queue.statistics()
        assert (stats.in_flight, stats.retry_waiting, stats.dead_lettered) == (0, 0, 1)


# -- liveness --------------------------------------------------------------------------------


class Partition:
    """A hook that makes this client's heartbeat writes fail while ``cut`` is set."""

    def __init__(self) -> None:
        self.cut = False

    async def __call__(self, operation: str, call: Callable[[], Awaitable[Any]]) -> Any:
        if self.cut and operation == "set":
            raise ValkeyConnectionError("simulated: the heartbeat cannot reach Redis")
        return await call()


async def test_retry_never_takes_back_a_reclaimed_message(target: ValkeyTarget) -> None:
    """A's heartbeat cannot be written for longer than its TTL, so B takes over A's nacked
    message (the documented limit); when A's retry comes due it must leave it to B, and B sees
    the pending list's delivery count."""
    partition = Partition()
    base = dataclasses.replace(FAST, group="g", heartbeat_ttl=0.6)
    a = RedisMessageQueue(
        target, dataclasses.replace(base, consumer_id="A", retry_delay=1.5), hook=partition
    )
    b = RedisMessageQueue(target, dataclasses.replace(base, consumer_id="B"))
    async with a, b, opened(target) as producer:
        msg_id = await producer.send(event(1))
        async with aclosing(a.consume()) as messages:
            (first,) = await collect(messages, 1)
        partition.cut = True  # from now on A looks dead to its peers
        await a.nack(msg_id, "transient")  # A's retry is due in 1.5 s
        got_a: list[AnycastMessage] = []
        got_b: list[AnycastMessage] = []

        async def pump(queue: RedisMessageQueue, sink: list[AnycastMessage]) -> None:
            async with aclosing(queue.consume()) as it:
                async for message in it:
                    sink.append(message)  # a slow handler: never settled here

        async with asyncio.TaskGroup() as tasks:
            pumps = [tasks.create_task(pump(a, got_a)), tasks.create_task(pump(b, got_b))]
            await wait_for(lambda: len(got_b) == 1)  # B took it over from "dead" A
            partition.cut = False
            # A's retry came due: had A claimed it, its reader would have handed it out in
            # the same step
            await wait_for(lambda: a.statistics().retry_waiting == 0)
            for task in pumps:
                task.cancel()
        assert got_a == []  # A never took it back from B
        assert (got_b[0].msg_id, got_b[0].delivery_count) == (msg_id, 2)
        (entry,) = await ValkeyStreamClient(b.client).pending(ANYCAST_STREAM, "g")
        assert (entry.consumer, entry.deliveries) == ("B", 2)
        assert first.delivery_count == 1
        await b.ack(msg_id)


async def test_redelivery_count_comes_from_the_pending_list(
    target: ValkeyTarget, raw: ValkeyClient
) -> None:
    async with opened(target, group="g", consumer_id="c") as queue, opened(target) as producer:
        msg_id = await producer.send(event(1))
        async with aclosing(queue.consume()) as messages:
            await collect(messages, 1)
            await queue.nack(msg_id, "transient")
            # another delivery the server counted (a same-named consumer, a lost reply)
            await raw.execute("XCLAIM", ANYCAST_STREAM, "g", "c", 0, msg_id)
            (again,) = await collect(messages, 1)
        (entry,) = await ValkeyStreamClient(raw).pending(ANYCAST_STREAM, "g")
        assert again.delivery_count == entry.deliveries == 3
        await queue.ack(msg_id)


# -- closing -----------------------------------------------------------------------------------


async def test_close_during_a_blocked_read_loses_nothing(
    target: ValkeyTarget, raw: ValkeyClient
) -> None:
    """aclose() while consume() waits in XREADGROUP, and a message arrives just as the
    consumer leaves its group: it is neither dropped from the pending list nor handed out by
    the closed client; a peer gets it."""
    streams = ValkeyStreamClient(raw)
    sent: list[str] = []

    async def hook(operation: str, call: Callable[[], Awaitable[Any]]) -> Any:
        if operation == "leave" and not sent:
            sent.append(
                (
                    await raw.execute("XADD", ANYCAST_STREAM, "*", "name", "n", "payload", "{}")
                ).decode()
            )

            async def delivered() -> bool:  # to a read still in flight, if there is one
                return (await streams.pending_summary(ANYCAST_STREAM, "g")).count > 0

            with contextlib.suppress(TimeoutError):
                await wait_for(delivered, within=0.3)
        return await call()

    config = dataclasses.replace(
        FAST, group="g", consumer_id="c1", block_seconds=1.0, reclaim_interval=10.0
    )
    queue = RedisMessageQueue(target, config, hook=hook)
    await queue.open()
    handed: list[AnycastMessage] = []

    async def consume() -> None:
        async with aclosing(queue.consume()) as messages:
            async for message in messages:
                handed.append(message)

    reader = asyncio.create_task(consume())
    try:

        async def blocked_in_read() -> bool:
            clients = (await raw.execute("CLIENT", "LIST")).decode()
            return any("cmd=xreadgroup" in c and "flags=b" in c for c in clients.splitlines())

        await wait_for(blocked_in_read)
        await queue.aclose()
        async with asyncio.timeout(5):
            await reader  # the iterator ends by itself
    finally:
        reader.cancel()
        await queue.aclose()
    assert handed == []  # nothing handed out by a closed client
    async with opened(target, group="g", consumer_id="c2") as peer:
        async with aclosing(peer.consume()) as messages:
            (message,) = await collect(messages, 1, within=5)
        assert message.msg_id == sent[0]
        await peer.ack(message.msg_id)


@pytest.mark.slow
async def test_outage_longer_than_heartbeat_ttl_steals_nothing(
    redis_server_factory: RedisServerFactory,
) -> None:
    """Redis stalls (SIGSTOP) for longer than the heartbeat TTL, so every heartbeat key
    expires, and A gets its heartbeat through a little later than B after the stall: B must
    not take the message A is still handling."""
    server = redis_server_factory()
    target = ValkeyTarget.single(server.host, server.port, request_timeout=0.3)
    ttl = 0.6
    base = dataclasses.replace(FAST, group="g", heartbeat_ttl=ttl)
    late = Partition()  # A's heartbeat writes fail for a moment after the stall
    a = RedisMessageQueue(target, dataclasses.replace(base, consumer_id="A"), hook=late)
    b = RedisMessageQueue(target, dataclasses.replace(base, consumer_id="B"))
    async with a, b, opened(target) as producer:
        held = await producer.send(event(0))
        async with aclosing(a.consume()) as messages:
            await collect(messages, 1)  # A's handler runs through the whole outage
            got_b: list[AnycastMessage] = []

            async def pump() -> None:
                async with aclosing(b.consume()) as it:
                    async for message in it:
                        got_b.append(message)
                        await b.ack(message.msg_id)

            async with asyncio.TaskGroup() as tasks:
                pumping = tasks.create_task(pump())
                markers = [await producer.send(event(1))]
                await wait_for(lambda: len(got_b) == 1)  # B is reading
                late.cut = True
                os.kill(server.pid, signal.SIGSTOP)
                try:
                    await asyncio.sleep(ttl + 0.6)  # the outage: every heartbeat key expires
                finally:
                    os.kill(server.pid, signal.SIGCONT)
                await asyncio.sleep(ttl / 4)  # B is back; A's heartbeat is not yet
                late.cut = False
                for n in (2, 3):
                    markers.append(await producer.send(event(n)))
                    await wait_for(lambda: markers[-1] in {m.msg_id for m in got_b})
                    await asyncio.sleep(ttl)  # B has had a heartbeat TTL of connectivity
                pumping.cancel()
            assert [m.msg_id for m in got_b] == markers  # never the held message
            await a.ack(held)
        assert b.statistics().reclaimed == 0


# -- durable broadcast: at-least-once --------------------------------------------------------


async def test_durable_broadcast_repeats_when_its_cursor_is_not_stored(
    target: ValkeyTarget,
) -> None:
    """The store of a subscriber's position fails (Redis unreachable at that moment): the
    subscriber goes on, and after a restart that message comes again (at-least-once)."""
    blip = Blip("set")
    durable: dict[str, Any] = {"broadcast_mode": BroadcastMode.DURABLE, "subscriber_id": "sse-1"}
    config = dataclasses.replace(FAST, **durable)
    got: list[BroadcastMessage] = []
    async with opened(target) as producer:
        async with RedisMessageQueue(target, config, hook=blip) as first_life:
            messages = first_life.subscribe()
            reader = asyncio.create_task(anext(messages))
            await wait_for(lambda: first_life.statistics().subscriptions == 1)
            await producer.broadcast(event(1))
            await producer.broadcast(event(2))
            got.append(await reader)
            got.append(await anext(messages))  # the position of 1 is stored now
            blip.armed = True  # the store of 2's position, on close, fails
            await messages.aclose()
            assert blip.hit.is_set()
        await producer.broadcast(event(3))
        async with (
            opened(target, **durable) as second_life,
            aclosing(second_life.subscribe()) as messages,
        ):
            got.append(await anext(messages))
            got.append(await anext(messages))
    assert [m.fields for m in got] == [event(1), event(2), event(2), event(3)]
