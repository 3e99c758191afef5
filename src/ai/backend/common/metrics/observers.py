"""Observers: typed recorders of API requests, events, background tasks, layers and resilience.

Each observer registers its metrics in the ``CollectorRegistry`` it is given (the global one when
``None``) and caches the label-bound children, so the hot path is one dict lookup plus the
increments. Metric and label names are upstream Backend.AI's (``src/ai/backend/common/metrics/
metric.py``); see :class:`~ai.backend.common.metrics.types.MetricNaming` for the lint-driven
exceptions. Resilience metrics have no upstream counterpart and are ours.

Guarantees:
- observers on separate registries never collide; a second observer on the same registry raises
  ``MetricAlreadyRegistered`` [tests/metrics/test_observers.py::test_registries_are_independent];
- ``MetricNaming.UPSTREAM`` registers upstream's exact names and labels
  [tests/metrics/test_observers.py::test_upstream_names];
- label children are cached: repeating a label set adds no child and no cache entry
  [tests/metrics/test_observers.py::test_children_are_cached].

Limits: the child cache holds at most ``max_cached_children`` label sets per observer; past
that, children are looked up through ``labels()`` each time (correct, slower)
[tests/metrics/test_observers.py::test_cache_limit_still_records].
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Generic, Self, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from ..exception import BackendAIError, ErrorCode
from .exceptions import MetricAlreadyRegistered
from .types import (
    DEFAULT_LATENCY_BUCKETS,
    LONG_TASK_BUCKETS,
    SUCCESS_LABEL_FALSE,
    SUCCESS_LABEL_TRUE,
    MetricNaming,
)

__all__ = (
    "APIMetricObserver",
    "BgTaskMetricObserver",
    "EventMetricObserver",
    "LayerMetricObserver",
    "ResilienceMetricObserver",
)

M = TypeVar("M", Counter, Gauge, Histogram)
DEFAULT_MAX_CACHED_CHILDREN = 10_000
_INTERNAL_ERROR = ErrorCode("backendai", "generic", "internal-error")
_CIRCUIT_STATES = {"closed": 0.0, "half_open": 1.0, "half-open": 1.0, "open": 2.0}


def _make(
    kind: Callable[..., M],
    registry: CollectorRegistry | None,
    name: str,
    documentation: str,
    labelnames: Sequence[str],
    **kwargs: Any,
) -> M:
    try:
        return kind(
            name,
            documentation,
            labelnames=labelnames,
            registry=REGISTRY if registry is None else registry,
            **kwargs,
        )
    except ValueError as exc:
        raise MetricAlreadyRegistered(
            f"metric {name!r} is already registered in this CollectorRegistry; share one "
            f"observer (CommonMetricRegistry.instance()) or pass another registry",
            data={"metric": name},
        ) from exc


def _name(naming: MetricNaming, upstream: str, prometheus: str) -> str:
    return upstream if naming is MetricNaming.UPSTREAM else prometheus


def _code_labels(error_code: ErrorCode | None) -> tuple[str, str, str]:
    if error_code is None:
        return ("", "", "")
    return (str(error_code.domain), str(error_code.operation), str(error_code.error_detail))


def _error_code_of(exc: BaseException) -> ErrorCode:
    return exc.error_code() if isinstance(exc, BackendAIError) else _INTERNAL_ERROR


class _GlobalInstance:
    """``instance()``: one observer per class on ``prometheus_client.REGISTRY``."""

    _instances: ClassVar[dict[type, Any]] = {}

    @classmethod
    def instance(cls) -> Self:
        """The process-wide observer on the global registry (created on first use); code that
        records into the global registry shares it instead of constructing another."""
        found = _GlobalInstance._instances.get(cls)
        if found is None:
            found = _GlobalInstance._instances[cls] = cls()
        return found


class _Children(Generic[M]):
    """Caches ``metric.labels(*values)`` per label tuple, up to a limit."""

    __slots__ = ("_cache", "_limit", "_metric")

    _metric: M
    _cache: dict[tuple[str, ...], M]

    def __init__(self, metric: M, limit: int) -> None:
        self._metric = metric
        self._cache = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, *values: str) -> M:
        child = self._cache.get(values)
        if child is None:
            child = self._metric.labels(*values)
            if len(self._cache) < self._limit:
                self._cache[values] = child
        return child


class APIMetricObserver(_GlobalInstance):
    """API requests: ``backendai_api_request_count`` and ``_duration`` by route and outcome.

    Labels: ``method``, ``endpoint`` (the canonical route), ``domain``, ``operation``,
    ``error_detail`` (the error code, empty on success) and ``status_code``.
    """

    LABELS = ("method", "endpoint", "domain", "operation", "error_detail", "status_code")

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        naming: MetricNaming = MetricNaming.PROMETHEUS,
        buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
        max_cached_children: int = DEFAULT_MAX_CACHED_CHILDREN,
    ) -> None:
        self._request_count = _make(
            Counter,
            registry,
            "backendai_api_request_count",
            "Total number of API requests",
            self.LABELS,
        )
        self._request_duration = _make(
            Histogram,
            registry,
            _name(
                naming,
                "backendai_api_request_duration_sec",
                "backendai_api_request_duration_seconds",
            ),
            "Duration of API requests in seconds",
            self.LABELS,
            buckets=tuple(buckets),
        )
        self._bound: dict[tuple[str, str, int, ErrorCode | None], tuple[Counter, Histogram]] = {}
        self._limit = max_cached_children

    def cached_children(self) -> int:
        """How many label sets have cached children."""
        return len(self._bound)

    def observe_request(
        self,
        *,
        method: str,
        endpoint: str,
        status_code: int,
        duration: float,
        error_code: ErrorCode | None = None,
    ) -> None:
        """Count one request and observe its duration (seconds)."""
        key = (method, endpoint, status_code, error_code)
        pair = self._bound.get(key)
        if pair is None:
            values = (method, endpoint, *_code_labels(error_code), str(status_code))
            pair = (
                self._request_count.labels(*values),
                self._request_duration.labels(*values),
            )
            if len(self._bound) < self._limit:
                self._bound[key] = pair
        pair[0].inc()
        pair[1].observe(duration)


class EventMetricObserver(_GlobalInstance):
    """Event handling: counts, failures, processing time, dead letters and redeliveries."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        naming: MetricNaming = MetricNaming.PROMETHEUS,
        buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
        max_cached_children: int = DEFAULT_MAX_CACHED_CHILDREN,
    ) -> None:
        limit = max_cached_children
        self._count = _Children(
            _make(
                Counter,
                registry,
                "backendai_event_count",
                "Total number of events processed",
                ("event_type",),
            ),
            limit,
        )
        self._failure = _Children(
            _make(
                Counter,
                registry,
                "backendai_event_failure_count",
                "Number of failed events",
                ("event_type", "exception", "domain", "operation", "error_detail"),
            ),
            limit,
        )
        self._time = _Children(
            _make(
                Histogram,
                registry,
                _name(
                    naming,
                    "backendai_event_processing_time_sec",
                    "backendai_event_processing_time_seconds",
                ),
                "Processing time of events in seconds",
                ("event_type", "status", "domain", "operation", "error_detail"),
                buckets=tuple(buckets),
            ),
            limit,
        )
        self._dead_letter = _Children(
            _make(
                Counter,
                registry,
                "backendai_event_dead_letter_count",
                "Number of events moved to the dead-letter stream",
                ("event_type",),
            ),
            limit,
        )
        self._redelivery = _Children(
            _make(
                Counter,
                registry,
                "backendai_event_redelivery_count",
                "Number of event redeliveries (claimed from the pending list)",
                ("event_type",),
            ),
            limit,
        )

    def observe_event_success(self, *, event_type: str, duration: float) -> None:
        """One event handled successfully in ``duration`` seconds."""
        self._count.get(event_type).inc()
        self._time.get(event_type, "success", "", "", "").observe(duration)

    def observe_event_failure(
        self, *, event_type: str, duration: float, exception: BaseException
    ) -> None:
        """One event whose handling raised ``exception``."""
        code = _error_code_of(exception)
        labels = _code_labels(code)
        self._failure.get(event_type, type(exception).__name__, *labels).inc()
        self._count.get(event_type).inc()
        self._time.get(event_type, "failure", *labels).observe(duration)

    def observe_event_dead_lettered(self, *, event_type: str) -> None:
        """One event moved to the dead-letter stream."""
        self._dead_letter.get(event_type).inc()

    def observe_event_redelivered(self, *, event_type: str) -> None:
        """One event delivered again after a failure or a dead consumer."""
        self._redelivery.get(event_type).inc()


