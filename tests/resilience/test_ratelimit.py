"""RateLimiter: the rate bound, waiting in order, rejection, cancellation."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai.backend.common.exception import InvalidArgument
from ai.backend.common.resilience import (
    CallRejected,
    FakeClock,
    RateLimited,
    RateLimiter,
    RejectReason,
)

from ._helpers import Recorder


async def noop() -> None:
    return None


async def try_call(limiter: RateLimiter) -> bool:
    try:
        await limiter.call(noop)
    except RateLimited:
        return False
    return True


@settings(max_examples=50, deadline=None)
@given(
    rate=st.integers(1, 20),
    gaps=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=60),
)
def test_admits_at_most_rate(rate: int, gaps: list[float]) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        limiter = RateLimiter(rate=rate, period=1.0, clock=clock)
        admitted: list[float] = []
        for gap in gaps:
            clock.advance(gap)
            if await try_call(limiter):
                admitted.append(clock.monotonic())
        # Over any interval [t0, t1]: at most burst + rate * (t1 - t0) admissions.
        for i, t0 in enumerate(admitted):
            for j in range(i, len(admitted)):
                assert j - i + 1 <= rate + rate * (admitted[j] - t0) + 1e-9

    asyncio.run(scenario())


async def test_rejects_with_retry_after() -> None:
    clock = FakeClock()
    rec = Recorder()
    limiter = RateLimiter(rate=2, period=1.0, clock=clock, name="api", observers=(rec,))
    assert await try_call(limiter)
    assert await try_call(limiter)
    with pytest.raises(RateLimited) as info:
        await limiter.call(noop)
    assert info.value.retry_after == pytest.approx(0.5)
    assert info.value.status_code == 429
    assert "api" in str(info.value)
    assert rec.of(CallRejected)[0].reason is RejectReason.RATE_LIMITED
    clock.advance(0.5)
    assert await try_call(limiter)
    stats = limiter.statistics()
    assert (stats.tokens, stats.burst, stats.rejected) == (0.0, 2.0, 1)


async def test_waits_in_order() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, period=1.0, max_wait=10.0, clock=clock)
    order: list[tuple[int, float]] = []

    async def call(i: int) -> None:
        await limiter.call(noop)
        order.append((i, clock.monotonic()))

    async with asyncio.TaskGroup() as tg:
        for i in range(4):
            tg.create_task(call(i))
        await clock.wait_pending(3)
        for _ in range(3):
            clock.advance(1.0)
            await asyncio.sleep(0)
    assert order == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0)]


async def test_cancelled_waiter_returns_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, period=1.0, max_wait=5.0, clock=clock)
    assert await try_call(limiter)
    waiter = asyncio.create_task(limiter.call(noop))
    await clock.wait_pending(1)
    assert limiter.available() == pytest.approx(-1.0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.available() == pytest.approx(0.0)
    assert clock.pending() == 0


async def test_guard_takes_a_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=1, clock=clock)
    async with limiter.guard():
        pass
    with pytest.raises(RateLimited):
        async with limiter.guard():
            pass


def test_invalid_settings_name_the_field() -> None:
    with pytest.raises(InvalidArgument, match="rate"):
        RateLimiter(rate=0)
    with pytest.raises(InvalidArgument, match="period"):
        RateLimiter(rate=1, period=0)
    with pytest.raises(InvalidArgument, match="burst"):
        RateLimiter(rate=1, burst=0.5)
    with pytest.raises(InvalidArgument, match="max_wait"):
        RateLimiter(rate=1, max_wait=-1)
