"""Conformance suite of BreakerStateStore: every store must pass it (memory here; the Redis
store of the clients layer adds itself as a parameter)."""

from __future__ import annotations

import pytest

from ai.backend.common.resilience import BreakerStateStore, FakeClock, MemoryBreakerStateStore


@pytest.fixture(params=["memory"])
def clock_and_store(request: pytest.FixtureRequest) -> tuple[FakeClock, BreakerStateStore]:
    clock = FakeClock(start=100.0)
    return clock, MemoryBreakerStateStore(clock=clock)


async def test_trip_expires(clock_and_store: tuple[FakeClock, BreakerStateStore]) -> None:
    clock, store = clock_and_store
    assert await store.open_remaining("a") is None
    await store.trip("a", 5.0)
    assert await store.open_remaining("a") == pytest.approx(5.0)
    assert await store.open_remaining("b") is None
    clock.advance(5.0)
    assert await store.open_remaining("a") is None
    await store.trip("a", 5.0)
    await store.clear("a")
    assert await store.open_remaining("a") is None
    await store.clear("never-tripped")


async def test_trip_replaces(clock_and_store: tuple[FakeClock, BreakerStateStore]) -> None:
    clock, store = clock_and_store
    await store.trip("a", 60.0)
    await store.trip("a", 2.0)
    assert await store.open_remaining("a") == pytest.approx(2.0)
    clock.advance(1.0)
    assert await store.open_remaining("a") == pytest.approx(1.0)
