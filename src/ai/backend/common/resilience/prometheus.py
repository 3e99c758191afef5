"""Prometheus observer: resilience events as ``backendai_resilience_*`` metrics.

Metrics (all labelled ``dependency`` and ``operation`` unless noted):

- ``backendai_resilience_retries_total``: retries started;
- ``backendai_resilience_retry_delay_seconds``: histogram of the delays slept before retries;
- ``backendai_resilience_retries_exhausted_total`` (+ ``reason``): errors re-raised because no
  further attempt was allowed (``attempts``, ``budget``, ``deadline``, ``retry_after``);
- ``backendai_resilience_calls_rejected_total`` (+ ``reason``): calls refused
  (``breaker_open``, ``bulkhead_full``, ``rate_limited``);
- ``backendai_resilience_timeouts_total``: calls cancelled by a ``Timeout``;
- ``backendai_resilience_fallbacks_total``: errors replaced by a ``Fallback``;
- ``backendai_resilience_breaker_transitions_total`` (``dependency``, ``breaker``,
  ``from_state``, ``to_state``) and ``backendai_resilience_breaker_state`` (``dependency``,
  ``breaker``, ``state``; 1 for the current state, 0 for the others).

Label children are bound once per ``(dependency, operation)`` and cached, so recording an event
is a dict lookup and an increment, with no label resolution per event.

Guarantees:
- each event type moves exactly its metrics, with the event's labels
  [tests/resilience/test_prometheus.py::test_events_become_metrics];
- a pipeline's events reach the observer labelled by the pipeline's dependency and operation
  [tests/resilience/test_prometheus.py::test_pipeline_labels];
- the breaker-state gauge of a pipeline follows a manual ``force_open()``, ``disable()`` and
  ``reset()`` of its breaker
  [tests/resilience/test_prometheus.py::test_pipeline_gauge_follows_manual_transitions].

Limits:
- the metrics are registered when the observer is built: build one observer per registry
  [tests/resilience/test_prometheus.py::test_one_observer_per_registry].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from .breaker import BreakerStateName
from .events import (
    BreakerStateChanged,
    CallRejected,
    FallbackUsed,
    ResilienceEvent,
    RetryAttempted,
    RetryExhausted,
    TimeoutOccurred,
)

__all__ = ("DELAY_BUCKETS", "PrometheusObserver")

DELAY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Histogram buckets (seconds) of ``backendai_resilience_retry_delay_seconds``."""

_LABELS = ("dependency", "operation")


class _Bound:
    """The label children of one ``(dependency, operation)``."""

    __slots__ = ("delay", "exhausted", "fallbacks", "labels", "rejected", "retries", "timeouts")

    def __init__(self, owner: PrometheusObserver, dependency: str, operation: str) -> None:
        self.labels = (dependency, operation)
        self.retries = owner.retries.labels(dependency, operation)
        self.delay = owner.retry_delay.labels(dependency, operation)
        self.timeouts = owner.timeouts.labels(dependency, operation)
        self.fallbacks = owner.fallbacks.labels(dependency, operation)
        self.exhausted: dict[str, Any] = {}
        self.rejected: dict[str, Any] = {}


class PrometheusObserver:
    """An observer recording every resilience event in Prometheus metrics."""

    def __init__(
        self, *, registry: CollectorRegistry | None = REGISTRY, prefix: str = "backendai_resilience"
    ) -> None:
        self.retries = Counter(f"{prefix}_retries", "Retries started.", _LABELS, registry=registry)
        self.retry_delay = Histogram(
            f"{prefix}_retry_delay_seconds",
            "Delay slept before a retry.",
            _LABELS,
            buckets=DELAY_BUCKETS,
            registry=registry,
        )
        self.retries_exhausted = Counter(
            f"{prefix}_retries_exhausted",
            "Errors re-raised because no further attempt was allowed.",
            (*_LABELS, "reason"),
            registry=registry,
        )
        self.calls_rejected = Counter(
            f"{prefix}_calls_rejected",
            "Calls refused by a breaker, bulkhead or rate limiter.",
            (*_LABELS, "reason"),
            registry=registry,
        )
        self.timeouts = Counter(
            f"{prefix}_timeouts", "Calls cancelled by a timeout.", _LABELS, registry=registry
        )
        self.fallbacks = Counter(
            f"{prefix}_fallbacks", "Errors replaced by a fallback.", _LABELS, registry=registry
        )
        self.breaker_transitions = Counter(
            f"{prefix}_breaker_transitions",
            "Circuit breaker state changes.",
            ("dependency", "breaker", "from_state", "to_state"),
            registry=registry,
        )
        self.breaker_state = Gauge(
            f"{prefix}_breaker_state",
            "1 for the current state of a circuit breaker, 0 for the others.",
            ("dependency", "breaker", "state"),
            registry=registry,
        )
        self._bound: dict[tuple[str, str], _Bound] = {}
        self._handlers: dict[type[ResilienceEvent], Callable[[Any, _Bound], None]] = {
            RetryAttempted: self._retry,
            RetryExhausted: self._exhausted,
            CallRejected: self._rejected,
            TimeoutOccurred: self._timeout,
            FallbackUsed: self._fallback,
            BreakerStateChanged: self._breaker,
        }

    def on_event(self, event: ResilienceEvent) -> None:
        """Record one event."""
        key = (event.dependency, event.operation)
        bound = self._bound.get(key)
        if bound is None:
            bound = self._bound[key] = _Bound(self, *key)
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event, bound)

    def _retry(self, event: RetryAttempted, bound: _Bound) -> None:
        bound.retries.inc()
        bound.delay.observe(event.delay)

    def _exhausted(self, event: RetryExhausted, bound: _Bound) -> None:
        child = bound.exhausted.get(event.reason)
        if child is None:
            child = bound.exhausted[event.reason] = self.retries_exhausted.labels(
                *bound.labels, event.reason
            )
        child.inc()

    def _rejected(self, event: CallRejected, bound: _Bound) -> None:
        reason = event.reason.value
        child = bound.rejected.get(reason)
        if child is None:
            child = bound.rejected[reason] = self.calls_rejected.labels(*bound.labels, reason)
        child.inc()

    def _timeout(self, event: TimeoutOccurred, bound: _Bound) -> None:
        bound.timeouts.inc()

    def _fallback(self, event: FallbackUsed, bound: _Bound) -> None:
        bound.fallbacks.inc()

    def _breaker(self, event: BreakerStateChanged, bound: _Bound) -> None:
        self.breaker_transitions.labels(event.dependency, event.policy, event.old, event.new).inc()
        for state in BreakerStateName:
            value = 1.0 if state.value == event.new else 0.0
            self.breaker_state.labels(event.dependency, event.policy, state.value).set(value)
