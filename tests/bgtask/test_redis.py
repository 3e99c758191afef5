"""What only the Redis task store does: keys, retention to zero keys, cross-node cancel, errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from ai.backend.common.bgtask import (
    Lease,
    ProgressReporter,
    TaskId,
    TaskOutcome,
    TaskState,
    TaskStoreUnavailable,
)
from ai.backend.common.bgtask.redis import RedisTaskStore
from ai.backend.common.clients.valkey import ValkeyTarget
from ai.backend.common.exception import InvalidArgument
from tests._helpers import until

from ._node import REGISTRY, Steps, open_node

LEASE = 2.0


async def scan(client: aioredis.Redis, pattern: str) -> list[str]:
    return sorted([key async for key in client.scan_iter(match=pattern, count=1000)])


@pytest.mark.parametrize("tasks", [300, pytest.param(10_000, marks=pytest.mark.slow)])
async def test_no_key_left_after_retention(redis_url: str, tasks: int) -> None:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=None, decode_responses=True)
    try:
        # The sweep is left to this test (the same call the sweep loop makes), so that every key
        # can be counted first; retention is 1 s.
        async with open_node(
            redis_url, "node-a", LEASE, retention=1.0, sweep_interval=3600.0
        ) as node:
            manager = node.manager
            ids: list[TaskId] = []
            for start in range(0, tasks, 250):
                batch = [
                    manager.start("fragile", {"steps": 0}, tags=[f"batch:{start}", "all"])
                    for _ in range(min(250, tasks - start))
                ]
                ids.extend(await asyncio.gather(*batch))
            assert len(set(ids)) == tasks

            await until(lambda: manager.statistics().finished == tasks, within=120)
            await until(lambda: manager.statistics().owned == 0)
            assert len(await manager.list_tasks(tag="all", states=[TaskState.SUCCEEDED])) == tasks
            # Every task left its hash, its index entries and its cached event behind so far.
            assert len(await scan(client, "bgtask:t:*")) == tasks
            assert len(await scan(client, "bgtask.*")) == tasks

            async def nothing_left() -> bool:
                await manager.purge_expired()
                return await scan(client, "bgtask*") == []

            await until(nothing_left, within=60, interval=0.2)
            assert await manager.list_tasks(tag="all") == []
    finally:
        await client.aclose()


async def test_cancel_from_second_node(redis_url: str) -> None:
    seen: list[str] = []
    started = asyncio.Event()

    async def blocked(reporter: ProgressReporter) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async with (
        open_node(redis_url, "node-a", LEASE) as node_a,
        open_node(redis_url, "node-b", LEASE) as node_b,
    ):
        task_id = await node_a.manager.start_coroutine(blocked, name="blocked")
        await started.wait()
        requested = await node_b.manager.cancel(task_id)
        assert requested.cancel_requested
        assert requested.owner == "node-a"

        async def cancelled() -> bool:
            record = await node_b.store.get(task_id)
            return record is not None and record.state is TaskState.CANCELLED

        await until(cancelled)
        assert seen == ["cancelled"]
        record = await node_b.manager.get(task_id)
        assert record.message == "cancelled on request"
        assert record.error_code == "bgtask_execute_canceled"


async def test_handover_between_nodes(redis_url: str) -> None:
    release = asyncio.Event()

    async with open_node(redis_url, "node-b", LEASE) as node_b:
        async with open_node(redis_url, "node-a", LEASE, adopt=False) as node_a:
            task_id = await node_a.manager.start("count", {"steps": 1000})

            async def progressing() -> bool:
                record = await node_a.store.get(task_id)
                return record is not None and record.current >= 2

            await until(progressing)
        # node-a closed with the default policy (hand over): node-b resumes it without
        # waiting for a lease to expire.
        record = await node_b.manager.wait(task_id, poll_interval=0.05)
        release.set()
        assert record.state is TaskState.SUCCEEDED
        assert record.owner == "node-b"
        assert record.run_count == 2
        assert record.message is not None
        assert record.message.startswith("resumed on")  # both nodes live in this process


def test_cluster_target_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="Cluster"):
        RedisTaskStore(ValkeyTarget.cluster(["127.0.0.1:7000"]))


async def test_unreachable_store_raises_unavailable(
    redis_server_factory: Callable[..., object],
) -> None:
    server = redis_server_factory()
    target = ValkeyTarget.from_url(server.url, request_timeout=1.0)  # type: ignore[attr-defined]
    async with RedisTaskStore(target) as store:
        task_id = TaskId(uuid.uuid4())
        await store.create(task_id, "job", owner="a", lease_ttl=1.0, retention=1.0)
        server.stop()  # type: ignore[attr-defined]
        with pytest.raises(TaskStoreUnavailable) as caught:
            await store.get(task_id)
        assert caught.value.__cause__ is not None


def test_registry_is_shared_by_the_crash_tests() -> None:
    assert {d.name for d in REGISTRY} >= {"count", "fragile", "writer"}
    assert Steps().steps == 100


async def test_zero_retention_without_slack_returns_the_record(redis_url: str) -> None:
    # retention 0 and expiry_slack 0: the hash's TTL is 0, so Redis deletes it inside the
    # finish script; the reply must still carry the record.
    async with RedisTaskStore(ValkeyTarget.from_url(redis_url), expiry_slack=0.0) as store:
        task_id = TaskId(uuid.uuid4())
        await store.create(task_id, "job", owner="a", lease_ttl=10.0, retention=0.0, tags=["z"])
        final = await store.finish(Lease(task_id, "a", 1), TaskOutcome(TaskState.SUCCEEDED))
        assert final.task_id == task_id
        assert final.state is TaskState.SUCCEEDED
        assert await store.get(task_id) is None  # gone with its TTL at once
        assert await store.purge() == 1  # which leaves the index entries to the purge
        assert await store.list_tasks(tag="z") == []
        assert await store.list_tasks(owner="a") == []
