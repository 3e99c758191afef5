"""Timeout: deadlines with a fake clock, cancellation semantics, no leftovers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ai.backend.common.exception import InvalidArgument, OperationTimeout
from ai.backend.common.resilience import CallTimeout, FakeClock, Timeout, TimeoutOccurred

from ._helpers import Recorder


async def forever() -> None:
    await asyncio.Event().wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_times_out_with_fake_clock() -> None:
    clock = FakeClock()
    rec = Recorder()
    timeout = Timeout(seconds=5.0, clock=clock, name="t", observers=(rec,))
    task = asyncio.create_task(timeout.call(forever))
    await clock.wait_pending(1)
    clock.advance(4.9)
    await settle()
    assert not task.done()
    clock.advance(0.1)
    with pytest.raises(CallTimeout) as info:
        await task
    err = info.value
    assert isinstance(err, TimeoutError)
    assert isinstance(err, OperationTimeout)
    assert isinstance(err.__cause__, asyncio.CancelledError)
    assert err.timeout == 5.0
    assert err.error_code().error_detail == "timeout"
    assert [e.timeout for e in rec.of(TimeoutOccurred)] == [5.0]
    assert timeout.pending_calls() == 0


async def test_each_call_gets_its_own_deadline() -> None:
    clock = FakeClock()
    timeout = Timeout(seconds=10.0, clock=clock)
    ended: dict[int, float] = {}

    async def timed(i: int) -> None:
        try:
            await timeout.call(forever)
        except CallTimeout:
            ended[i] = clock.monotonic()

    async with asyncio.TaskGroup() as tg:
        for i in range(20):
            tg.create_task(timed(i))
            await settle()
            clock.advance(1.0)  # call i starts at time i
            await settle()
        for _ in range(20):
            clock.advance(1.0)
            await settle()
    assert ended == {i: float(i + 10) for i in range(20)}
    assert timeout.pending_calls() == 0


async def test_outer_cancel_is_not_a_timeout() -> None:
    clock = FakeClock()
    timeout = Timeout(seconds=5.0, clock=clock)
    task = asyncio.create_task(timeout.call(forever))
    await clock.wait_pending(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert timeout.pending_calls() == 0

    # The deadline fires and the caller is cancelled in the same loop iteration.
    task = asyncio.create_task(timeout.call(forever))
    await settle()
    clock.advance(5.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_cancel_inside_real_timed_call_is_immediate() -> None:
    timeout = Timeout(seconds=3600.0)
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(timeout.call(work))
    await started.wait()
    task.cancel()
    async with asyncio.timeout(5):  # a deadline, not a measured duration
        with pytest.raises(asyncio.CancelledError):
            await task
    assert timeout.pending_calls() == 0


async def test_real_clock_timeout() -> None:
    timeout = Timeout(seconds=0.01)
    async with asyncio.timeout(10):
        with pytest.raises(CallTimeout):
            await timeout.call(asyncio.sleep, 3600)
    assert await timeout.call(asyncio.sleep, 0, "done") == "done"


async def test_no_leftovers() -> None:
    clock = FakeClock()
    timeout = Timeout(seconds=1.0, clock=clock)

    async def value(x: int) -> int:
        await asyncio.sleep(0)
        return x

    results = await asyncio.gather(*(timeout.call(value, i) for i in range(50)))
    assert results == list(range(50))
    with pytest.raises(ValueError):
        await timeout.call(_raise, ValueError("inner"))
    assert timeout.pending_calls() == 0
    assert asyncio.current_task() is not None
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def _raise(exc: BaseException) -> Any:
    raise exc


async def test_swallowed_cancel_returns_result() -> None:
    clock = FakeClock()
    timeout = Timeout(seconds=1.0, clock=clock)

    async def stubborn() -> str:
        try:
            await forever()
        except asyncio.CancelledError:
            return "late"
        return "never"

    task = asyncio.create_task(timeout.call(stubborn))
    await clock.wait_pending(1)
    clock.advance(1.0)
    assert await task == "late"
    assert task.cancelling() == 0


async def test_nested_timeouts_report_the_one_that_fired() -> None:
    clock = FakeClock()
    outer = Timeout(seconds=2.0, clock=clock, name="outer")
    inner = Timeout(seconds=5.0, clock=clock, name="inner")

    async def nested() -> None:
        await inner.call(forever)

    task = asyncio.create_task(outer.call(nested))
    await clock.wait_pending(2)
    clock.advance(2.0)
    with pytest.raises(CallTimeout) as info:
        await task
    assert info.value.data["policy"] == "outer"
    assert inner.pending_calls() == 0


async def test_guard_times_a_block() -> None:
    clock = FakeClock()
    timeout = Timeout(seconds=3.0, clock=clock)

    async def guarded() -> None:
        async with timeout.guard():
            await forever()

    task = asyncio.create_task(guarded())
    await clock.wait_pending(1)
    clock.advance(3.0)
    with pytest.raises(CallTimeout):
        await task
    async with timeout.guard():
        await asyncio.sleep(0)
    assert timeout.pending_calls() == 0


def test_new_loop_new_queue() -> None:
    timeout = Timeout(seconds=0.01)

    async def once() -> None:
        with pytest.raises(CallTimeout):
            await timeout.call(asyncio.sleep, 3600)
        assert await timeout.call(asyncio.sleep, 0, 1) == 1

    asyncio.run(once())
    asyncio.run(once())  # a second event loop gets its own deadline queue
    assert timeout.pending_calls() == 0


def test_invalid_seconds() -> None:
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(InvalidArgument, match="seconds"):
            Timeout(seconds=bad)


def test_outside_a_task_is_an_error() -> None:
    coro = Timeout(seconds=1.0).call(asyncio.sleep, 0)
    with pytest.raises(RuntimeError, match=r"inside an asyncio task|no running event loop"):
        coro.send(None)
    coro.close()
