"""Circuit breaker: stop calling a failing dependency, probe it, and resume when it recovers.

States: ``closed`` (calls pass; outcomes fill a sliding window), ``open`` (calls fail fast with
:class:`BreakerOpen` until ``wait_in_open`` has elapsed), ``half_open`` (exactly
``half_open_calls`` probe calls are admitted; their outcomes close or re-open the breaker), and
the manual ``forced_open`` and ``disabled``. The window is count-based (the last ``window_size``
calls) or time-based (the calls of the last ``window_size`` seconds, rolled in
``window_buckets`` slices). The breaker opens when, with at least ``minimum_calls`` in the
window, the failure rate or the slow-call rate reaches its threshold. Transitions are lazy: an
open breaker becomes half-open at the first call after its wait, so no timer or task exists.

Admission and recording are synchronous (no ``await`` between reading and updating the state),
so asyncio tasks cannot interleave inside them and no lock is needed. A result is recorded only
in the state generation in which its call was admitted: a call admitted while closed that ends
after the breaker opened does not count as a probe.

Guarantees:
- under any number of concurrent callers, at most ``half_open_calls`` probes are in flight and
  exactly ``half_open_calls`` reach the dependency before the breaker decides
  [tests/resilience/test_breaker.py::test_half_open_admits_exactly_n];
- the breaker opens when the failure rate over the window reaches the threshold, not before
  ``minimum_calls`` [tests/resilience/test_breaker.py::test_opens_on_failure_rate];
- old outcomes roll out of a time window [tests/resilience/test_breaker.py::test_time_window_rolls];
- after every recorded outcome a closed breaker has fewer than ``minimum_calls`` calls or rates
  below both thresholds, in either kind of window
  [tests/resilience/test_breaker.py::test_closed_breaker_stays_below_thresholds_property];
- in a time window, successes rolling out raise the rate, and the next outcome, even a success,
  opens the breaker
  [tests/resilience/test_breaker.py::test_time_window_opens_when_successes_roll_out];
- an open breaker fails fast with :class:`BreakerOpen` naming it, and half-opens after the wait
  [tests/resilience/test_breaker.py::test_open_fails_fast_then_half_opens];
- a cancelled call is not counted, and a cancelled probe frees its probe slot
  [tests/resilience/test_breaker.py::test_cancelled_probe_frees_slot];
- window counts are never negative and never exceed the window
  [tests/resilience/test_breaker.py::test_window_counts_property];
- a manual ``force_open()``, ``disable()`` or ``reset()`` reaches the breaker's own observers
  and those of every pipeline it was bound into, each observer once, labelled by the first
  place that observer was attached in (the breaker, else the innermost pipeline around it)
  [tests/resilience/test_breaker.py::test_manual_transition_reaches_every_observer_once];
- with a :class:`BreakerStateStore`, a breaker opened in one place opens its peers at their next
  sync [tests/resilience/test_breaker.py::test_shared_store_opens_peer];
- against a real Redis that is stopped and restarted, the breaker opens, fails fast, probes and
  closes again [tests/resilience/test_redis_fault.py::test_breaker_against_stopped_redis].

Limits:
- the window is judged when an outcome is recorded, not as time passes: once old successes have
  rolled out of a time window, one more call is admitted and its outcome opens the breaker
  [tests/resilience/test_breaker.py::test_time_window_judges_at_the_next_outcome];
- an automatic transition happens inside a call and reaches the observers of that call's
  pipeline only; another pipeline holding the same breaker sees it as rejected calls
  [tests/resilience/test_breaker.py::test_automatic_transition_reaches_the_calling_pipeline];
- a probe that never returns keeps the breaker half-open: put a :class:`Timeout` inside it
  [tests/resilience/test_breaker.py::test_hung_probe_holds_half_open];
- store errors are counted in ``statistics().store_errors`` and otherwise ignored; the breaker
  keeps working on its local state [tests/resilience/test_breaker.py::test_store_errors_ignored].
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ..exception import InvalidArgument
from ._window import FAILED, SLOW, CountWindow, TimeWindow, Window
from .abc import Policy, Runner
from .clock import SYSTEM_CLOCK, Clock
from .events import BreakerStateChanged, CallRejected, CallSite, Observer, RejectReason, _emit
from .exceptions import BreakerOpen
from .retry import ExceptionTypes
from .store import BreakerStateStore

__all__ = (
    "BreakerStateName",
    "BreakerStatistics",
    "CircuitBreaker",
    "WindowKind",
)

log = logging.getLogger(__name__)


class BreakerStateName(enum.StrEnum):
    """The state of a circuit breaker."""

    CLOSED = "closed"
    """Calls pass and are recorded."""
    OPEN = "open"
    """Calls fail fast until the wait in open has elapsed."""
    HALF_OPEN = "half_open"
    """A fixed number of probe calls pass; the rest fail fast."""
    FORCED_OPEN = "forced_open"
    """Manually opened: every call fails fast until ``reset()``."""
    DISABLED = "disabled"
    """Manually disabled: every call passes, nothing is recorded, until ``reset()``."""


class WindowKind(enum.StrEnum):
    """How the closed-state window is measured."""

    COUNT = "count"
    """The last ``window_size`` calls."""
    TIME = "time"
    """The calls of the last ``window_size`` seconds."""


_CLOSED = BreakerStateName.CLOSED
_OPEN = BreakerStateName.OPEN
_HALF_OPEN = BreakerStateName.HALF_OPEN
_FORCED_OPEN = BreakerStateName.FORCED_OPEN
_DISABLED = BreakerStateName.DISABLED
_IGNORE = -1  # outcome of an error that is neither success nor failure
_NO_SITE = CallSite()  # a transition that notifies nobody through a call site


@dataclass(frozen=True, slots=True)
class BreakerStatistics:
    """A snapshot of a circuit breaker."""

    state: BreakerStateName
    calls: int
    """Calls in the closed-state window."""
    failures: int
    slow_calls: int
    failure_rate: float
    """``failures / calls`` (0.0 with no calls)."""
    slow_call_rate: float
    probes_in_flight: int
    """Half-open probes admitted and not yet finished."""
    rejected: int
    """Calls refused since the breaker was built."""
    store_errors: int
    """Failed reads or writes of the shared state store."""


class _State:
    """The mutable runtime state of one breaker, shared by all runners bound from it."""

    __slots__ = (
        "generation",
        "next_sync",
        "open_until",
        "probe_done",
        "probe_failures",
        "probe_slow",
        "probes_left",
        "rejected",
        "state",
        "store_errors",
        "watchers",
        "window",
    )

    def __init__(self, window: Window) -> None:
        self.state = _CLOSED
        self.generation = 0
        self.window = window
        self.open_until = 0.0
        self.probes_left = 0
        self.probe_done = 0
        self.probe_failures = 0
        self.probe_slow = 0
        self.next_sync = -math.inf
        self.rejected = 0
        self.store_errors = 0
        # Every observer of every call site this breaker was bound into, by identity, with the
        # first site it came with (whose names label the events of manual transitions).
        self.watchers: dict[int, tuple[Observer, CallSite]] = {}


def _bad(field_name: str, value: object, rule: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field_name}={value!r}: {rule}", data={"field": field_name, "value": repr(value)}
    )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class CircuitBreaker(Policy):
    """A circuit breaker named ``name``; its state is shared by every pipeline holding it."""

    name: str
    """Names the breaker in errors, events and the shared store."""
    failure_rate_threshold: float = 0.5
    """Open when ``failures / calls`` reaches this (0 < x <= 1)."""
    slow_call_rate_threshold: float = 1.0
    """Open when ``slow calls / calls`` reaches this (0 < x <= 1)."""
    slow_call_duration: float | None = None
    """Seconds after which a call counts as slow; ``None`` disables slow-call tracking."""
    window: WindowKind | str = WindowKind.COUNT
    window_size: float = 100
    """Calls (count window) or seconds (time window)."""
    window_buckets: int = 10
    """Slices of a time window; outcomes roll out one slice at a time."""
    minimum_calls: int = 10
    """No decision before this many calls are in the window."""
    wait_in_open: float = 30.0
    """Seconds an open breaker fails fast before half-opening."""
    half_open_calls: int = 1
    """Probe calls admitted in half-open; all must finish before the breaker decides."""
    record_on: ExceptionTypes = (Exception,)
    """Errors that count as failures."""
    ignore_on: ExceptionTypes = ()
    """Errors that count neither as failure nor success."""
    store: BreakerStateStore | None = None
    """Shares the open state with breakers of the same name elsewhere."""
    sync_interval: float = 1.0
    """Seconds between reads of the store while closed."""
    clock: Clock = SYSTEM_CLOCK
    observers: tuple[Observer, ...] = ()
    _st: _State = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise _bad("name", self.name, "a circuit breaker needs a non-empty name")
        for fname in ("failure_rate_threshold", "slow_call_rate_threshold"):
            value = getattr(self, fname)
            if not 0 < value <= 1:
                raise _bad(fname, value, "must be in (0, 1]")
        if self.slow_call_duration is not None and not self.slow_call_duration > 0:
            raise _bad("slow_call_duration", self.slow_call_duration, "must be None or > 0")
        kind = WindowKind(self.window)
        object.__setattr__(self, "window", kind)
        if kind is WindowKind.COUNT:
            if not (isinstance(self.window_size, int) and self.window_size >= 1):
                raise _bad("window_size", self.window_size, "must be an integer >= 1 (calls)")
            window: Window = CountWindow(self.window_size)
        else:
            if not (self.window_size > 0 and math.isfinite(self.window_size)):
                raise _bad("window_size", self.window_size, "must be a finite number > 0 (s)")
            if not (isinstance(self.window_buckets, int) and self.window_buckets >= 1):
                raise _bad("window_buckets", self.window_buckets, "must be an integer >= 1")
            window = TimeWindow(float(self.window_size), self.window_buckets)
        for fname in ("minimum_calls", "half_open_calls"):
            value = getattr(self, fname)
            if not (isinstance(value, int) and value >= 1):
                raise _bad(fname, value, "must be an integer >= 1")
        for fname in ("wait_in_open", "sync_interval"):
            value = getattr(self, fname)
            if not (value >= 0 and math.isfinite(value)):
                raise _bad(fname, value, "must be a finite number >= 0")
        for fname in ("record_on", "ignore_on"):
            types = getattr(self, fname)
            if isinstance(types, type):
                types = (types,)
                object.__setattr__(self, fname, types)
            if not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
                raise _bad(fname, types, "must be a tuple of exception types")
        object.__setattr__(self, "observers", tuple(self.observers))
        object.__setattr__(self, "_st", _State(window))
        self._init_runner()

    # -- inspection and manual control -------------------------------------------------------

    @property
    def state(self) -> BreakerStateName:
        """The current state (an open breaker turns half-open at the first call after its wait)."""
        return self._st.state

    def statistics(self) -> BreakerStatistics:
        """Window counts, rates, probes in flight, rejections and store errors."""
        st = self._st
        w = st.window
        w.refresh(self.clock.monotonic())
        total = w.total
        in_flight = 0
        if st.state is _HALF_OPEN:
            in_flight = self.half_open_calls - st.probes_left - st.probe_done
        return BreakerStatistics(
            state=st.state,
            calls=total,
            failures=w.failures,
            slow_calls=w.slow,
            failure_rate=w.failures / total if total else 0.0,
            slow_call_rate=w.slow / total if total else 0.0,
            probes_in_flight=in_flight,
            rejected=st.rejected,
            store_errors=st.store_errors,
        )

    def force_open(self) -> None:
        """Open the breaker until :meth:`reset` (local to this process)."""
        self._set_manually(_FORCED_OPEN)

    def disable(self) -> None:
        """Let every call pass unrecorded until :meth:`reset` (local to this process)."""
        self._set_manually(_DISABLED)

    def reset(self) -> None:
        """Close the breaker and forget the window (local to this process)."""
        self._set_manually(_CLOSED)

    def _set_manually(self, new: BreakerStateName) -> None:
        """Change state outside any call; tell every observer of every bound site, once each."""
        old = self._st.state
        self._set(new, "manual", _NO_SITE)
        events: dict[int, BreakerStateChanged] = {}  # one event per site, by identity
        for observer, site in tuple(self._st.watchers.values()):
            event = events.get(id(site))
            if event is None:
                dependency, operation = site.names(self.name)
                event = events[id(site)] = BreakerStateChanged(
                    dependency=dependency,
                    operation=operation,
                    policy=self.name,
                    old=old.value,
                    new=new.value,
                    cause="manual",
                )
            _emit((observer,), event)

    def _watch(self, site: CallSite) -> None:
        """Remember the observers of a site this breaker is bound into (for manual changes)."""
        watchers = self._st.watchers
        for observer in site.observers:
            watchers.setdefault(id(observer), (observer, site))

    # -- state machine (synchronous: no await between a read and its update) -----------------

    def _set(self, new: BreakerStateName, cause: str, site: CallSite) -> None:
        st = self._st
        old = st.state
        st.state = new
        st.generation += 1
        now = self.clock.monotonic()
        if new is _OPEN:
            st.open_until = now + self.wait_in_open
        elif new is _HALF_OPEN:
            st.probes_left = self.half_open_calls
            st.probe_done = st.probe_failures = st.probe_slow = 0
        st.window.clear()
        if site.observers:
            dependency, operation = site.names(self.name)
            site.emit(
                BreakerStateChanged(
                    dependency=dependency,
                    operation=operation,
                    policy=self.name,
                    old=old.value,
                    new=new.value,
                    cause=cause,
                )
            )

    def _admit(self, site: CallSite) -> int:
        """Admit a call or raise BreakerOpen; returns the generation to record under."""
        st = self._st
        state = st.state
        if state is _CLOSED:
            return st.generation
        if state is _DISABLED:
            return -1
        retry_after: float | None = None
        if state is _OPEN:
            now = self.clock.monotonic()
            if now >= st.open_until:
                self._set(_HALF_OPEN, "wait_elapsed", site)
                state = _HALF_OPEN
            else:
                retry_after = st.open_until - now
        if state is _HALF_OPEN and st.probes_left > 0:
            st.probes_left -= 1
            return st.generation
        st.rejected += 1
        dependency, operation = site.names(self.name)
        if site.observers:
            site.emit(
                CallRejected(
                    dependency=dependency,
                    operation=operation,
                    policy=self.name,
                    reason=RejectReason.BREAKER_OPEN,
                )
            )
        more = f"; retry after {retry_after:.3f}s" if retry_after is not None else ""
        raise BreakerOpen(
            f"circuit breaker {self.name!r} is {st.state.value}{more}",
            policy=self.name,
            retry_after=retry_after,
            data={"breaker": self.name, "state": st.state.value},
        )

    async def _admit_async(self, site: CallSite) -> int:
        """Admit, first reading the shared store when a sync is due."""
        store = self.store
        if store is not None and self.clock.monotonic() >= self._st.next_sync:
            await self._sync(store, site)
        return self._admit(site)

    async def _sync(self, store: BreakerStateStore, site: CallSite) -> None:
        st = self._st
        st.next_sync = self.clock.monotonic() + self.sync_interval
        try:
            remaining = await store.open_remaining(self.name)
        except Exception:
            st.store_errors += 1
            log.warning("breaker %r: reading the state store failed", self.name, exc_info=True)
            return
        if remaining is not None and remaining > 0 and st.state is _CLOSED:
            self._set(_OPEN, "shared", site)
            st.open_until = self.clock.monotonic() + remaining

    async def _publish(self, opened: bool) -> None:
        store = self.store
        if store is None:
            return
        try:
            if opened:
                await store.trip(self.name, self.wait_in_open)
            else:
                await store.clear(self.name)
        except Exception:
            self._st.store_errors += 1
            log.warning("breaker %r: writing the state store failed", self.name, exc_info=True)

    def _classify(self, exc: BaseException) -> int:
        if isinstance(exc, self.ignore_on) or not isinstance(exc, self.record_on):
            return _IGNORE
        return FAILED

    def _record(self, gen: int, outcome: int, started: float, site: CallSite) -> bool | None:
        """Record one outcome; returns True/False when the breaker opened/closed, else None."""
        st = self._st
        if gen != st.generation:
            return None  # admitted in an earlier state, or disabled (gen == -1)
        now = self.clock.monotonic()
        slow_after = self.slow_call_duration
        if outcome != _IGNORE and slow_after is not None and now - started >= slow_after:
            outcome |= SLOW
        state = st.state
        if state is _CLOSED:
            if outcome == _IGNORE:
                return None
            w = st.window
            w.record(outcome, now)
            # In a count window a fast success never raises a rate: it either adds a call or
            # replaces an outcome at least as bad, so it can only trip the breaker by bringing
            # the window to its minimum number of calls. In a time window, old successes that
            # roll out raise the rates, so every outcome is judged (_evaluate returns at once
            # while the window holds no failure and no slow call).
            if outcome or self.window is WindowKind.TIME or w.total == self._min_calls():
                return self._evaluate(site)
            return None
        if state is _HALF_OPEN:
            if outcome == _IGNORE:
                st.probes_left += 1  # an ignored probe frees its slot for another probe
                return None
            st.probe_done += 1
            if outcome & FAILED:
                st.probe_failures += 1
            if outcome & SLOW:
                st.probe_slow += 1
            n = st.probe_done
            if n < self.half_open_calls:
                return None
            if st.probe_failures >= self.failure_rate_threshold * n or (
                slow_after is not None and st.probe_slow >= self.slow_call_rate_threshold * n
            ):
                self._set(_OPEN, "probes_failed", site)
                return True
            self._set(_CLOSED, "probes_passed", site)
            return False
        return None

    def _min_calls(self) -> int:
        if self.window is WindowKind.COUNT:
            return min(self.minimum_calls, int(self.window_size))
        return self.minimum_calls

    def _evaluate(self, site: CallSite) -> bool | None:
        """Open the closed breaker if a rate over the window reached its threshold."""
        w = self._st.window
        total = w.total
        if total < self._min_calls() or not (w.failures or w.slow):
            return None
        if w.failures >= self.failure_rate_threshold * total:
            self._set(_OPEN, "failure_rate", site)
            return True
        if self.slow_call_duration is not None and w.slow >= self.slow_call_rate_threshold * total:
            self._set(_OPEN, "slow_call_rate", site)
            return True
        return None

    def _abandon(self, gen: int) -> None:
        """A call admitted under ``gen`` ended without an outcome (cancelled)."""
        st = self._st
        if gen == st.generation and st.state is _HALF_OPEN:
            st.probes_left += 1

    # -- runners ---------------------------------------------------------------------------

    def bind(self, nxt: Runner, site: CallSite) -> Runner:
        """Wrap ``nxt``: admit (or fail fast), call, record."""
        self._watch(site)
        st = self._st
        admit = self._admit_async
        record = self._record
        classify = self._classify
        abandon = self._abandon
        publish = self._publish
        monotonic = self.clock.monotonic
        has_store = self.store is not None
        timed = self.slow_call_duration is not None
        evaluate = self._evaluate
        window = st.window
        min_calls = self._min_calls()
        fast_record = None
        if not timed and isinstance(window, CountWindow):
            fast_record = window.record

        async def breaker_runner(
            fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            if st.state is _CLOSED and (not has_store or monotonic() < st.next_sync):
                gen = st.generation
            else:
                gen = await admit(site)
            started = monotonic() if timed else 0.0
            try:
                result = await nxt(fn, args, kwargs)
            except Exception as exc:
                changed = record(gen, classify(exc), started, site)
                if changed is not None and has_store:
                    await publish(changed)
                raise
            except BaseException:
                abandon(gen)
                raise
            if fast_record is not None and gen == st.generation and st.state is _CLOSED:
                fast_record(0, 0.0)
                if window.total == min_calls and window.failures:
                    changed = evaluate(site)
                    if changed is not None and has_store:
                        await publish(changed)
            else:
                changed = record(gen, 0, started, site)
                if changed is not None and has_store:
                    await publish(changed)
            return result

        return breaker_runner

    def guard_at(self, site: CallSite) -> _BreakerGuard:
        """An ``async with`` guard: admit on enter (or raise BreakerOpen), record on exit."""
        return _BreakerGuard(self, site)


class _BreakerGuard:
    __slots__ = ("_breaker", "_gen", "_site", "_started")

    def __init__(self, breaker: CircuitBreaker, site: CallSite) -> None:
        self._breaker = breaker
        self._site = site
        self._gen: int | None = None
        self._started = 0.0

    async def __aenter__(self) -> None:
        if self._gen is not None:
            raise RuntimeError("a breaker guard cannot be entered twice")
        self._gen = await self._breaker._admit_async(self._site)
        self._started = self._breaker.clock.monotonic()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        breaker, gen = self._breaker, self._gen
        assert gen is not None
        if exc is not None and not isinstance(exc, Exception):
            breaker._abandon(gen)
            return
        outcome = 0 if exc is None else breaker._classify(exc)
        changed = breaker._record(gen, outcome, self._started, self._site)
        if changed is not None:
            await breaker._publish(changed)
