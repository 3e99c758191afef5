"""Redis election only: a leader whose Redis dies steps down by itself."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ai.backend.common.clients.valkey import ValkeyClient, ValkeyTarget
from ai.backend.common.leader import LeadershipChange, RedisLeaderElection


@pytest.mark.redis
async def test_leader_steps_down_when_redis_dies(redis_server_factory: Any) -> None:
    server = redis_server_factory()
    changes: list[LeadershipChange] = []
    target = ValkeyTarget.from_url(server.url, request_timeout=0.2)
    async with (
        ValkeyClient(target) as client,
        RedisLeaderElection(client, "lonely", ttl=1.5) as election,
    ):
        election.add_observer(changes.append)
        async with asyncio.timeout(5):
            await election.wait_for_leadership()
        await asyncio.to_thread(server.kill)
        async with asyncio.timeout(1.5 + 3):
            await election.wait_for_step_down()
        assert not election.is_leader
        stats = election.statistics()
        assert stats.renew_failures >= 2
        assert stats.step_downs == 1
        assert "renewal(s) failed" in changes[-1].reason
        await asyncio.to_thread(server.start)
        async with asyncio.timeout(10):
            await election.wait_for_leadership()  # back when Redis is back
