"""Typed events the policies emit, the observer protocol, and the current operation name.

Events are emitted only off the happy path (a retry, a rejection, a timeout, a fallback, a
breaker transition), so observing costs nothing while calls succeed. An observer is any object
with a synchronous ``on_event(event)``; it must not block.

Guarantees:
- an observer that raises is logged and skipped; the call and the other observers go on
  [tests/resilience/test_events.py::test_failing_observer_is_isolated];
- ``bind_operation()`` restores the previous operation name when its block exits, also on error
  [tests/resilience/test_events.py::test_bind_operation_restores].
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = (
    "BreakerStateChanged",
    "CallRejected",
    "CallSite",
    "FallbackUsed",
    "Observer",
    "RejectReason",
    "ResilienceEvent",
    "RetryAttempted",
    "RetryExhausted",
    "TimeoutOccurred",
    "bind_operation",
    "current_operation",
)

log = logging.getLogger(__name__)

_operation: ContextVar[str | None] = ContextVar("backendai_resilience_operation", default=None)


def current_operation() -> str | None:
    """The name of the operation the running task is performing, if one is bound."""
    return _operation.get()


@contextmanager
def bind_operation(name: str) -> Iterator[str]:
    """Set the current operation name for the block; yields the name."""
    token = _operation.set(name)
    try:
        yield name
    finally:
        _operation.reset(token)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResilienceEvent:
    """Base of every event: which dependency and operation it concerns."""

    dependency: str
    """The dependency name (the pipeline's, else the emitting policy's)."""
    operation: str
    """The operation name (the pipeline's, else the bound one, else ``""``)."""
    policy: str
    """The emitting policy's name (``""`` when unnamed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryAttempted(ResilienceEvent):
    """An attempt failed with a retryable error; the retry sleeps ``delay`` then tries again."""

    attempt: int
    """The number of the attempt that failed (1 for the first call)."""
    delay: float
    """Seconds slept before the next attempt."""
    error: BaseException
    """The error of the failed attempt."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryExhausted(ResilienceEvent):
    """A retryable error is re-raised because no further attempt is allowed."""

    attempts: int
    """How many attempts were made."""
    reason: str
    """Why retrying stopped: ``attempts``, ``budget``, ``deadline`` or ``retry_after``."""
    error: BaseException
    """The error re-raised to the caller."""


class RejectReason(enum.StrEnum):
    """Why a call was refused before reaching the dependency."""

    BREAKER_OPEN = "breaker_open"
    BULKHEAD_FULL = "bulkhead_full"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRejected(ResilienceEvent):
    """A call was refused (breaker open, bulkhead full, rate limited)."""

    reason: RejectReason
    """Which policy refused it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerStateChanged(ResilienceEvent):
    """A circuit breaker moved from one state to another."""

    old: str
    """The previous state (a ``BreakerStateName`` value)."""
    new: str
    """The new state."""
    cause: str
    """Why: ``failure_rate``, ``slow_call_rate``, ``wait_elapsed``, ``probes_passed``,
    ``probes_failed``, ``shared`` (read from the state store) or ``manual``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutOccurred(ResilienceEvent):
    """A call outlived its time limit and was cancelled."""

    timeout: float
    """The time limit in seconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackUsed(ResilienceEvent):
    """A call failed with a chosen error and the fallback's result was returned instead."""

    error: BaseException
    """The error that was replaced."""


@runtime_checkable
class Observer(Protocol):
    """Receives events; ``on_event`` is called synchronously and must not block."""

    def on_event(self, event: ResilienceEvent) -> None:
        """Handle one event."""


@dataclass(frozen=True, slots=True)
class CallSite:
    """Where a policy runs: fixed names and observers, bound once when a pipeline is built."""

    dependency: str = ""
    """The pipeline's dependency name, or ``""`` to use the policy's own name."""
    operation: str | None = None
    """The pipeline's operation name, or ``None`` to read :func:`current_operation` per event."""
    observers: tuple[Observer, ...] = ()
    """The policy's observers followed by the pipeline's."""

    def names(self, policy: str) -> tuple[str, str]:
        """The ``(dependency, operation)`` labels of an event emitted now by ``policy``."""
        op = self.operation if self.operation is not None else (_operation.get() or "")
        return (self.dependency or policy, op)

    def emit(self, event: ResilienceEvent) -> None:
        """Deliver ``event`` to every observer; one that raises is logged and skipped."""
        _emit(self.observers, event)


def _emit(observers: Sequence[Observer], event: ResilienceEvent) -> None:
    """Deliver ``event`` to each observer in order, isolating failures."""
    for observer in observers:
        try:
            observer.on_event(event)
        except Exception:
            log.exception("resilience observer %r failed on %r", observer, type(event).__name__)
