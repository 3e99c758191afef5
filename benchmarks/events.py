"""Events over Redis Streams: this package against a raw redis-py loop and FastStream.

One round of one impl, on a freshly flushed Redis:

- ``throughput``: publish N anycast events (about 100-byte payload) in batches of 100 while one
  consumer handles them with a no-op handler; msgs/s from the first publish to the last ack.
- ``pingpong_p50`` / ``pingpong_p99``: one message in flight: publish one event, the handler
  receives it and signals back, the publisher wakes up, next; microseconds per round trip.

Impls: ``ours`` (``EventProducer.anycast_events_batch`` + ``EventDispatcher`` on
``RedisMessageQueue``), ``raw`` (a hand-written redis-py loop: pipelined XADD, XREADGROUP COUNT
128, one XACK per read, the practical ceiling) and ``faststream`` (FastStream's Redis stream
subscriber with a consumer group, fed by the same pipelined XADD as ``raw``). All write the
upstream entry fields (``name``, ``source``, ``payload``, ``metadata``).

The script starts its own ``redis-server`` on a free port (``--save "" --appendonly no``) unless
``BACKEND_REDIS_ADDR`` (``host:port``) is set, and stops it at the end.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from _bench import Report, alternate, flush_redis, own_redis, parse_args
from ai.backend.common.events import AbstractAnycastEvent, EventDomain, EventRegistry
from ai.backend.common.events.dispatcher import EventDispatcher
from ai.backend.common.events.producer import EventProducer

STREAM = "events"
GROUP = "bench"
CONSUMER = "bench-1"
PUBLISH_BATCH = 100
READ_COUNT = 128
TEXT = "x" * 76  # {"seq":12345,"text":"xxx..."} is about 100 bytes
EMPTY_METADATA = '{"request_id":null,"user":null,"triggered_user":null,"traceparent":null}'
IMPLS = ("ours", "raw", "faststream")

_registry = EventRegistry()


class BenchEvent(
    AbstractAnycastEvent, name="bench_event", domain=EventDomain.LOG, registry=_registry
):
    """The benchmark's event: about 100 bytes of JSON."""

    seq: int
    text: str


@dataclass(frozen=True)
class Sizes:
    """How much work one round does."""

    events: int
    pings: int
    warmup: int


@dataclass(frozen=True)
class RoundResult:
    """Figures of one round of one impl."""

    throughput: float
    p50: float
    p99: float


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return p50 * 1e6, p99 * 1e6


async def _wait_until(condition: Callable[[], bool], deadline: float = 120.0) -> None:
    # Polls counters of another component (0.5 ms resolution, well under a round's length).
    async with asyncio.timeout(deadline):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.0005)


async def _pingpong(
    sizes: Sizes, publish_one: Callable[[int], Awaitable[Any]], signal: list[Any]
) -> tuple[float, float]:
    """Round trips with one message in flight; ``signal[0]`` is the future the handler sets."""
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    for i in range(sizes.warmup + sizes.pings):
        future = loop.create_future()
        signal[0] = future
        started = time.perf_counter()
        await publish_one(i)
        async with asyncio.timeout(10):
            await future
        if i >= sizes.warmup:
            samples.append(time.perf_counter() - started)
    signal[0] = None
    return _percentiles(samples)


def _wake(signal: list[Any]) -> None:
    future = signal[0]
    if future is not None and not future.done():
        future.set_result(None)


def _raw_fields(seq: int) -> dict[str, str]:
    return {
        "name": "bench_event",
        "source": "bench",
        "payload": orjson.dumps({"seq": seq, "text": TEXT}).decode(),
        "metadata": EMPTY_METADATA,
    }


async def _raw_publish(client: aioredis.Redis, seqs: range) -> None:
    pipe = client.pipeline(transaction=False)
    for seq in seqs:
        pipe.xadd(STREAM, _raw_fields(seq))  # type: ignore[arg-type]
    await pipe.execute()


# -- ours ---------------------------------------------------------------------------------


async def run_ours(url: str, sizes: Sizes) -> RoundResult:
    from ai.backend.common.clients.valkey import ValkeyTarget
    from ai.backend.common.message_queue import QueueConfig
    from ai.backend.common.message_queue.redis import RedisMessageQueue

    config = QueueConfig(
        source="bench",
        group=GROUP,
        consumer_id=CONSUMER,
        batch_size=READ_COUNT,
        max_in_flight=4 * READ_COUNT,
        block_seconds=1.0,
    )
    count = 0
    signal: list[Any] = [None]

    async def handler(context: None, source: str, event: BenchEvent) -> None:
        nonlocal count
        count += 1
        _wake(signal)

    async with RedisMessageQueue(ValkeyTarget.from_url(url), config) as queue:
        producer = EventProducer(queue, "bench")
        async with EventDispatcher(queue) as dispatcher:
            dispatcher.consume(BenchEvent, None, handler, name="noop")
            events = [BenchEvent(seq=i, text=TEXT) for i in range(sizes.events)]
            started = time.perf_counter()
            for i in range(0, sizes.events, PUBLISH_BATCH):
                await producer.anycast_events_batch(events[i : i + PUBLISH_BATCH])
            await _wait_until(lambda: dispatcher.statistics().acked >= sizes.events)
            elapsed = time.perf_counter() - started
            assert count == sizes.events, (count, sizes.events)

            async def publish_one(seq: int) -> None:
                await producer.anycast_event(BenchEvent(seq=seq, text=TEXT))

            p50, p99 = await _pingpong(sizes, publish_one, signal)
    return RoundResult(sizes.events / elapsed, p50, p99)


