"""Conformance suite of BreakerStateStore: every store must pass it (memory, and the Redis
store of the clients layer, ``ValkeyBreakerStateStore``, on a real server)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from ai.backend.common.clients.valkey import (
    ValkeyBreakerStateStore,
    ValkeyClient,
    ValkeyTarget,
)
from ai.backend.common.resilience import BreakerStateStore, FakeClock, MemoryBreakerStateStore


@dataclass(frozen=True)
class StoreCase:
    """A store and the way its time moves on."""

    store: BreakerStateStore
    advance: Callable[[float], Awaitable[None]]
    """Let this many seconds pass, as the store sees time."""
    tolerance: float
    """How far a reported remaining time may lag behind the exact value (a real server's
    clock keeps running between two calls, in whole milliseconds)."""


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def case(request: pytest.FixtureRequest) -> AsyncIterator[StoreCase]:
    if request.param == "memory":
        clock = FakeClock(start=100.0)

        async def advance_clock(seconds: float) -> None:
            clock.advance(seconds)

        yield StoreCase(MemoryBreakerStateStore(clock=clock), advance_clock, 1e-9)
        return
    redis_url: str = request.getfixturevalue("redis_url")
    async with ValkeyClient(ValkeyTarget.from_url(redis_url)) as client:
        prefix = f"test:{uuid.uuid4().hex}:"
        store = ValkeyBreakerStateStore(client, prefix=prefix)

        async def advance_server(seconds: float) -> None:
            # Moves the server's view of time for this store's keys: each mark's TTL shrinks
            # by `seconds` (or the mark goes, as it would expire), so no test sleeps.
            keys = await client.execute("KEYS", f"{prefix}*")
            for key in keys:
                left = int(await client.execute("PTTL", key)) - round(seconds * 1000)
                if left > 0:
                    await client.execute("PEXPIRE", key, left)
                else:
                    await client.execute("DEL", key)

        yield StoreCase(store, advance_server, 0.05)


def assert_remaining(case: StoreCase, value: float | None, expected: float) -> None:
    assert value is not None
    assert expected - case.tolerance <= value <= expected + 1e-9


async def test_trip_expires(case: StoreCase) -> None:
    store = case.store
    assert await store.open_remaining("a") is None
    await store.trip("a", 5.0)
    assert_remaining(case, await store.open_remaining("a"), 5.0)
    assert await store.open_remaining("b") is None
    await case.advance(5.0)
    assert await store.open_remaining("a") is None
    await store.trip("a", 5.0)
    await store.clear("a")
    assert await store.open_remaining("a") is None
    await store.clear("never-tripped")


async def test_trip_replaces(case: StoreCase) -> None:
    store = case.store
    await store.trip("a", 60.0)
    await store.trip("a", 2.0)
    assert_remaining(case, await store.open_remaining("a"), 2.0)
    await case.advance(1.0)
    assert_remaining(case, await store.open_remaining("a"), 1.0)


async def test_zero_or_negative_trip_is_not_open(case: StoreCase) -> None:
    store = case.store
    await store.trip("a", 30.0)
    await store.trip("a", 0.0)
    assert await store.open_remaining("a") is None
    await store.trip("b", -1.0)
    assert await store.open_remaining("b") is None


async def test_names_are_independent(case: StoreCase) -> None:
    store = case.store
    await store.trip("a", 10.0)
    await store.trip("b", 20.0)
    await store.clear("a")
    assert await store.open_remaining("a") is None
    assert_remaining(case, await store.open_remaining("b"), 20.0)
