"""Prometheus metrics of background tasks.

The upstream metrics come from :class:`~ai.backend.common.metrics.BgTaskMetricObserver` (reused,
not duplicated): the in-flight gauge ``backendai_bgtask_in_progress`` (``backendai_bgtask_count``
under upstream naming), ``backendai_bgtask_done_count`` by name, status and error code, and the
duration histogram ``backendai_bgtask_processing_time_seconds``. Statuses are upstream's event
names (``bgtask_done``, ``bgtask_partial_success``, ``bgtask_failed``, ``bgtask_cancelled``),
plus ``bgtask_lost`` (another node took the task over) and ``bgtask_handed_over`` (released on
shutdown). Ours, with no upstream counterpart: ``backendai_bgtask_started_total`` by name and
how the run began, ``backendai_bgtask_adopted_total`` by name and what the adopter did, and
``backendai_bgtask_sse_streams`` (open SSE streams; no per-task label, so a stream leaves no
series behind).

Guarantees:
- every series is registered in the ``CollectorRegistry`` given (several managers in one
  process use separate registries or share one ``BgtaskMetrics``)
  [tests/bgtask/test_manager.py::test_metrics_count_started_and_finished].
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from ..exception import ErrorCode
from ..metrics import BgTaskMetricObserver, MetricAlreadyRegistered, MetricNaming

__all__ = ("BgtaskMetrics",)


class BgtaskMetrics:
    """The metrics one or more managers record into (one per ``CollectorRegistry``)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        observer: BgTaskMetricObserver | None = None,
        naming: MetricNaming = MetricNaming.PROMETHEUS,
    ) -> None:
        target = REGISTRY if registry is None else registry
        self.registry = target
        self.observer = (
            observer if observer is not None else BgTaskMetricObserver(target, naming=naming)
        )
        """The shared upstream observer (pass ``CommonMetricRegistry.bgtask`` to reuse it)."""
        try:
            self._started = Counter(
                "backendai_bgtask_started",
                "Background task runs started, by how they began (new, resumed)",
                ("task_name", "origin"),
                registry=target,
            )
            self._adopted = Counter(
                "backendai_bgtask_adopted",
                "Background tasks taken over from a lost owner, by what the adopter did",
                ("task_name", "action"),
                registry=target,
            )
            self._sse = Gauge(
                "backendai_bgtask_sse_streams",
                "Server-sent-event streams of background tasks open now",
                registry=target,
                multiprocess_mode="livesum",
            )
        except ValueError as exc:
            raise MetricAlreadyRegistered(
                "bgtask metrics are already registered in this CollectorRegistry; share one "
                "BgtaskMetrics or pass another registry",
                data={"metric": "backendai_bgtask_started"},
            ) from exc

    def task_started(self, task_name: str, *, resumed: bool) -> None:
        """A handler run began (the in-flight gauge goes up)."""
        self._started.labels(task_name, "resumed" if resumed else "new").inc()
        self.observer.observe_bgtask_started(task_name=task_name)

    def task_stopped(
        self,
        task_name: str,
        *,
        status: str,
        duration: float,
        error_code: ErrorCode | None = None,
    ) -> None:
        """A handler run ended here with ``status`` (the in-flight gauge goes down)."""
        self.observer.observe_bgtask_done(
            task_name=task_name, status=status, duration=duration, error_code=error_code
        )

    def task_adopted(self, task_name: str, *, action: str) -> None:
        """A lost task was adopted; ``action`` is ``resumed``, ``started``, ``failed`` or
        ``cancelled``."""
        self._adopted.labels(task_name, action).inc()

    def sse_opened(self) -> None:
        """An SSE stream opened."""
        self._sse.inc()

    def sse_closed(self) -> None:
        """An SSE stream closed."""
        self._sse.dec()
