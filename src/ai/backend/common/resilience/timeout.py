"""Timeout: cancel a call that outlives its time limit and raise :class:`CallTimeout`.

Per attempt or overall is a matter of position in the pipeline: a ``Timeout`` inside a
``Retry`` limits each attempt, one outside it limits the whole call (the deadline).

Instead of one event-loop timer per call (what ``asyncio.timeout`` schedules and cancels), each
``Timeout`` keeps its running calls in insertion order, which is deadline order since the limit
is the same for all, and arms a single timer for the earliest deadline. Per call this is a dict
insert and delete; the timer fires about once per time limit, not once per call.

Guarantees:
- a call still running at its deadline is cancelled and the caller gets :class:`CallTimeout`
  (also a ``TimeoutError``) chained from the ``CancelledError``
  [tests/resilience/test_timeout.py::test_times_out_with_fake_clock];
- cancelling the caller inside a timed call propagates as ``CancelledError`` at once, never as a
  timeout, even when the deadline fires at the same moment
  [tests/resilience/test_timeout.py::test_outer_cancel_is_not_a_timeout];
- a timed call leaves no task and no pending timer entry behind
  [tests/resilience/test_timeout.py::test_no_leftovers].

Limits:
- as with ``asyncio.timeout``, code that swallows the ``CancelledError`` delays the timeout
  until it returns, and then its result is returned
  [tests/resilience/test_timeout.py::test_swallowed_cancel_returns_result].
"""

from __future__ import annotations

import asyncio
import math
from asyncio import AbstractEventLoop, CancelledError
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ..exception import InvalidArgument
from .abc import Policy, Runner
from .clock import SYSTEM_CLOCK, Clock, TimerHandle
from .events import CallSite, Observer, TimeoutOccurred
from .exceptions import CallTimeout

__all__ = ("Timeout",)

_current_task = asyncio.current_task


# One timed call is a list [deadline, task, task.cancelling() at entry, fired], stored under its
# id() in the queue's dict: a list literal is several times cheaper than an instance.
_DEADLINE, _TASK, _CANCELLING, _FIRED = 0, 1, 2, 3


class _Deadlines:
    """The running calls of one Timeout on one loop, earliest deadline first."""

    __slots__ = ("calls", "clock", "timer")

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: dict[int, list[Any]] = {}  # id(call) -> call
        self.timer: TimerHandle | None = None

    def arm(self, deadline: float) -> None:
        self.timer = self.clock.call_later(deadline - self.clock.monotonic(), self.fire)

    def fire(self) -> None:
        self.timer = None
        now = self.clock.monotonic()
        expired = []
        for key, call in self.calls.items():
            if call[_DEADLINE] > now:
                self.arm(call[_DEADLINE])
                break
            expired.append(key)
        for key in expired:
            call = self.calls.pop(key)
            call[_FIRED] = True
            call[_TASK].cancel()


