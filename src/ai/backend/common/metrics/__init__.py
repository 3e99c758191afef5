"""Prometheus metrics of Backend.AI services: observers, a registry, multiprocess exposition.

Layer 3: no network and no web framework here; the aiohttp middleware and the ``/metrics``
handler live in ``ai.backend.common.middlewares`` and ``ai.backend.common.web``.

Guarantees:
- the exposition passes ``promtool check metrics``
  [tests/metrics/test_registry.py::test_exposition_passes_promtool];
- upstream's metric names and labels are kept (``MetricNaming.UPSTREAM`` for the exact ones)
  [tests/metrics/test_observers.py::test_upstream_names];
- observers are independent per ``CollectorRegistry``
  [tests/metrics/test_observers.py::test_registries_are_independent];
- multiprocess mode sums the workers' samples
  [tests/metrics/test_multiprocess.py::test_workers_are_summed].

Limits: under ``MetricNaming.UPSTREAM``, promtool flags upstream's ``_sec`` and gauge ``_count``
names [tests/metrics/test_registry.py::test_upstream_naming_lint_findings].
"""

from .exceptions import MetricAlreadyRegistered, MetricError
from .multiprocess import (
    MULTIPROC_ENV,
    mark_process_dead,
    multiprocess_dir,
    render_multiprocess,
    setup_multiprocess_dir,
)
from .observers import (
    APIMetricObserver,
    BgTaskMetricObserver,
    EventMetricObserver,
    LayerMetricObserver,
    ResilienceMetricObserver,
)
from .registry import EXPOSITION_CONTENT_TYPE, CommonMetricRegistry
from .types import (
    DEFAULT_LATENCY_BUCKETS,
    LONG_TASK_BUCKETS,
    SUCCESS_LABEL_FALSE,
    SUCCESS_LABEL_TRUE,
    MetricNaming,
)

__all__ = (
    "DEFAULT_LATENCY_BUCKETS",
    "EXPOSITION_CONTENT_TYPE",
    "LONG_TASK_BUCKETS",
    "MULTIPROC_ENV",
    "SUCCESS_LABEL_FALSE",
    "SUCCESS_LABEL_TRUE",
    "APIMetricObserver",
    "BgTaskMetricObserver",
    "CommonMetricRegistry",
    "EventMetricObserver",
    "LayerMetricObserver",
    "MetricAlreadyRegistered",
    "MetricError",
    "MetricNaming",
    "ResilienceMetricObserver",
    "mark_process_dead",
    "multiprocess_dir",
    "render_multiprocess",
    "setup_multiprocess_dir",
)
