"""The time source of every time-dependent policy, and a deterministic fake of it.

A :class:`Clock` reads a monotonic time, sleeps, and schedules a callback. Policies take one as
``clock=`` (default :data:`SYSTEM_CLOCK`, the running event loop), so tests drive backoff
sequences, breaker windows, waits and timeouts with :class:`FakeClock` instead of real time.

Guarantees:
- ``FakeClock.advance()`` fires due timers and wakes due sleepers in deadline order, each seeing
  ``monotonic()`` equal to its own deadline
  [tests/resilience/test_clock.py::test_advance_fires_in_deadline_order];
- a cancelled ``FakeClock.sleep()`` leaves nothing registered
  [tests/resilience/test_clock.py::test_cancelled_sleep_leaves_nothing].

Limits:
- ``FakeClock`` serves one event loop at a time; its timers run inside ``advance()``
  [tests/resilience/test_clock.py::test_timer_runs_inside_advance].
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..exception import InvalidArgument, OperationTimeout

__all__ = (
    "SYSTEM_CLOCK",
    "Clock",
    "FakeClock",
    "SystemClock",
    "TimerHandle",
)


@runtime_checkable
class TimerHandle(Protocol):
    """A scheduled callback that can be cancelled (``asyncio.TimerHandle`` is one)."""

    def cancel(self) -> None:
        """Prevent the callback from running; a no-op once it has run."""


@runtime_checkable
class Clock(Protocol):
    """Monotonic time, sleeping, and callbacks, in seconds."""

    def monotonic(self) -> float:
        """The current monotonic time; never decreases."""

    async def sleep(self, delay: float) -> None:
        """Suspend the calling task for ``delay`` seconds; cancelling it leaves nothing behind."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback()`` in the running loop after ``delay`` seconds."""


class SystemClock:
    """The real clock: ``time.monotonic``, ``asyncio.sleep`` and the running loop's timers."""

    __slots__ = ()

    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(asyncio.sleep)

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Schedule ``callback`` on the running loop."""
        return asyncio.get_running_loop().call_later(delay, callback)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK: Clock = SystemClock()
"""The clock every policy uses unless given another."""


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Timer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A manually advanced clock for deterministic tests of time-dependent policies.

    ``sleep()`` suspends until :meth:`advance` moves the time past the sleeper's deadline (or,
    with ``auto_advance=True``, moves the time itself and yields once). Every requested sleep
    delay is appended to :attr:`sleeps`.
    """

    def __init__(self, start: float = 0.0, *, auto_advance: bool = False) -> None:
        self._now = float(start)
        self._auto = auto_advance
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self.sleeps: list[float] = []
        """Every delay passed to :meth:`sleep`, in call order."""

    def monotonic(self) -> float:
        """The fake current time."""
        return self._now

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` when the fake time reaches now + ``delay``."""
        timer = _Timer(self._now + max(0.0, delay), callback)
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        return timer

    async def sleep(self, delay: float) -> None:
        """Suspend until the fake time has advanced by ``delay``."""
        self.sleeps.append(delay)
        if self._auto:
            self.advance(max(0.0, delay))
            await asyncio.sleep(0)
            return
        if delay <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_later(delay, functools.partial(_wake, fut))
        try:
            await fut
        finally:
            timer.cancel()  # a cancelled sleeper leaves no live timer behind

    def advance(self, seconds: float) -> None:
        """Move the time forward, running due timers and waking due sleepers in order."""
        if seconds < 0:
            raise InvalidArgument(
                f"FakeClock.advance(seconds={seconds!r}): must be >= 0",
                data={"field": "seconds", "value": seconds},
            )
        target = self._now + seconds
        heap = self._heap
        while heap and heap[0][0] <= target:
            when, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            self._now = max(self._now, when)
            timer.cancelled = True
            timer.callback()
        self._now = target

    def pending(self) -> int:
        """How many live (not cancelled, not fired) timers and sleepers are registered."""
        return sum(1 for _, _, t in self._heap if not t.cancelled)

    def next_deadline(self) -> float | None:
        """The earliest live timer's time, if any."""
        for when, _, timer in sorted(self._heap):
            if not timer.cancelled:
                return when
        return None

    async def wait_pending(self, count: int = 1, *, max_yields: int = 10_000) -> None:
        """Yield to the loop until at least ``count`` timers/sleepers are registered."""
        for _ in range(max_yields):
            if self.pending() >= count:
                return
            await asyncio.sleep(0)
        raise OperationTimeout(
            f"FakeClock.wait_pending(count={count}): only {self.pending()} registered "
            f"after {max_yields} loop iterations",
            data={"field": "count", "value": count},
        )

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r}, pending={self.pending()})"
