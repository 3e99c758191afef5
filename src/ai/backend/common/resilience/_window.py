"""Sliding windows of call outcomes for the circuit breaker (count-based and time-based)."""

from __future__ import annotations

import abc

__all__ = ("FAILED", "SLOW", "CountWindow", "TimeWindow", "Window")

FAILED = 1
"""Outcome bit: the call failed."""
SLOW = 2
"""Outcome bit: the call was slower than the slow-call threshold."""


class Window(abc.ABC):
    """Totals over the window: ``total`` calls, of which ``failures`` failed and ``slow`` slow."""

    __slots__ = ("failures", "slow", "total")

    def __init__(self) -> None:
        self.total = 0
        self.failures = 0
        self.slow = 0

    @abc.abstractmethod
    def record(self, outcome: int, now: float) -> None:
        """Add one outcome (a combination of FAILED and SLOW bits, 0 for a fast success)."""

    def refresh(self, now: float) -> None:  # noqa: B027 - a no-op unless time expires outcomes
        """Drop what has fallen out of the window by ``now``."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget every outcome."""


class CountWindow(Window):
    """The last ``size`` outcomes, in a ring."""

    __slots__ = ("_index", "_ring", "size")

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self._ring = bytearray(size)
        self._index = 0

    def record(self, outcome: int, now: float) -> None:
        i = self._index
        old = self._ring[i]
        self._ring[i] = outcome
        self._index = i + 1 if i + 1 < self.size else 0
        if self.total < self.size:
            self.total += 1
        elif old:
            if old & FAILED:
                self.failures -= 1
            if old & SLOW:
                self.slow -= 1
        if outcome:
            if outcome & FAILED:
                self.failures += 1
            if outcome & SLOW:
                self.slow += 1

    def clear(self) -> None:
        self._ring = bytearray(self.size)
        self._index = 0
        self.total = self.failures = self.slow = 0


class TimeWindow(Window):
    """The outcomes of the last ``duration`` seconds, in ``buckets`` equal time slices."""

    __slots__ = ("_calls", "_fails", "_head", "_slows", "buckets", "width")

    def __init__(self, duration: float, buckets: int) -> None:
        super().__init__()
        self.buckets = buckets
        self.width = duration / buckets
        self._calls = [0] * buckets
        self._fails = [0] * buckets
        self._slows = [0] * buckets
        self._head: int | None = None  # slice number (now // width) of the newest bucket

    def _roll(self, now: float) -> int:
        epoch = int(now // self.width)
        head = self._head
        if head is not None and epoch <= head:
            return head % self.buckets  # same slice (or a clock that went backwards)
        n = self.buckets
        if head is None or epoch - head >= n:
            self._calls = [0] * n
            self._fails = [0] * n
            self._slows = [0] * n
            self.total = self.failures = self.slow = 0
        else:
            calls, fails, slows = self._calls, self._fails, self._slows
            for e in range(head + 1, epoch + 1):
                i = e % n
                self.total -= calls[i]
                self.failures -= fails[i]
                self.slow -= slows[i]
                calls[i] = fails[i] = slows[i] = 0
        self._head = epoch
        return epoch % n

    def record(self, outcome: int, now: float) -> None:
        i = self._roll(now)
        self._calls[i] += 1
        self.total += 1
        if outcome:
            if outcome & FAILED:
                self._fails[i] += 1
                self.failures += 1
            if outcome & SLOW:
                self._slows[i] += 1
                self.slow += 1

    def refresh(self, now: float) -> None:
        self._roll(now)

    def clear(self) -> None:
        n = self.buckets
        self._calls = [0] * n
        self._fails = [0] * n
        self._slows = [0] * n
        self.total = self.failures = self.slow = 0
        self._head = None
