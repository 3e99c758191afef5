"""Background tasks on Redis: this package against raw event publishing on the same Redis.

One round of one impl, on a freshly flushed Redis, with one subscriber receiving every event:

- ``ours``: a ``BackgroundTaskManager`` on ``RedisTaskStore`` and ``RedisMessageQueue`` starts
  N tasks at once; each reports 10 progress updates (``update()`` then ``flush()``, so none is
  coalesced away) and returns. Every task is leased, fenced, written to the store at each step,
  and broadcast as the upstream events: ``bgtask_updated`` "Task started", 10
  ``bgtask_updated``, ``bgtask_done`` (12 per task, broadcast with cache ``bgtask.<id>``). The
  subscriber is an ``EventDispatcher`` on its own ``RedisMessageQueue`` counting the decoded
  bgtask events.
- ``raw``: the same number of events (12 per "task", the same upstream JSON), published by N
  concurrent redis-py producers, each sending its 12 events in order as ``SET bgtask.<id> <json>
  EX 300`` + ``PUBLISH events_all <json>`` in one pipelined round trip, at most 64 in flight (as
  ours); the subscriber is a redis-py pub/sub loop counting messages.

Figures: ``seconds`` from the first start/publish until the subscriber has received every event
(end to end), and ``tasks_per_s`` (N / seconds). Target ``seconds:ours/raw`` <= 3.

The script starts its own ``redis-server`` on a free port (``--save "" --appendonly no``) unless
``BACKEND_REDIS_ADDR`` (``host:port``) is set, and stops it at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel

from _bench import Report, alternate, flush_redis, own_redis, parse_args
from ai.backend.common.bgtask import (
    BackgroundTaskConfig,
    BackgroundTaskManager,
    ProgressReporter,
    TaskRegistry,
)
from ai.backend.common.bgtask.redis import RedisTaskStore
from ai.backend.common.clients.valkey import ValkeyTarget
from ai.backend.common.events import (
    BgtaskCancelledEvent,
    BgtaskDoneEvent,
    BgtaskFailedEvent,
    BgtaskPartialSuccessEvent,
    BgtaskUpdatedEvent,
    EventDispatcher,
    EventProducer,
)
from ai.backend.common.message_queue import QueueConfig
from ai.backend.common.message_queue.redis import RedisMessageQueue

IMPLS = ("ours", "raw")
UPDATES = 10
EVENTS_PER_TASK = UPDATES + 2
IN_FLIGHT = 64
EMPTY_METADATA = '{"request_id":null,"user":null,"triggered_user":null,"traceparent":null}'


@dataclass(frozen=True)
class Sizes:
    """How much work one round does."""

    tasks: int


async def _wait_for(done: asyncio.Event, what: str, deadline: float = 300.0) -> None:
    try:
        async with asyncio.timeout(deadline):
            await done.wait()
    except TimeoutError:
        raise SystemExit(f"{what} did not complete within {deadline} s") from None


# -- ours ---------------------------------------------------------------------------------


class NoArgs(BaseModel):
    """The benchmark task takes no arguments."""


REGISTRY = TaskRegistry()


@REGISTRY.task("bench", NoArgs)
async def bench_task(reporter: ProgressReporter, args: NoArgs) -> str:
    """Ten progress updates, each written and broadcast."""
    for step in range(1, UPDATES + 1):
        reporter.update(current=step, total=UPDATES, message=f"step {step}")
        await reporter.flush()
    return "done"


async def run_ours(url: str, sizes: Sizes) -> float:
    target = ValkeyTarget.from_url(url, request_timeout=30.0)
    expected = sizes.tasks * EVENTS_PER_TASK
    received = 0
    done = asyncio.Event()

    def count(context: object, source: str, event: object) -> None:
        nonlocal received
        received += 1
        if received >= expected:
            done.set()

    config = BackgroundTaskConfig(
        lease_ttl=30.0, progress_interval=0.0, sweep_interval=3600.0, retention=600.0
    )
    async with (
        RedisTaskStore(target, max_in_flight=IN_FLIGHT) as store,
        RedisMessageQueue(target, QueueConfig(source="bench-node")) as queue,
        RedisMessageQueue(target, QueueConfig(source="bench-subscriber")) as sub_queue,
    ):
        dispatcher = EventDispatcher(sub_queue)
        for event_cls in (
            BgtaskUpdatedEvent,
            BgtaskDoneEvent,
            BgtaskFailedEvent,
            BgtaskCancelledEvent,
            BgtaskPartialSuccessEvent,
        ):
            dispatcher.subscribe(event_cls, None, count, name=f"count.{event_cls.event_name}")
        async with (
            dispatcher,
            BackgroundTaskManager(
                store,
                node_id="bench-node",
                registry=REGISTRY,
                producer=EventProducer(queue, "bench-node"),
                config=config,
            ) as manager,
        ):
            await asyncio.sleep(0.2)  # let the subscription reach the server
            started = time.perf_counter()
            await asyncio.gather(*(manager.start("bench") for _ in range(sizes.tasks)))
            await _wait_for(done, f"ours: {received}/{expected} events")
            elapsed = time.perf_counter() - started
            stats = manager.statistics()
            if stats.event_errors or stats.store_errors:
                raise SystemExit(f"ours: errors during the round: {stats}")
    return elapsed


# -- raw ----------------------------------------------------------------------------------


def _broadcast_json(name: str, payload: dict[str, object]) -> bytes:
    return orjson.dumps(
        {
            "name": name,
            "source": "bench-node",
            "payload": orjson.dumps(payload).decode(),
            "metadata": EMPTY_METADATA,
        }
    )


async def run_raw(url: str, sizes: Sizes) -> float:
    expected = sizes.tasks * EVENTS_PER_TASK
    publisher = aioredis.Redis.from_url(url, socket_timeout=None, max_connections=IN_FLIGHT + 8)
    subscriber = aioredis.Redis.from_url(url, socket_timeout=None)
    gate = asyncio.Semaphore(IN_FLIGHT)
    done = asyncio.Event()
    received = 0
    pubsub = subscriber.pubsub()
    await pubsub.subscribe("events_all")
    while (await pubsub.get_message(timeout=1.0)) is None:
        pass  # the subscribe confirmation

    async def consume() -> None:
        nonlocal received
        while received < expected:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message["type"] == "message":
                received += 1
        done.set()

    async def one_task() -> None:
        task_id = str(uuid.uuid4())
        events = [("bgtask_updated", {"current_progress": 0.0, "message": "Task started"})]
        events += [
            ("bgtask_updated", {"current_progress": float(step), "message": f"step {step}"})
            for step in range(1, UPDATES + 1)
        ]
        events.append(("bgtask_done", {"message": "done"}))
        for name, fields in events:
            data = _broadcast_json(name, {"task_id": task_id, **fields})
            async with gate:
                pipe = publisher.pipeline(transaction=False)
                pipe.set(f"bgtask.{task_id}", data, ex=300)
                pipe.publish("events_all", data)
                await pipe.execute()

    consumer = asyncio.create_task(consume())
    try:
        started = time.perf_counter()
        await asyncio.gather(*(one_task() for _ in range(sizes.tasks)))
        await _wait_for(done, f"raw: {received}/{expected} events")
        elapsed = time.perf_counter() - started
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await subscriber.aclose()
        await publisher.aclose()
    return elapsed


# -- main ---------------------------------------------------------------------------------


def main() -> None:
    args = parse_args(__doc__ or "bgtask benchmark", default_rounds=5)
    logging.basicConfig(level=logging.ERROR)
    sizes = Sizes(tasks=200 if args.quick else 1000)
    report = Report("bgtask", args.json)
    with own_redis("bench-bgtask-redis-") as url:

        def run(impl: str) -> float:
            async def one() -> float:
                await flush_redis(url)
                return await (run_ours if impl == "ours" else run_raw)(url, sizes)

            return asyncio.run(one())

        results = alternate(IMPLS, args.rounds, run)
    for impl in IMPLS:
        report.add(impl, "seconds", results[impl], "s")
        report.add(impl, "tasks_per_s", [sizes.tasks / s for s in results[impl]], "tasks/s")
    report.ratio("seconds", "ours", "raw")
    report.finish()


if __name__ == "__main__":
    main()
