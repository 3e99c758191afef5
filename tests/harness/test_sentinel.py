"""The redis_sentinel fixture gives a working master/replica/sentinels set that fails over."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio
from redis.asyncio.sentinel import Sentinel

from tests._harness import RedisSentinelSet


def _sentinel_client(sentinel_set: RedisSentinelSet) -> Sentinel:
    return Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves __init__ untyped
        sentinel_set.sentinels,
        socket_timeout=2,
        socket_connect_timeout=2,
        decode_responses=True,
    )


WRITE_DEADLINE = 20.0


async def _set_until_it_works(client: redis.asyncio.Redis, key: str, value: str) -> None:
    """Retry a write through a Sentinel-managed client until it lands on the new master."""
    async with asyncio.timeout(WRITE_DEADLINE):
        while True:
            try:
                await client.set(key, value)
                return
            except (redis.ConnectionError, redis.ReadOnlyError, redis.TimeoutError):
                await asyncio.sleep(0.1)


async def test_sentinel_client_finds_the_master_and_writes_replicate(
    redis_sentinel: RedisSentinelSet,
) -> None:
    assert redis_sentinel.service_name == "mymaster"
    assert len(redis_sentinel.sentinels) == 3
    ports = {redis_sentinel.master.port, redis_sentinel.replica.port}
    ports |= {port for _, port in redis_sentinel.sentinels}
    assert len(ports) == 5
    assert all(s.role() == "sentinel" for s in redis_sentinel.sentinel_servers)
    assert redis_sentinel.current_master() == redis_sentinel.master.address

    sentinel = _sentinel_client(redis_sentinel)
    master = sentinel.master_for("mymaster")
    try:
        assert await sentinel.discover_master("mymaster") == redis_sentinel.master.address
        await master.set("through-sentinel", "1")
        await master.execute_command("WAIT", 1, 5000)
        assert redis_sentinel.replica.command("GET", "through-sentinel") == "1"
    finally:
        await master.aclose()
        for conn in sentinel.sentinels:
            await conn.aclose()


def test_wait_quorum(redis_sentinel: RedisSentinelSet) -> None:
    redis_sentinel.wait_quorum()
    for server in redis_sentinel.sentinel_servers:
        assert str(server.command("SENTINEL", "CKQUORUM", "mymaster")).startswith("OK")
        assert len(server.command("SENTINEL", "SENTINELS", "mymaster")) == 2


@pytest.mark.slow
async def test_failover_promotes_the_replica(redis_sentinel: RedisSentinelSet) -> None:
    old_master, old_replica = redis_sentinel.master, redis_sentinel.replica
    new_master = await asyncio.to_thread(redis_sentinel.failover)
    assert new_master is old_replica
    assert redis_sentinel.master is old_replica
    assert redis_sentinel.replica is old_master
    assert redis_sentinel.current_master() == old_replica.address
    assert old_replica.role() == "master"

    sentinel = _sentinel_client(redis_sentinel)
    master = sentinel.master_for("mymaster")
    try:
        await _set_until_it_works(master, "after-failover", "1")
        assert old_replica.command("GET", "after-failover") == "1"
    finally:
        await master.aclose()
        for conn in sentinel.sentinels:
            await conn.aclose()


@pytest.mark.slow
async def test_killing_the_master_fails_over(redis_sentinel: RedisSentinelSet) -> None:
    old_replica = redis_sentinel.replica
    killed = await asyncio.to_thread(redis_sentinel.kill_master)
    assert not killed.is_running()
    new_master = await asyncio.to_thread(redis_sentinel.wait_new_master)
    assert new_master is old_replica
    assert redis_sentinel.current_master() == old_replica.address

    sentinel = _sentinel_client(redis_sentinel)
    master = sentinel.master_for("mymaster")
    try:
        await _set_until_it_works(master, "after-kill", "1")
        assert old_replica.command("GET", "after-kill") == "1"
    finally:
        await master.aclose()
        for conn in sentinel.sentinels:
            await conn.aclose()