class BgTaskMetricObserver(_GlobalInstance):
    """Background tasks: how many run now, how many finished, and how long they took."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        naming: MetricNaming = MetricNaming.PROMETHEUS,
        buckets: Sequence[float] = LONG_TASK_BUCKETS,
        max_cached_children: int = DEFAULT_MAX_CACHED_CHILDREN,
    ) -> None:
        limit = max_cached_children
        self._running = _Children(
            _make(
                Gauge,
                registry,
                _name(naming, "backendai_bgtask_count", "backendai_bgtask_in_progress"),
                "Number of background tasks running now",
                ("task_name",),
                multiprocess_mode="livesum",
            ),
            limit,
        )
        done_labels = ("task_name", "status", "domain", "operation", "error_detail")
        self._done = _Children(
            _make(
                Counter,
                registry,
                "backendai_bgtask_done_count",
                "Number of completed background tasks",
                done_labels,
            ),
            limit,
        )
        self._time = _Children(
            _make(
                Histogram,
                registry,
                _name(
                    naming,
                    "backendai_bgtask_processing_time_sec",
                    "backendai_bgtask_processing_time_seconds",
                ),
                "Processing time of background tasks in seconds",
                done_labels,
                buckets=tuple(buckets),
            ),
            limit,
        )

    def observe_bgtask_started(self, *, task_name: str) -> None:
        """A task started (the running gauge goes up)."""
        self._running.get(task_name).inc()

    def observe_bgtask_done(
        self,
        *,
        task_name: str,
        status: str,
        duration: float,
        error_code: ErrorCode | None = None,
    ) -> None:
        """A task finished with ``status`` (``success``, ``failure``, ``cancelled``, ...)."""
        self._running.get(task_name).dec()
        labels = (task_name, status, *_code_labels(error_code))
        self._time.get(*labels).observe(duration)
        self._done.get(*labels).inc()


class LayerMetricObserver(_GlobalInstance):
    """Calls into a layer (clients, repositories): in progress, outcome, errors, retries, time.

    ``domain`` names the kind of layer (``client``, ``valkey``, ...), ``layer`` the component
    (``storage_proxy_client``, ...) and ``operation`` the call.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        naming: MetricNaming = MetricNaming.PROMETHEUS,
        buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
        max_cached_children: int = DEFAULT_MAX_CACHED_CHILDREN,
    ) -> None:
        limit = max_cached_children
        base = ("domain", "layer", "operation")
        self._triggered = _Children(
            _make(
                Gauge,
                registry,
                _name(
                    naming,
                    "backendai_layer_operation_triggered_count",
                    "backendai_layer_operation_in_progress",
                ),
                "Number of layer operations in progress",
                base,
                multiprocess_mode="livesum",
            ),
            limit,
        )
        self._count = _Children(
            _make(
                Counter,
                registry,
                "backendai_layer_operation_count",
                "Total number of layer operations",
                (*base, "success"),
            ),
            limit,
        )
        self._errors = _Children(
            _make(
                Counter,
                registry,
                "backendai_layer_operation_error_count",
                "Total number of layer operation errors",
                (*base, "error_code"),
            ),
            limit,
        )
        self._retries = _Children(
            _make(
                Counter,
                registry,
                "backendai_layer_retry_count",
                "Number of retries for layer operations",
                base,
            ),
            limit,
        )
        self._time = _Children(
            _make(
                Histogram,
                registry,
                _name(
                    naming,
                    "backendai_layer_operation_duration_sec",
                    "backendai_layer_operation_duration_seconds",
                ),
                "Duration of layer operations in seconds",
                (*base, "success"),
                buckets=tuple(buckets),
            ),
            limit,
        )

    def observe_layer_operation_triggered(self, *, domain: str, layer: str, operation: str) -> None:
        """An operation started (the in-progress gauge goes up)."""
        self._triggered.get(domain, layer, operation).inc()

    def observe_layer_retry(self, *, domain: str, layer: str, operation: str) -> None:
        """An operation is retried."""
        self._retries.get(domain, layer, operation).inc()

    def observe_layer_operation(
        self,
        *,
        domain: str,
        layer: str,
        operation: str,
        duration: float,
        exception: BaseException | None = None,
    ) -> None:
        """An operation finished (the in-progress gauge goes down), failed if ``exception``."""
        success = SUCCESS_LABEL_TRUE if exception is None else SUCCESS_LABEL_FALSE
        self._triggered.get(domain, layer, operation).dec()
        self._count.get(domain, layer, operation, success).inc()
        if exception is not None:
            code = str(_error_code_of(exception))
            self._errors.get(domain, layer, operation, code).inc()
        self._time.get(domain, layer, operation, success).observe(duration)

    @contextmanager
    def measure(self, *, domain: str, layer: str, operation: str) -> Iterator[None]:
        """Record the block as one operation (triggered, then its outcome and duration)."""
        self.observe_layer_operation_triggered(domain=domain, layer=layer, operation=operation)
        start = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            self.observe_layer_operation(
                domain=domain,
                layer=layer,
                operation=operation,
                duration=time.perf_counter() - start,
                exception=exc,
            )
            raise
        self.observe_layer_operation(
            domain=domain, layer=layer, operation=operation, duration=time.perf_counter() - start
        )


