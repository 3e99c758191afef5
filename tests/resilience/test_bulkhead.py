"""Bulkhead: the bound, the FIFO queue, queue timeouts and cancellation."""

from __future__ import annotations

import asyncio

import pytest

from ai.backend.common.exception import InvalidArgument
from ai.backend.common.resilience import (
    Bulkhead,
    BulkheadFull,
    CallRejected,
    FakeClock,
    RejectReason,
)

from ._helpers import Recorder


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_bound_holds_under_concurrency() -> None:
    bulkhead = Bulkhead(max_concurrent=3, max_queue=1000)
    in_flight = peak = 0

    async def work(i: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(i % 4):
            await asyncio.sleep(0)
        in_flight -= 1
        return i

    results = await asyncio.gather(*(bulkhead.call(work, i) for i in range(300)))
    assert results == list(range(300))
    assert peak == 3
    stats = bulkhead.statistics()
    assert (stats.in_flight, stats.waiting, stats.rejected) == (0, 0, 0)


async def test_fifo_and_queue_full() -> None:
    rec = Recorder()
    bulkhead = Bulkhead(max_concurrent=1, max_queue=2, name="agents", observers=(rec,))
    gate = asyncio.Event()
    order: list[str] = []

    async def work(name: str) -> str:
        order.append(name)
        await gate.wait()
        return name

    tasks = [asyncio.create_task(bulkhead.call(work, n)) for n in ("a", "b", "c")]
    await settle()
    assert bulkhead.statistics().waiting == 2
    with pytest.raises(BulkheadFull) as info:
        await bulkhead.call(work, "d")
    assert "agents" in str(info.value)
    assert rec.of(CallRejected)[0].reason is RejectReason.BULKHEAD_FULL
    gate.set()
    assert await asyncio.gather(*tasks) == ["a", "b", "c"]
    assert order == ["a", "b", "c"]
    assert bulkhead.statistics().rejected == 1


async def test_no_queue_rejects_at_once() -> None:
    bulkhead = Bulkhead(max_concurrent=1)
    gate = asyncio.Event()
    holder = asyncio.create_task(bulkhead.call(gate.wait))
    await settle()
    with pytest.raises(BulkheadFull, match="queue of 0 is full"):
        await bulkhead.call(gate.wait)
    gate.set()
    await holder


async def test_queue_timeout() -> None:
    clock = FakeClock()
    bulkhead = Bulkhead(max_concurrent=1, max_queue=5, queue_timeout=2.0, clock=clock)
    gate = asyncio.Event()
    holder = asyncio.create_task(bulkhead.call(gate.wait))
    await settle()
    waiter = asyncio.create_task(bulkhead.call(gate.wait))
    await clock.wait_pending(1)
    clock.advance(2.0)
    with pytest.raises(BulkheadFull, match=r"no slot within 2\.0s"):
        await waiter
    assert bulkhead.statistics().waiting == 0
    gate.set()
    await holder
    assert bulkhead.statistics().in_flight == 0
    assert clock.pending() == 0


async def test_cancel_releases_slot() -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queue=5)
    gate = asyncio.Event()
    running = asyncio.create_task(bulkhead.call(gate.wait))
    await settle()
    waiting = asyncio.create_task(bulkhead.call(gate.wait))
    await settle()
    waiting.cancel()  # a waiter leaves the queue
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert bulkhead.statistics().waiting == 0
    running.cancel()  # a running call gives its slot back
    with pytest.raises(asyncio.CancelledError):
        await running
    assert bulkhead.statistics().in_flight == 0
    gate.set()
    assert await bulkhead.call(gate.wait) is True


async def test_granted_then_cancelled_waiter_passes_the_slot_on() -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queue=5)
    gate = asyncio.Event()
    gate.set()
    async with bulkhead.guard():
        second = asyncio.create_task(bulkhead.call(gate.wait))
        third = asyncio.create_task(bulkhead.call(gate.wait))
        await settle()
        assert bulkhead.statistics().waiting == 2
    # Leaving the block handed the slot to `second`, which has not run yet.
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert await third is True
    stats = bulkhead.statistics()
    assert (stats.in_flight, stats.waiting) == (0, 0)


async def test_guard_holds_a_slot() -> None:
    bulkhead = Bulkhead(max_concurrent=1)
    async with bulkhead.guard():
        assert bulkhead.statistics().in_flight == 1
        with pytest.raises(BulkheadFull):
            async with bulkhead.guard():
                pass
    assert bulkhead.statistics().in_flight == 0


def test_invalid_settings_name_the_field() -> None:
    with pytest.raises(InvalidArgument, match="max_concurrent"):
        Bulkhead(max_concurrent=0)
    with pytest.raises(InvalidArgument, match="max_queue"):
        Bulkhead(max_concurrent=1, max_queue=-1)
    with pytest.raises(InvalidArgument, match="queue_timeout"):
        Bulkhead(max_concurrent=1, queue_timeout=-1.0)
