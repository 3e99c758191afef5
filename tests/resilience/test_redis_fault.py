"""Fault injection against a real Redis server: stop it, the breaker opens and fails fast;
start it again, the breaker probes and closes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ai.backend.common.resilience import (
    BreakerOpen,
    BreakerStateChanged,
    BreakerStateName,
    CircuitBreaker,
    FakeClock,
    Pipeline,
    Timeout,
)

from ._helpers import Recorder


async def test_breaker_against_stopped_redis(redis_server_factory: Callable[..., Any]) -> None:
    server = redis_server_factory()
    client = aioredis.Redis(
        host=server.host,
        port=server.port,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        retry=RedisRetry(NoBackoff(), 0),  # the pipeline decides about retries, not the client
    )
    clock = FakeClock()  # breaker time; the Redis I/O runs in real time
    rec = Recorder()
    breaker = CircuitBreaker(
        name="redis",
        window_size=4,
        minimum_calls=4,
        wait_in_open=30.0,
        half_open_calls=2,
        record_on=(RedisError, OSError, TimeoutError),
        clock=clock,
        observers=(rec,),
    )
    pipeline = Pipeline([breaker, Timeout(seconds=5.0)], dependency="redis", operation="ping")
    reached = 0

    async def ping() -> bool:
        nonlocal reached
        reached += 1
        return bool(await client.ping())

    try:
        for _ in range(4):
            assert await pipeline.call(ping) is True
        await asyncio.to_thread(server.stop)

        failures = 0
        while breaker.state is BreakerStateName.CLOSED:
            with pytest.raises((RedisError, OSError, TimeoutError)):
                await pipeline.call(ping)
            failures += 1
            assert failures <= 4
        assert failures == 2  # the window [ok, ok, failed, failed] reached the 50 % threshold
        assert breaker.state is BreakerStateName.OPEN

        before = reached
        for _ in range(50):
            with pytest.raises(BreakerOpen, match="'redis'"):
                await pipeline.call(ping)
        assert reached == before  # failing fast: the dependency is not touched

        await asyncio.to_thread(server.start)
        clock.advance(30.0)
        assert await pipeline.call(ping) is True  # probe 1
        assert breaker.statistics().state is BreakerStateName.HALF_OPEN
        assert await pipeline.call(ping) is True  # probe 2
        assert breaker.statistics().state is BreakerStateName.CLOSED
        assert [(e.old, e.new) for e in rec.of(BreakerStateChanged)] == [
            ("closed", "open"),
            ("open", "half_open"),
            ("half_open", "closed"),
        ]
        assert await client.set("after", "restart") is True
    finally:
        await client.aclose()
