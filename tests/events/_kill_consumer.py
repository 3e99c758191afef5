"""Child process of test_dispatcher_kill: a consumer whose handlers count their calls in Redis.

Run as ``python -m tests.events._kill_consumer <redis-url> <consumer-id>``; prints ``ready`` once
its dispatcher is running, then handles ``evtest_ping`` events until it is killed.
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis

from ai.backend.common.events.dispatcher import EventDispatcher
from ai.backend.common.message_queue import QueueConfig

from ._events import Ping

KILL_CONFIG = QueueConfig(
    source="kill-test",
    group="manager",
    batch_size=16,
    max_in_flight=32,
    block_seconds=0.05,
    heartbeat_ttl=1.0,
    reclaim_interval=0.1,
    retry_delay=0.1,
)
"""Consumer settings shared by the victim process and the survivor in the test."""

HANDLER_IDS = ("A", "B")


def calls_key(seq: int, handler: str) -> str:
    """The Redis counter of the calls of ``handler`` on event ``seq``."""
    return f"killtest:calls:{seq}:{handler}"


VICTIM_DELAYS = {"A": 0.001, "B": 0.01}
"""Seconds each victim handler works before recording its call: B is slow, so a kill finds
messages whose A succeeded (and was recorded) while B was still running."""


def counting_handlers(
    counter: aioredis.Redis, delays: dict[str, float] | None = None
) -> dict[str, object]:
    """Handlers that work ``delays[id]`` seconds, then record the call (INCR per event and id)."""

    def make(handler_id: str) -> object:
        delay = (delays or {}).get(handler_id, 0.0)

        async def handler(context: None, source: str, event: Ping) -> None:
            if delay:
                await asyncio.sleep(delay)
            await counter.incr(calls_key(event.seq, handler_id))

        return handler

    return {handler_id: make(handler_id) for handler_id in HANDLER_IDS}


async def main(url: str, consumer_id: str) -> None:
    """Consume until killed."""
    import dataclasses

    from ai.backend.common.clients.valkey import ValkeyTarget
    from ai.backend.common.message_queue.redis import RedisMessageQueue

    counter = aioredis.Redis.from_url(url, socket_timeout=None)
    config = dataclasses.replace(KILL_CONFIG, consumer_id=consumer_id)
    async with (
        RedisMessageQueue(ValkeyTarget.from_url(url), config) as queue,
        EventDispatcher(queue, max_concurrency=8) as dispatcher,
    ):
        for handler_id, handler in counting_handlers(counter, VICTIM_DELAYS).items():
            dispatcher.consume(Ping, None, handler, name=handler_id)  # type: ignore[arg-type]
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
