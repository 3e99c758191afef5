"""RedisLock only: ``wait_replicas`` on a Sentinel set (one replica)."""

from __future__ import annotations

import asyncio

import pytest

from ai.backend.common.clients.valkey import ValkeyClient, ValkeyTarget
from ai.backend.common.lock import LockUnavailable, LockUsageError, RedisLock
from tests._harness.sentinel import RedisSentinelSet
from tests._helpers import until


@pytest.mark.sentinel
async def test_wait_replicas_on_sentinel(redis_sentinel: RedisSentinelSet) -> None:
    target = ValkeyTarget.sentinel(
        redis_sentinel.sentinels, redis_sentinel.service_name, request_timeout=2.0
    )
    await until(lambda: _replica_linked(redis_sentinel), what="the replica to be in sync")
    async with ValkeyClient(target) as client:
        # A generous wait: WAIT returns as soon as the replica acknowledged.
        async with RedisLock(client, "replicated", wait_replicas=1, wait_timeout=2.0) as lock:
            assert lock.locked
            assert redis_sentinel.replica.command("EXISTS", "lock:replicated") == 1
        unsafe = RedisLock(client, "unsafe", wait_replicas=2, timeout=2)
        with pytest.raises(LockUnavailable, match="1 of the 2 replica"):
            await unsafe.acquire()
        assert not unsafe.locked
        assert await client.execute("EXISTS", "lock:unsafe") == 0  # given back
    with pytest.raises(LockUsageError, match="wait_replicas"):
        RedisLock(client, "bad", wait_timeout=0)


async def _replica_linked(redis_sentinel: RedisSentinelSet) -> bool:
    """Whether the replica's link to the master is up (WAIT can be acknowledged)."""
    info = await asyncio.to_thread(redis_sentinel.replica.command, "INFO", "replication")
    return isinstance(info, dict) and info.get("master_link_status") == "up"
