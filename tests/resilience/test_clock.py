"""FakeClock: deterministic time for the policies' tests."""

from __future__ import annotations

import asyncio

import pytest

from ai.backend.common.exception import InvalidArgument, OperationTimeout
from ai.backend.common.resilience import SYSTEM_CLOCK, Clock, FakeClock


async def test_advance_fires_in_deadline_order() -> None:
    clock = FakeClock(start=10.0)
    seen: list[tuple[str, float]] = []
    clock.call_later(3.0, lambda: seen.append(("c", clock.monotonic())))
    clock.call_later(1.0, lambda: seen.append(("a", clock.monotonic())))
    clock.call_later(2.0, lambda: seen.append(("b", clock.monotonic())))
    clock.advance(2.5)
    assert seen == [("a", 11.0), ("b", 12.0)]
    assert clock.monotonic() == 12.5
    clock.advance(0.5)
    assert seen[-1] == ("c", 13.0)
    assert clock.pending() == 0


async def test_sleepers_wake_when_time_passes() -> None:
    clock = FakeClock()
    order: list[str] = []

    async def sleeper(name: str, delay: float) -> None:
        await clock.sleep(delay)
        order.append(name)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(sleeper("late", 2.0))
        tg.create_task(sleeper("early", 1.0))
        await clock.wait_pending(2)
        clock.advance(1.0)
        await asyncio.sleep(0)
        assert order == ["early"]
        clock.advance(1.0)
    assert order == ["early", "late"]
    assert clock.sleeps == [2.0, 1.0]


async def test_cancelled_sleep_leaves_nothing() -> None:
    clock = FakeClock()
    task = asyncio.create_task(clock.sleep(5.0))
    await clock.wait_pending(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.pending() == 0
    assert clock.next_deadline() is None


async def test_timer_runs_inside_advance() -> None:
    clock = FakeClock()
    ran: list[float] = []
    handle = clock.call_later(1.0, lambda: ran.append(clock.monotonic()))
    assert clock.next_deadline() == 1.0
    assert ran == []
    clock.advance(1.0)
    assert ran == [1.0]  # synchronously, inside advance()
    handle.cancel()  # a no-op once it has run
    cancelled = clock.call_later(1.0, lambda: ran.append(-1.0))
    cancelled.cancel()
    clock.advance(5.0)
    assert ran == [1.0]


async def test_auto_advance_moves_time_on_sleep() -> None:
    clock = FakeClock(auto_advance=True)
    await clock.sleep(1.5)
    await clock.sleep(0.5)
    assert clock.monotonic() == 2.0
    assert clock.sleeps == [1.5, 0.5]


async def test_advance_rejects_negative_and_wait_pending_gives_up() -> None:
    clock = FakeClock()
    with pytest.raises(InvalidArgument, match="seconds"):
        clock.advance(-1.0)
    with pytest.raises(OperationTimeout):
        await clock.wait_pending(1, max_yields=3)


async def test_system_clock_is_a_clock() -> None:
    assert isinstance(SYSTEM_CLOCK, Clock)
    assert isinstance(FakeClock(), Clock)
    before = SYSTEM_CLOCK.monotonic()
    await SYSTEM_CLOCK.sleep(0)
    fired = asyncio.Event()
    SYSTEM_CLOCK.call_later(0, fired.set)
    async with asyncio.timeout(5):
        await fired.wait()
    assert SYSTEM_CLOCK.monotonic() >= before
