"""ValkeyBreakerStateStore on a real server: key layout, expiry, errors, shared breakers.

The interface promises themselves are in tests/resilience/test_store_conformance.py.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from ai.backend.common.clients.valkey import (
    DEFAULT_BREAKER_PREFIX,
    ValkeyBreakerStateStore,
    ValkeyClient,
    ValkeyConfigError,
    ValkeyConnectionError,
    ValkeyError,
    ValkeyPoolExhausted,
    ValkeyResponseError,
    ValkeyTarget,
    ValkeyTimeout,
)
from ai.backend.common.resilience import BreakerOpen, BreakerStateName, CircuitBreaker
from tests._harness.plugin import RedisServerFactory

T = TypeVar("T")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_key_layout(redis_url: str) -> None:
    async with ValkeyClient(ValkeyTarget.from_url(redis_url)) as client:
        store = ValkeyBreakerStateStore(client, owner="node-1:42")
        assert store.key("db") == DEFAULT_BREAKER_PREFIX + "db" == "backendai:resilience:breaker:db"
        await store.trip("db", 1.2345)
        assert await client.execute("GET", store.key("db")) == b"node-1:42"
        assert 1200 < int(await client.execute("PTTL", store.key("db"))) <= math.ceil(1234.5)
        await store.clear("db")
        assert await client.execute("EXISTS", store.key("db")) == 0
        # a mark without a TTL (not ours) reads as not open
        await client.execute("SET", store.key("manual"), "x")
        assert await store.open_remaining("manual") is None
        with pytest.raises(ValkeyConfigError, match="open_for"):
            await store.trip("db", math.inf)
        with pytest.raises(ValkeyConfigError, match="request_timeout"):
            ValkeyBreakerStateStore(client, request_timeout=0)


async def test_mark_expires_on_the_server(redis_url: str) -> None:
    async with ValkeyClient(ValkeyTarget.from_url(redis_url)) as client:
        store = ValkeyBreakerStateStore(client, prefix=unique("p") + ":")
        await store.trip("db", 0.05)
        async with asyncio.timeout(10):
            while await store.open_remaining("db") is not None:  # noqa: ASYNC110 (a deadline)
                await asyncio.sleep(0.01)
        assert await client.execute("EXISTS", store.key("db")) == 0


async def test_errors_name_the_key_within_own_timeout(
    redis_server_factory: RedisServerFactory,
) -> None:
    server = redis_server_factory()
    target = ValkeyTarget.single(
        server.host, server.port, max_connections=1, request_timeout=None, connect_timeout=1
    )
    async with ValkeyClient(target) as client:
        store = ValkeyBreakerStateStore(client, request_timeout=0.05)
        # The client's own calls may wait forever; the store's give up after 0.05 s.
        blocker = asyncio.create_task(client.execute("BLPOP", "never", 0))
        try:
            async with asyncio.timeout(10):
                while client.statistics().connections_in_use < 1:  # noqa: ASYNC110 (a deadline)
                    await asyncio.sleep(0.01)
                with pytest.raises(ValkeyTimeout) as slow:
                    await store.open_remaining("db")
        finally:
            blocker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await blocker
        assert isinstance(slow.value.__cause__, ValkeyPoolExhausted)
        assert "'backendai:resilience:breaker:db'" in str(slow.value)

        await asyncio.to_thread(server.stop)
        with pytest.raises(ValkeyConnectionError) as down:
            await store.trip("db", 5.0)
        assert "trip of 'backendai:resilience:breaker:db'" in str(down.value)
        assert isinstance(down.value.__cause__, ValkeyError)  # mapped by the client, chained


async def test_store_bypasses_the_hook(redis_url: str) -> None:
    """A breaker guarding this very Redis (as the client's hook) still writes its open mark
    through a store on the same client once it has opened."""
    name = unique("redis")

    async def hook(operation: str, call: Callable[[], Awaitable[T]], /) -> T:
        return await breaker.call(call)

    client = ValkeyClient(ValkeyTarget.from_url(redis_url), hook=hook)
    store = ValkeyBreakerStateStore(client)
    breaker = CircuitBreaker(
        name=name,
        window_size=2,
        minimum_calls=2,
        record_on=(ValkeyResponseError,),
        store=store,
    )
    async with client, ValkeyClient(ValkeyTarget.from_url(redis_url)) as observer:
        for _ in range(2):  # the opening PING passed: [ok, failed] already reaches 50 %
            if breaker.state is BreakerStateName.OPEN:
                break
            with pytest.raises(ValkeyResponseError):
                await client.execute("NO-SUCH-COMMAND")
        assert breaker.state is BreakerStateName.OPEN
        with pytest.raises(BreakerOpen):
            await client.execute("PING")
        assert breaker.statistics().store_errors == 0
        assert int(await observer.execute("PTTL", store.key(name))) > 25_000


async def test_two_breakers_share_the_open_state(redis_url: str) -> None:
    """Two processes' breakers of one name, each on its own client: one opens, the other
    fails fast at its next call without touching the dependency."""
    name = unique("storage")
    calls = {"a": 0, "b": 0}

    def dependency(who: str, fail: bool) -> Callable[[], Awaitable[str]]:
        async def call() -> str:
            calls[who] += 1
            if fail:
                raise ConnectionError(f"{who}: storage down")
            return "ok"

        return call

    async with (
        ValkeyClient(ValkeyTarget.from_url(redis_url)) as client_a,
        ValkeyClient(ValkeyTarget.from_url(redis_url)) as client_b,
    ):
        a = CircuitBreaker(
            name=name,
            window_size=2,
            minimum_calls=2,
            wait_in_open=30.0,
            store=ValkeyBreakerStateStore(client_a, owner="a"),
        )
        b = CircuitBreaker(
            name=name, wait_in_open=30.0, sync_interval=0.0, store=ValkeyBreakerStateStore(client_b)
        )
        assert await b.call(dependency("b", fail=False)) == "ok"
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await a.call(dependency("a", fail=True))
        assert a.state is BreakerStateName.OPEN
        assert await client_b.execute("GET", DEFAULT_BREAKER_PREFIX + name) == b"a"

        with pytest.raises(BreakerOpen) as rejected:
            await b.call(dependency("b", fail=False))
        assert calls["b"] == 1  # failed fast: the dependency was not called again
        assert b.state is BreakerStateName.OPEN
        retry_after: Any = rejected.value.retry_after
        assert 25.0 < retry_after <= 30.0
        assert (a.statistics().store_errors, b.statistics().store_errors) == (0, 0)
