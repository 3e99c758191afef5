"""A consumer process for the kill -9 test (run as a script, never collected by pytest).

Usage: ``python _consumer_process.py <redis url> <group> <consumer id>``. It consumes the
group, and for each message records ``start:<id>`` in the Redis list ``trace:<consumer>``,
works ~20 ms, acks, then records ``acked:<id>``; it prints ``ready`` once consuming.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from ai.backend.common.clients.valkey import ValkeyTarget
from ai.backend.common.message_queue import AnycastMessage, QueueConfig
from ai.backend.common.message_queue.redis import RedisMessageQueue


async def main(url: str, group: str, consumer: str) -> None:
    config = QueueConfig(
        group=group,
        consumer_id=consumer,
        heartbeat_ttl=1.0,
        reclaim_interval=0.2,
        block_seconds=0.2,
        max_in_flight=16,
        batch_size=16,
    )
    async with RedisMessageQueue(ValkeyTarget.from_url(url), config) as queue:
        trace = f"trace:{consumer}"
        client = queue.client

        async def handle(message: AnycastMessage) -> None:
            await client.execute("RPUSH", trace, f"start:{message.msg_id}")
            await asyncio.sleep(0.02)
            await queue.ack(message.msg_id)
            await client.execute("RPUSH", trace, f"acked:{message.msg_id}")

        print("ready", flush=True)
        async with asyncio.TaskGroup() as tasks, contextlib.aclosing(queue.consume()) as it:
            async for message in it:
                tasks.create_task(handle(message))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
