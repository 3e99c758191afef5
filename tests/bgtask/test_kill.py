"""Crash proofs on real Redis with real processes: kill -9 the owner, pause the owner."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ai.backend.common.bgtask import TaskFollower, TaskId, TaskState, subscribe_bgtask_events
from ai.backend.common.events import (
    AbstractEvent,
    BgtaskDoneEvent,
    BgtaskFailedEvent,
    EventDispatcher,
    EventHub,
)
from tests._helpers import until

from ._node import Node, open_node

REPO = Path(__file__).resolve().parents[2]
LEASE = 2.0


@contextlib.contextmanager
def node_process(redis_url: str, node_id: str, scenario: str) -> Iterator[subprocess.Popen[str]]:
    """A node subprocess (killed at the end whatever happened)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bgtask._node", redis_url, node_id, str(LEASE), scenario],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


async def read_line(proc: subprocess.Popen[str], within: float = 30.0) -> dict[str, Any]:
    assert proc.stdout is not None
    stdout = proc.stdout
    async with asyncio.timeout(within):
        line = await asyncio.to_thread(stdout.readline)
    assert line, f"node process exited with {proc.poll()}"
    data: dict[str, Any] = json.loads(line)
    return data


@contextlib.asynccontextmanager
async def following_node(redis_url: str, node_id: str) -> AsyncIterator[tuple[Node, TaskFollower]]:
    """A node in this process, with a hub fed by the bgtask broadcasts it receives over Redis."""
    async with open_node(redis_url, node_id, LEASE) as node:
        hub = EventHub()
        dispatcher = EventDispatcher(node.queue)
        subscribe_bgtask_events(dispatcher, hub)
        async with dispatcher:
            # A long poll interval: the outcome must arrive as an event, not by polling.
            yield node, TaskFollower(node.store, hub, poll_interval=30.0)
        await hub.aclose()


async def collect(follower: TaskFollower, task_id: TaskId) -> list[AbstractEvent]:
    return [event async for event in follower.follow(task_id)]


@pytest.mark.slow
async def test_kill_9_owner_is_adopted(redis_url: str) -> None:
    loop = asyncio.get_running_loop()
    with node_process(redis_url, "node-a", "kill") as victim:
        ids = {k: TaskId(uuid.UUID(v)) for k, v in (await read_line(victim))["ready"].items()}
        async with following_node(redis_url, "node-b") as (node_b, follower):
            store = node_b.store
            followers = {
                name: asyncio.create_task(collect(follower, task_id))
                for name, task_id in ids.items()
            }

            async def both_progressing() -> bool:
                records = [await store.get(t) for t in ids.values()]
                return all(
                    r is not None and r.state is TaskState.RUNNING and r.current >= 3
                    for r in records
                )

            await until(both_progressing, within=30)
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            killed_at = loop.time()

            adopted_at: dict[str, float] = {}

            async def adopted() -> bool:
                for name, task_id in ids.items():
                    record = await store.get(task_id)
                    if name not in adopted_at and record is not None and record.token == 2:
                        adopted_at[name] = loop.time()
                return len(adopted_at) == len(ids)

            await until(adopted, within=6 * LEASE, interval=0.02)
            for name, when in adopted_at.items():
                assert when - killed_at <= 2 * LEASE, f"{name} adopted after {when - killed_at}"

            async with asyncio.timeout(30):
                outcomes = {name: await task for name, task in followers.items()}

        count = await store_record(redis_url, ids["count"])
        assert count.state is TaskState.SUCCEEDED
        assert count.owner == "node-b"
        assert count.run_count == 2
        assert count.result["from"]["step"] >= 3  # resumed from its checkpoint
        assert isinstance(outcomes["count"][-1], BgtaskDoneEvent)
        assert outcomes["count"][-1].message == "resumed on node-b"

        fragile = await store_record(redis_url, ids["fragile"])
        assert fragile.state is TaskState.FAILED
        assert fragile.message is not None
        assert "'node-a' stopped renewing its lease" in fragile.message
        assert "not resumable" in fragile.message
        assert isinstance(outcomes["fragile"][-1], BgtaskFailedEvent)
        assert outcomes["fragile"][-1].message == fragile.message
        # The follower saw node-a's progress before the kill, over Redis.
        assert any(
            e.event_name == "bgtask_updated" and getattr(e, "current_progress", 0) >= 1
            for e in outcomes["fragile"]
        )


async def store_record(redis_url: str, task_id: TaskId) -> Any:
    from ai.backend.common.bgtask.redis import RedisTaskStore
    from ai.backend.common.clients.valkey import ValkeyTarget

    async with RedisTaskStore(ValkeyTarget.from_url(redis_url)) as store:
        record = await store.get(task_id)
    assert record is not None
    return record


@pytest.mark.slow
async def test_paused_owner_is_fenced(redis_url: str) -> None:
    with node_process(redis_url, "node-a", "pause") as paused:
        task_id = TaskId(uuid.UUID((await read_line(paused))["ready"]["writer"]))
        async with following_node(redis_url, "node-b") as (node_b, _):
            store = node_b.store

            async def written_by(node: str) -> bool:
                record = await store.get(task_id)
                return record is not None and (record.checkpoint or {}).get("node") == node

            await until(lambda: written_by("node-a"), within=30)
            os.kill(paused.pid, signal.SIGSTOP)  # paused past its lease...
            await until(lambda: written_by("node-b"), within=6 * LEASE)
            adopted = await store.get(task_id)
            assert adopted is not None
            assert adopted.owner == "node-b"
            assert adopted.token == 2

            os.kill(paused.pid, signal.SIGCONT)  # ...wakes up and writes: rejected
            report = await read_line(paused, within=10)
            while "fenced" not in report:
                report = await read_line(paused, within=10)
            assert report["token"] == 1
            assert "token 1 rejected" in report["fenced"]
            assert "'node-b' with token 2" in report["fenced"]

            # node-b still owns it and keeps writing; only its writes are in the store.
            record = await store.get(task_id)
            assert record is not None
            seen = record.checkpoint["write"]

            async def node_b_wrote_again() -> bool:
                latest = await store.get(task_id)
                assert latest is not None
                assert latest.checkpoint["node"] == "node-b"
                return bool(latest.checkpoint["write"] > seen)

            await until(node_b_wrote_again)
            record = await store.get(task_id)
            assert record is not None
            assert record.owner == "node-b"
            assert record.token == 2
            cancelled = await node_b.manager.cancel(task_id)
            assert cancelled.state is TaskState.CANCELLED