class _PerLoop:
    """The deadline queue of each event loop this Timeout runs on (one, nearly always)."""

    __slots__ = ("clock", "current", "others")

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        # (loop, queue) read and replaced as one tuple, so a reader never sees a mismatch.
        self.current: tuple[AbstractEventLoop | None, _Deadlines] = (None, _Deadlines(clock))
        self.others: dict[int, tuple[AbstractEventLoop, _Deadlines]] = {}

    def switch(self, loop: AbstractEventLoop) -> _Deadlines:
        old_loop, old = self.current
        if old_loop is not None and (old.calls or old.timer is not None):
            self.others[id(old_loop)] = (old_loop, old)
        kept = self.others.pop(id(loop), None)
        queue = kept[1] if kept is not None and kept[0] is loop else _Deadlines(self.clock)
        for key, (other, q) in list(self.others.items()):  # forget closed or idle loops
            if other.is_closed() or not (q.calls or q.timer is not None):
                del self.others[key]
        self.current = (loop, queue)
        return queue


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Timeout(Policy):
    """Cancel the call after ``seconds`` and raise :class:`CallTimeout`."""

    seconds: float
    """The time limit."""
    clock: Clock = SYSTEM_CLOCK
    name: str = ""
    observers: tuple[Observer, ...] = ()
    _loops: _PerLoop = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.seconds > 0 and math.isfinite(self.seconds)):
            raise InvalidArgument(
                f"seconds={self.seconds!r}: must be a finite number > 0",
                data={"field": "seconds", "value": repr(self.seconds)},
            )
        object.__setattr__(self, "observers", tuple(self.observers))
        object.__setattr__(self, "_loops", _PerLoop(self.clock))
        self._init_runner()

    def _queue(self) -> tuple[asyncio.Task[Any], _Deadlines]:
        task = _current_task()
        if task is None:
            raise RuntimeError("Timeout must be used inside an asyncio task")
        loop, queue = self._loops.current
        if loop is not task.get_loop():
            queue = self._loops.switch(task.get_loop())
        return task, queue

    def _expired(self, site: CallSite, exc: BaseException) -> CallTimeout:
        dependency, operation = site.names(self.name)
        if site.observers:
            site.emit(
                TimeoutOccurred(
                    dependency=dependency,
                    operation=operation,
                    policy=self.name,
                    timeout=self.seconds,
                )
            )
        where = f" of {dependency!r}" if dependency else ""
        op = f" ({operation})" if operation else ""
        err = CallTimeout(
            f"call{where}{op} timed out after {self.seconds}s",
            timeout=self.seconds,
            policy=self.name,
        )
        err.__cause__ = exc
        return err

    def bind(self, nxt: Runner, site: CallSite) -> Runner:
        """Wrap ``nxt`` in this time limit."""
        seconds = self.seconds
        monotonic = self.clock.monotonic
        loops = self._loops
        expired = self._expired

        async def timeout_runner(
            fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            task = _current_task()
            if task is None:
                raise RuntimeError("Timeout must be used inside an asyncio task")
            loop, queue = loops.current
            if loop is not task.get_loop():
                queue = loops.switch(task.get_loop())
            deadline = monotonic() + seconds
            call: list[Any] = [deadline, task, task.cancelling(), False]
            key = id(call)
            calls = queue.calls
            calls[key] = call
            if queue.timer is None:
                queue.arm(deadline)
            try:
                result = await nxt(fn, args, kwargs)
            except BaseException as exc:
                if not call[3]:
                    del calls[key]
                    raise
                if task.uncancel() <= call[2] and isinstance(exc, CancelledError):
                    raise expired(site, exc) from exc
                raise
            if call[3]:
                task.uncancel()
            else:
                del calls[key]
            return result

        return timeout_runner

    def guard_at(self, site: CallSite) -> _TimeoutGuard:
        """An ``async with`` guard timing one block."""
        return _TimeoutGuard(self, site)

    def pending_calls(self) -> int:
        """How many calls are being timed right now on the last loop used."""
        return len(self._loops.current[1].calls)


class _TimeoutGuard:
    __slots__ = ("_call", "_policy", "_queue", "_site")

    def __init__(self, policy: Timeout, site: CallSite) -> None:
        self._policy = policy
        self._site = site
        self._call: list[Any] | None = None

    async def __aenter__(self) -> None:
        if self._call is not None:
            raise RuntimeError("a timeout guard cannot be entered twice")
        task, queue = self._policy._queue()
        self._queue = queue
        deadline = self._policy.clock.monotonic() + self._policy.seconds
        call = self._call = [deadline, task, task.cancelling(), False]
        queue.calls[id(call)] = call
        if queue.timer is None:
            queue.arm(deadline)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        call = self._call
        assert call is not None
        if not call[_FIRED]:
            del self._queue.calls[id(call)]
            return
        if call[_TASK].uncancel() <= call[_CANCELLING] and isinstance(exc, CancelledError):
            raise self._policy._expired(self._site, exc) from exc
