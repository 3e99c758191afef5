"""Retry: run a call again after a retryable failure, with capped backoff and a shared budget.

The first attempt costs one ``try`` around the next step; everything else (classification,
backoff, budget, events, sleeping) happens only after a failure.

Which errors are retried: only :class:`Exception` instances (never ``CancelledError``,
``KeyboardInterrupt``, ``SystemExit``), never the programming errors of
:data:`NEVER_RETRIED` (``TypeError``, ``AttributeError``, ``NameError``, ``AssertionError``, ...),
never the types in ``never_retry_on``, only instances of ``retry_on`` (default: any
``Exception``), and only if ``retry_if(exc)`` (when given) is true.

Server-suggested delay (the ``SupportsRetryAfter`` protocol): an error with a numeric attribute
``retry_after`` (seconds, >= 0) is retried after exactly that delay instead of the backoff delay;
when it exceeds ``max_retry_after`` (default: the backoff cap) the error is re-raised at once,
since sleeping that long would hold the caller hostage. :class:`BreakerOpen`, :class:`RateLimited`
and :class:`BulkheadFull` carry it, so a retry around an open breaker waits until it half-opens.

Guarantees:
- the delay before retry *n* is the backoff's, always within ``[0, max_delay]``
  [tests/resilience/test_retry.py::test_backoff_within_bounds];
- exponential backoff sleeps initial, initial*m, ... capped at max_delay
  [tests/resilience/test_retry.py::test_exponential_sequence];
- cancelling the caller during a retry sleep propagates at once, no attempt follows
  [tests/resilience/test_retry.py::test_cancel_during_sleep];
- cancellation and programming errors are never retried
  [tests/resilience/test_retry.py::test_never_retried];
- a ``retry_after`` attribute replaces the backoff delay
  [tests/resilience/test_retry.py::test_retry_after_honoured];
- a shared :class:`RetryBudget` caps retries across calls, refilling over time
  [tests/resilience/test_retry.py::test_budget_stops_retry_storm].

Limits:
- the error re-raised after the last attempt is the last attempt's, unchanged (no wrapper)
  [tests/resilience/test_retry.py::test_last_error_reraised];
- ``max_elapsed`` counts from the first failure, not from the first call
  [tests/resilience/test_retry.py::test_max_elapsed_stops].
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, runtime_checkable

from ..exception import InvalidArgument
from .abc import Policy, Runner
from .clock import SYSTEM_CLOCK, Clock
from .events import CallSite, Observer, RetryAttempted, RetryExhausted

__all__ = (
    "NEVER_RETRIED",
    "Backoff",
    "BackoffKind",
    "ExceptionTypes",
    "Retry",
    "RetryBudget",
    "RetryBudgetStatistics",
    "SupportsRetryAfter",
)

NEVER_RETRIED: tuple[type[BaseException], ...] = (
    TypeError,
    AttributeError,
    NameError,
    AssertionError,
    NotImplementedError,
    SyntaxError,
    ImportError,
    RecursionError,
    MemoryError,
)
"""Programming errors that no retry configuration ever retries."""


ExceptionTypes: TypeAlias = type[BaseException] | tuple[type[BaseException], ...]
"""One exception type or a tuple of them, as ``isinstance`` takes."""


@runtime_checkable
class SupportsRetryAfter(Protocol):
    """An error that knows when a new attempt may succeed (e.g. from a ``Retry-After`` header)."""

    retry_after: float | None
    """Seconds to wait before the next attempt, or ``None`` when unknown."""


def _bad(field_name: str, value: object, rule: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field_name}={value!r}: {rule}", data={"field": field_name, "value": repr(value)}
    )


class BackoffKind(enum.StrEnum):
    """How the delay between attempts grows."""

    FIXED = "fixed"
    """Always ``initial``."""
    EXPONENTIAL = "exponential"
    """``initial * multiplier ** (n - 1)`` before retry *n*."""
    FULL_JITTER = "full_jitter"
    """Uniform in ``[0, exponential delay]`` (AWS "full jitter")."""
    DECORRELATED_JITTER = "decorrelated_jitter"
    """Uniform in ``[initial, previous delay * 3]`` (AWS "decorrelated jitter")."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """A delay schedule between attempts; every delay is capped at ``max_delay``."""

    kind: BackoffKind | str = BackoffKind.FULL_JITTER
    initial: float = 0.1
    """Seconds: the first delay (or its upper bound with full jitter)."""
    max_delay: float = 10.0
    """Seconds: no delay exceeds this cap."""
    multiplier: float = 2.0
    """Growth factor of exponential kinds."""
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)
    """Random source of the jittered kinds (inject ``random.Random(seed).uniform`` in tests)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", BackoffKind(self.kind))
        if not (self.initial >= 0 and math.isfinite(self.initial)):
            raise _bad("initial", self.initial, "must be a finite number >= 0")
        if not (self.max_delay >= self.initial and math.isfinite(self.max_delay)):
            raise _bad("max_delay", self.max_delay, "must be finite and >= initial")
        if not (self.multiplier >= 1 and math.isfinite(self.multiplier)):
            raise _bad("multiplier", self.multiplier, "must be a finite number >= 1")

    def delay(self, retry: int, previous: float) -> float:
        """The delay before retry number ``retry`` (1-based), given the previous delay."""
        kind, cap = self.kind, self.max_delay
        if kind is BackoffKind.FIXED:
            return self.initial
        if kind is BackoffKind.DECORRELATED_JITTER:
            low = self.initial
            high = max(low, min(cap, previous * 3.0))
            return min(cap, max(0.0, self.uniform(low, high)))
        try:
            grown = min(cap, self.initial * self.multiplier ** (retry - 1))
        except OverflowError:
            grown = cap
        if kind is BackoffKind.EXPONENTIAL:
            return grown
        return min(grown, max(0.0, self.uniform(0.0, grown)))


