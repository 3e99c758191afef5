"""Redis election only: a leader whose Redis dies steps down by itself; ``wait_replicas``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ai.backend.common.clients.valkey import ValkeyClient, ValkeyTarget
from ai.backend.common.leader import LeadershipChange, RedisLeaderElection
from tests._harness.sentinel import RedisSentinelSet
from tests._helpers import until


@pytest.mark.redis
async def test_leader_steps_down_when_redis_dies(redis_server_factory: Any) -> None:
    server = redis_server_factory()
    changes: list[tuple[float, LeadershipChange]] = []
    target = ValkeyTarget.from_url(server.url, request_timeout=0.2)
    async with (
        ValkeyClient(target) as client,
        RedisLeaderElection(client, "lonely", ttl=1.5) as election,
    ):
        # The election's clock is time.monotonic (SystemClock): valid_until is on that scale.
        election.add_observer(lambda change: changes.append((time.monotonic(), change)))
        async with asyncio.timeout(5):
            await election.wait_for_leadership()
        await asyncio.to_thread(server.kill)
        # No renewal can succeed from now on: the leadership in force ends at this instant.
        certain_until = election.valid_until
        assert certain_until > 0
        async with asyncio.timeout(1.5 + 1):
            await election.wait_for_step_down()
        assert not election.is_leader
        stepped_down_at, change = changes[-1]
        assert not change.is_leader
        assert "renewal(s) failed" in change.reason
        # It stepped down by its own count of failures, before its certainty ran out (and so
        # before the key could expire on the server), not because the clock ran out.
        assert stepped_down_at <= certain_until
        stats = election.statistics()
        assert stats.renew_failures >= 2
        assert stats.step_downs == 1
        await asyncio.to_thread(server.start)
        async with asyncio.timeout(10):
            await election.wait_for_leadership()  # back when Redis is back


@pytest.mark.sentinel
async def test_wait_replicas_on_sentinel(redis_sentinel: RedisSentinelSet) -> None:
    target = ValkeyTarget.sentinel(
        redis_sentinel.sentinels, redis_sentinel.service_name, request_timeout=2.0
    )
    await until(lambda: _replica_linked(redis_sentinel), what="the replica to be in sync")
    async with (
        ValkeyClient(target) as client,
        # the set has one replica: one acknowledgement can come, two never
        RedisLeaderElection(
            client, "replicated", ttl=1.5, wait_replicas=1, wait_timeout=0.4
        ) as replicated,
        RedisLeaderElection(client, "unsafe", name="other", ttl=1.5, wait_replicas=2) as unsafe,
    ):
        async with asyncio.timeout(5):
            await replicated.wait_for_leadership()
        await until(lambda: replicated.statistics().renewals >= 1, what="a replicated renewal")
        assert redis_sentinel.replica.command("GET", replicated.key) == "replicated"
        await until(lambda: unsafe.statistics().acquire_failures >= 2, what="refused attempts")
        assert not unsafe.is_leader
        assert unsafe.statistics().terms == 0
        assert await unsafe.current_leader() is None  # each won lease was given back
    with pytest.raises(ValueError, match="wait_replicas"):
        RedisLeaderElection(client, "bad", wait_replicas=-1)


async def _replica_linked(redis_sentinel: RedisSentinelSet) -> bool:
    """Whether the replica's link to the master is up (WAIT can be acknowledged)."""
    info = await asyncio.to_thread(redis_sentinel.replica.command, "INFO", "replication")
    return isinstance(info, dict) and info.get("master_link_status") == "up"