# -- raw redis-py -------------------------------------------------------------------------


async def run_raw(url: str, sizes: Sizes) -> RoundResult:
    client = aioredis.Redis.from_url(url, socket_timeout=None)
    await client.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    count = 0
    acked = 0
    stop = False
    signal: list[Any] = [None]

    async def consumer() -> None:
        nonlocal count, acked
        while not stop:
            response: Any = await client.xreadgroup(
                GROUP, CONSUMER, {STREAM: ">"}, count=READ_COUNT, block=100
            )
            if not response:
                continue
            ids = []
            for _stream, entries in response:
                for msg_id, fields in entries:
                    orjson.loads(fields[b"payload"])
                    count += 1
                    _wake(signal)
                    ids.append(msg_id)
            await client.xack(STREAM, GROUP, *ids)
            acked += len(ids)

    task = asyncio.create_task(consumer())
    try:
        started = time.perf_counter()
        for i in range(0, sizes.events, PUBLISH_BATCH):
            await _raw_publish(client, range(i, min(i + PUBLISH_BATCH, sizes.events)))
        await _wait_until(lambda: acked >= sizes.events)
        elapsed = time.perf_counter() - started
        assert count == sizes.events, (count, sizes.events)

        async def publish_one(seq: int) -> None:
            await client.xadd(STREAM, _raw_fields(seq))  # type: ignore[arg-type]

        p50, p99 = await _pingpong(sizes, publish_one, signal)
    finally:
        stop = True
        await task
        await client.aclose()
    return RoundResult(sizes.events / elapsed, p50, p99)


# -- FastStream ---------------------------------------------------------------------------


async def run_faststream(url: str, sizes: Sizes) -> RoundResult:
    from faststream.redis import RedisBroker, StreamSub

    client = aioredis.Redis.from_url(url, socket_timeout=None)
    # logger=None turns off FastStream's two log lines per message (a fair comparison).
    broker = RedisBroker(url, logger=None)  # type: ignore[arg-type]
    count = 0
    signal: list[Any] = [None]

    @broker.subscriber(stream=StreamSub(STREAM, group=GROUP, consumer=CONSUMER))
    async def handler(body: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        _wake(signal)

    async def pending() -> int:
        info = await client.xpending(STREAM, GROUP)
        return int(info["pending"])

    await broker.start()
    try:
        started = time.perf_counter()
        for i in range(0, sizes.events, PUBLISH_BATCH):
            await _raw_publish(client, range(i, min(i + PUBLISH_BATCH, sizes.events)))
        await _wait_until(lambda: count >= sizes.events)
        async with asyncio.timeout(60):
            while await pending():  # noqa: ASYNC110 - polls the server's pending list
                await asyncio.sleep(0.0005)
        elapsed = time.perf_counter() - started

        async def publish_one(seq: int) -> None:
            await client.xadd(STREAM, _raw_fields(seq))  # type: ignore[arg-type]

        p50, p99 = await _pingpong(sizes, publish_one, signal)
    finally:
        await broker.stop()
        await client.aclose()
    return RoundResult(sizes.events / elapsed, p50, p99)


RUNNERS: dict[str, Callable[[str, Sizes], Awaitable[RoundResult]]] = {
    "ours": run_ours,
    "raw": run_raw,
    "faststream": run_faststream,
}


def main() -> None:
    """Run the alternating rounds and print the report."""
    args = parse_args(__doc__ or "events benchmark", default_rounds=5)
    logging.getLogger("faststream").setLevel(logging.WARNING)
    sizes = (
        Sizes(events=5_000, pings=300, warmup=50)
        if args.quick
        else Sizes(events=20_000, pings=2_000, warmup=200)
    )
    report = Report("events", args.json)
    with own_redis() as url:

        def one_round(impl: str) -> RoundResult:
            async def run() -> RoundResult:
                await flush_redis(url)
                return await RUNNERS[impl](url, sizes)

            return asyncio.run(run())

        results = alternate(IMPLS, args.rounds, one_round)
    for impl in IMPLS:
        rounds = results[impl]
        report.add(impl, "throughput", [r.throughput for r in rounds], "msgs/s")
        report.add(impl, "pingpong_p50", [r.p50 for r in rounds], "us")
        report.add(impl, "pingpong_p99", [r.p99 for r in rounds], "us")
    report.ratio("throughput", "ours", "raw")
    report.ratio("throughput", "ours", "faststream")
    report.ratio("pingpong_p50", "ours", "raw")
    report.finish()


if __name__ == "__main__":
    main()