@dataclass(frozen=True, slots=True)
class RetryBudgetStatistics:
    """A snapshot of a retry budget."""

    tokens: float
    capacity: float
    granted: int
    denied: int


class RetryBudget:
    """A token bucket shared by every retry against one dependency.

    Each retry (not the first attempt) takes one token; tokens refill at ``refill_per_second`` up
    to ``capacity``. When the bucket is empty, retries stop and the error is re-raised, so an
    outage costs at most ``capacity`` extra calls plus the refill rate, whatever the caller count.
    """

    __slots__ = ("_clock", "_denied", "_granted", "_tokens", "_updated", "capacity", "name", "rate")

    def __init__(
        self,
        *,
        capacity: float = 10.0,
        refill_per_second: float = 1.0,
        name: str = "",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not (capacity >= 1 and math.isfinite(capacity)):
            raise _bad("capacity", capacity, "must be a finite number >= 1")
        if not (refill_per_second >= 0 and math.isfinite(refill_per_second)):
            raise _bad("refill_per_second", refill_per_second, "must be a finite number >= 0")
        self.capacity = float(capacity)
        self.rate = float(refill_per_second)
        self.name = name
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock.monotonic()
        self._granted = 0
        self._denied = 0

    def _refill(self) -> None:
        now = self._clock.monotonic()
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated = now

    def try_acquire(self) -> bool:
        """Take one token for a retry; ``False`` (and nothing taken) when the bucket is empty."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self._granted += 1
            return True
        self._denied += 1
        return False

    def statistics(self) -> RetryBudgetStatistics:
        """The current tokens and the counts of granted and denied retries."""
        self._refill()
        return RetryBudgetStatistics(self._tokens, self.capacity, self._granted, self._denied)

    def __repr__(self) -> str:
        return f"RetryBudget(name={self.name!r}, capacity={self.capacity}, rate={self.rate})"


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Retry(Policy):
    """Run the call up to ``max_attempts`` times while it fails with a retryable error."""

    max_attempts: int = 3
    """Total attempts, the first included (1 disables retrying)."""
    backoff: Backoff = field(default_factory=Backoff)
    """The delay schedule between attempts."""
    retry_on: ExceptionTypes = (Exception,)
    """Only these error types are retried."""
    never_retry_on: ExceptionTypes = ()
    """These error types are never retried (checked before ``retry_on``)."""
    retry_if: Callable[[BaseException], bool] | None = None
    """An extra predicate an error must satisfy to be retried."""
    max_retry_after: float | None = None
    """Longest server-suggested delay honoured (default: ``backoff.max_delay``)."""
    max_elapsed: float | None = None
    """Seconds since the first failure after which no new attempt starts."""
    budget: RetryBudget | None = None
    """A token bucket shared per dependency; no token, no retry."""
    clock: Clock = SYSTEM_CLOCK
    name: str = ""
    observers: tuple[Observer, ...] = ()

    def __post_init__(self) -> None:
        if not (isinstance(self.max_attempts, int) and self.max_attempts >= 1):
            raise _bad("max_attempts", self.max_attempts, "must be an integer >= 1")
        for fname in ("retry_on", "never_retry_on"):
            types = getattr(self, fname)
            if isinstance(types, type):
                types = (types,)
                object.__setattr__(self, fname, types)
            if not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
                raise _bad(fname, types, "must be a tuple of exception types")
        for fname in ("max_retry_after", "max_elapsed"):
            value = getattr(self, fname)
            if value is not None and not value >= 0:
                raise _bad(fname, value, "must be None or a number >= 0")
        object.__setattr__(self, "observers", tuple(self.observers))
        self._init_runner()

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` may be retried by this policy (attempts and budget aside)."""
        if not isinstance(exc, Exception) or isinstance(exc, NEVER_RETRIED):
            return False
        if isinstance(exc, self.never_retry_on) or not isinstance(exc, self.retry_on):
            return False
        return self.retry_if is None or bool(self.retry_if(exc))

    def bind(self, nxt: Runner, site: CallSite) -> Runner:
        """Wrap ``nxt``: one ``try`` on the first attempt, the retry loop after a failure."""
        again = self._again
        if self.max_attempts == 1:
            return nxt

        async def retry_runner(
            fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            try:
                return await nxt(fn, args, kwargs)
            except Exception as exc:
                first = exc
            # Outside the except block: later errors do not chain onto the first one.
            return await again(first, nxt, site, fn, args, kwargs)

        return retry_runner

    async def _again(
        self,
        exc: Exception,
        nxt: Runner,
        site: CallSite,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        clock, backoff, budget = self.clock, self.backoff, self.budget
        cap = self.max_retry_after if self.max_retry_after is not None else backoff.max_delay
        started = clock.monotonic()
        attempt = 1
        previous = backoff.initial
        while True:
            if not self.is_retryable(exc):
                raise exc
            reason = ""
            suggested = getattr(exc, "retry_after", None)
            if attempt >= self.max_attempts:
                reason = "attempts"
            elif isinstance(suggested, int | float) and not isinstance(suggested, bool):
                delay = max(0.0, float(suggested))
                if delay > cap:
                    reason = "retry_after"
            else:
                delay = backoff.delay(attempt, previous)
                previous = delay
            if (
                not reason
                and self.max_elapsed is not None
                and clock.monotonic() + delay - started > self.max_elapsed
            ):
                reason = "deadline"
            if not reason and budget is not None and not budget.try_acquire():
                reason = "budget"
            dependency, operation = site.names(self.name)
            if reason:
                if site.observers:
                    site.emit(
                        RetryExhausted(
                            dependency=dependency,
                            operation=operation,
                            policy=self.name,
                            attempts=attempt,
                            reason=reason,
                            error=exc,
                        )
                    )
                raise exc
            if site.observers:
                site.emit(
                    RetryAttempted(
                        dependency=dependency,
                        operation=operation,
                        policy=self.name,
                        attempt=attempt,
                        delay=delay,
                        error=exc,
                    )
                )
            await clock.sleep(delay)
            attempt += 1
            try:
                return await nxt(fn, args, kwargs)
            except Exception as e:
                exc = e
