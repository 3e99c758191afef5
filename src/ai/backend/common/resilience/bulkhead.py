"""Bulkhead: bound the calls in flight, with an optional FIFO wait queue and queue timeout.

Guarantees:
- never more than ``max_concurrent`` calls in flight, under any concurrency
  [tests/resilience/test_bulkhead.py::test_bound_holds_under_concurrency];
- waiters get slots in arrival order; with a full queue a call fails at once with
  :class:`BulkheadFull` [tests/resilience/test_bulkhead.py::test_fifo_and_queue_full];
- a waiter that times out (``queue_timeout``) gets :class:`BulkheadFull`
  [tests/resilience/test_bulkhead.py::test_queue_timeout];
- a cancelled call, waiting or running, releases or never takes its slot
  [tests/resilience/test_bulkhead.py::test_cancel_releases_slot].
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ..exception import InvalidArgument
from .abc import Policy, Runner
from .clock import SYSTEM_CLOCK, Clock
from .events import CallRejected, CallSite, Observer, RejectReason
from .exceptions import BulkheadFull

__all__ = ("Bulkhead", "BulkheadStatistics")


@dataclass(frozen=True, slots=True)
class BulkheadStatistics:
    """A snapshot of a bulkhead."""

    in_flight: int
    """Calls holding a slot."""
    waiting: int
    """Calls queued for a slot."""
    max_concurrent: int
    max_queue: int
    rejected: int
    """Calls refused (queue full or queue timeout) since the bulkhead was built."""


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)  # the waiter gives up: queue timeout


class _State:
    __slots__ = ("active", "rejected", "waiters")

    def __init__(self) -> None:
        self.active = 0
        self.rejected = 0
        self.waiters: deque[asyncio.Future[bool]] = deque()


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Bulkhead(Policy):
    """At most ``max_concurrent`` calls at once; up to ``max_queue`` more wait for a slot."""

    max_concurrent: int
    max_queue: int = 0
    """Calls allowed to wait for a slot (0: reject at once when full)."""
    queue_timeout: float | None = None
    """Seconds a call may wait in the queue (``None``: as long as it takes)."""
    clock: Clock = SYSTEM_CLOCK
    name: str = ""
    observers: tuple[Observer, ...] = ()
    _st: _State = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for fname, low in (("max_concurrent", 1), ("max_queue", 0)):
            value = getattr(self, fname)
            if not (isinstance(value, int) and value >= low):
                raise InvalidArgument(
                    f"{fname}={value!r}: must be an integer >= {low}",
                    data={"field": fname, "value": repr(value)},
                )
        qt = self.queue_timeout
        if qt is not None and not (qt >= 0 and math.isfinite(qt)):
            raise InvalidArgument(
                f"queue_timeout={qt!r}: must be None or a finite number >= 0",
                data={"field": "queue_timeout", "value": repr(qt)},
            )
        object.__setattr__(self, "observers", tuple(self.observers))
        object.__setattr__(self, "_st", _State())
        self._init_runner()

    def statistics(self) -> BulkheadStatistics:
        """Slots in use, waiters, limits and rejections."""
        st = self._st
        return BulkheadStatistics(
            st.active, len(st.waiters), self.max_concurrent, self.max_queue, st.rejected
        )

    def _reject(self, site: CallSite, why: str) -> BulkheadFull:
        self._st.rejected += 1
        dependency, operation = site.names(self.name)
        if site.observers:
            site.emit(
                CallRejected(
                    dependency=dependency,
                    operation=operation,
                    policy=self.name,
                    reason=RejectReason.BULKHEAD_FULL,
                )
            )
        label = f"bulkhead {self.name!r}" if self.name else "bulkhead"
        return BulkheadFull(
            f"{label} is full ({self.max_concurrent} in flight): {why}",
            policy=self.name,
            data={"max_concurrent": self.max_concurrent, "max_queue": self.max_queue},
        )

    async def _wait(self, site: CallSite) -> None:
        """Queue for a slot (the fast path has already failed)."""
        st = self._st
        if len(st.waiters) >= self.max_queue:
            raise self._reject(site, f"queue of {self.max_queue} is full")
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        st.waiters.append(fut)
        timer = None
        if self.queue_timeout is not None:
            timer = self.clock.call_later(self.queue_timeout, functools.partial(_expire, fut))
        try:
            granted = await fut
        except BaseException:
            if fut.done() and not fut.cancelled() and fut.result():
                self._release()  # granted a slot, then cancelled before using it
            elif fut in st.waiters:
                st.waiters.remove(fut)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if not granted:
            if fut in st.waiters:
                st.waiters.remove(fut)
            raise self._reject(site, f"no slot within {self.queue_timeout}s")

    def _release(self) -> None:
        st = self._st
        waiters = st.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(True)  # hand the slot over: active stays the same
                return
        st.active -= 1

    def bind(self, nxt: Runner, site: CallSite) -> Runner:
        """Wrap ``nxt``: take a slot (or wait, or fail), call, release the slot."""
        st = self._st
        limit = self.max_concurrent
        wait = self._wait
        release = self._release

        async def bulkhead_runner(
            fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            if st.active < limit and not st.waiters:
                st.active += 1
            else:
                await wait(site)
            try:
                return await nxt(fn, args, kwargs)
            finally:
                release()

        return bulkhead_runner

    def guard_at(self, site: CallSite) -> _BulkheadGuard:
        """An ``async with`` guard holding one slot for the block."""
        return _BulkheadGuard(self, site)


class _BulkheadGuard:
    __slots__ = ("_bulkhead", "_held", "_site")

    def __init__(self, bulkhead: Bulkhead, site: CallSite) -> None:
        self._bulkhead = bulkhead
        self._site = site
        self._held = False

    async def __aenter__(self) -> None:
        if self._held:
            raise RuntimeError("a bulkhead guard cannot be entered twice")
        b = self._bulkhead
        st = b._st
        if st.active < b.max_concurrent and not st.waiters:
            st.active += 1
        else:
            await b._wait(self._site)
        self._held = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bulkhead._release()