class ResilienceMetricObserver(_GlobalInstance):
    """Resilience policies (ours): retries, timeouts, circuit states, rejections, fallbacks."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_cached_children: int = DEFAULT_MAX_CACHED_CHILDREN,
    ) -> None:
        limit = max_cached_children
        op = ("operation",)
        self._retries = _Children(
            _make(Counter, registry, "backendai_resilience_retry_count", "Retries by policy", op),
            limit,
        )
        self._timeouts = _Children(
            _make(
                Counter,
                registry,
                "backendai_resilience_timeout_count",
                "Attempts cut by a timeout policy",
                op,
            ),
            limit,
        )
        self._rejected = _Children(
            _make(
                Counter,
                registry,
                "backendai_resilience_rejected_count",
                "Calls rejected without running (circuit_open, bulkhead_full)",
                ("operation", "reason"),
            ),
            limit,
        )
        self._fallbacks = _Children(
            _make(
                Counter,
                registry,
                "backendai_resilience_fallback_count",
                "Calls answered by a fallback",
                op,
            ),
            limit,
        )
        self._state = _Children(
            _make(
                Gauge,
                registry,
                "backendai_resilience_circuit_state",
                "Circuit breaker state: 0 closed, 1 half-open, 2 open",
                ("circuit",),
                multiprocess_mode="livemax",
            ),
            limit,
        )
        self._transitions = _Children(
            _make(
                Counter,
                registry,
                "backendai_resilience_circuit_transition_count",
                "Circuit breaker state changes",
                ("circuit", "from_state", "to_state"),
            ),
            limit,
        )
        self._in_flight = _Children(
            _make(
                Gauge,
                registry,
                "backendai_resilience_bulkhead_in_flight",
                "Calls running inside a bulkhead",
                op,
                multiprocess_mode="livesum",
            ),
            limit,
        )

    def observe_retry(self, *, operation: str) -> None:
        """A retry policy runs another attempt."""
        self._retries.get(operation).inc()

    def observe_timeout(self, *, operation: str) -> None:
        """An attempt ran past its timeout."""
        self._timeouts.get(operation).inc()

    def observe_rejected(self, *, operation: str, reason: str) -> None:
        """A call was refused before running (``circuit_open``, ``bulkhead_full``)."""
        self._rejected.get(operation, reason).inc()

    def observe_fallback(self, *, operation: str) -> None:
        """A fallback answered instead of the operation."""
        self._fallbacks.get(operation).inc()

    def observe_circuit_transition(self, *, circuit: str, from_state: str, to_state: str) -> None:
        """A breaker changed state (``closed``, ``half_open``, ``open``); the gauge follows."""
        self._transitions.get(circuit, from_state, to_state).inc()
        self._state.get(circuit).set(_CIRCUIT_STATES.get(to_state, -1.0))

    def observe_bulkhead_entered(self, *, operation: str) -> None:
        """A call entered a bulkhead."""
        self._in_flight.get(operation).inc()

    def observe_bulkhead_left(self, *, operation: str) -> None:
        """A call left a bulkhead."""
        self._in_flight.get(operation).dec()
