"""The headline proof of per-handler acknowledgement: kill -9 a consumer process mid-batch."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
from pathlib import Path

import redis.asyncio as aioredis

from ai.backend.common.events.dispatcher import EventDispatcher
from ai.backend.common.events.producer import EventProducer

from ._events import Ping
from ._kill_consumer import HANDLER_IDS, KILL_CONFIG, calls_key, counting_handlers
from .conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
EVENTS = 300


def _id_pair(entry: str) -> tuple[int, int]:
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq)


async def _counts(client: aioredis.Redis) -> dict[tuple[int, str], int]:
    keys = [calls_key(seq, h) for seq in range(EVENTS) for h in HANDLER_IDS]
    values = await client.mget(keys)
    pairs = [(seq, h) for seq in range(EVENTS) for h in HANDLER_IDS]
    return {pair: int(v or 0) for pair, v in zip(pairs, values, strict=True)}


async def test_kill_9_mid_batch(redis_url: str) -> None:
    from ai.backend.common.clients.valkey import ValkeyTarget
    from ai.backend.common.message_queue.redis import RedisMessageQueue

    target = ValkeyTarget.from_url(redis_url)
    client = aioredis.Redis.from_url(redis_url, socket_timeout=None, decode_responses=True)
    victim = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.events._kill_consumer", redis_url, "victim"),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert victim.stdout is not None
        async with asyncio.timeout(30):
            line = await victim.stdout.readline()
        assert line.strip() == b"ready"
        producer_config = dataclasses.replace(KILL_CONFIG, group=None, consumer_id="producer")
        async with RedisMessageQueue(target, producer_config) as publisher:
            ids = await EventProducer(publisher, "test").anycast_events_batch(
                [Ping(seq=seq) for seq in range(EVENTS)]
            )
        seq_of = {msg_id: seq for seq, msg_id in enumerate(ids)}

        # Kill it in the middle: some handler calls done, many still to come.
        async def progressed() -> bool:
            return sum((await _counts(client)).values()) >= EVENTS * len(HANDLER_IDS) // 3

        await wait_for(progressed, deadline=30)
        victim.send_signal(signal.SIGKILL)
        async with asyncio.timeout(10):
            await victim.wait()

        # What the dispatcher had recorded when it died: acked messages (delivered, not
        # pending) and per-handler records of pending ones.
        at_kill = await _counts(client)
        group = next(g for g in await client.xinfo_groups("events") if g["name"] == "manager")
        last_delivered = _id_pair(group["last-delivered-id"])
        entries = await client.xpending_range("events", "manager", "-", "+", EVENTS)
        pending = {entry["message_id"] for entry in entries}
        assert pending, "the kill did not land in the middle of a batch"
        recorded: set[tuple[int, str]] = set()
        async with RedisMessageQueue(
            target, dataclasses.replace(KILL_CONFIG, consumer_id="inspector")
        ) as inspector:
            for msg_id, seq in seq_of.items():
                if msg_id in pending:
                    for handler_id in await inspector.handled(msg_id):
                        recorded.add((seq, handler_id))
                elif _id_pair(msg_id) <= last_delivered:
                    recorded.update((seq, h) for h in HANDLER_IDS)
        in_flight = {pair for pair, n in at_kill.items() if n == 1 and pair not in recorded}

        # A survivor of the same group takes over once the victim's heartbeat expires.
        survivor_config = dataclasses.replace(KILL_CONFIG, consumer_id="survivor")
        async with (
            RedisMessageQueue(target, survivor_config) as queue,
            EventDispatcher(queue, max_concurrency=8) as dispatcher,
        ):
            for handler_id, handler in counting_handlers(client).items():
                dispatcher.consume(Ping, None, handler, name=handler_id)  # type: ignore[arg-type]

            async def all_settled() -> bool:
                info = await client.xpending("events", "manager")
                counts = await _counts(client)
                return int(info["pending"]) == 0 and min(counts.values()) >= 1

            await wait_for(all_settled, deadline=60)
        final = await _counts(client)
    finally:
        if victim.returncode is None:
            victim.kill()
            await victim.wait()
        await client.aclose()

    assert all(n >= 1 for n in final.values()), "an event or a handler call was lost"
    for pair, n in final.items():
        if pair in recorded:
            assert n == 1, f"{pair} had recorded its success, yet ran {n} times"
        elif pair in in_flight:
            assert n in (1, 2), f"{pair} was in flight at the kill and ran {n} times"
        else:
            assert n == 1, f"{pair} had not run at the kill, yet ran {n} times"
    # the duplicates are only calls that finished but had not been recorded
    reruns = {pair for pair, n in final.items() if n == 2}
    assert reruns <= in_flight
    # the kill found messages half done: A recorded, B not; B alone ran again for them
    partial = {seq for seq, h in recorded if h == "A" and (seq, "B") not in recorded}
    assert partial, "no message had a per-handler record at the kill"
    assert all(final[(seq, "A")] == 1 for seq in partial)
