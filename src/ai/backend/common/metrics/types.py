"""Metric naming schemes, histogram buckets and label values shared by the observers."""

from __future__ import annotations

import enum

__all__ = (
    "DEFAULT_LATENCY_BUCKETS",
    "LONG_TASK_BUCKETS",
    "SUCCESS_LABEL_FALSE",
    "SUCCESS_LABEL_TRUE",
    "MetricNaming",
)

DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 30)
"""Upstream's buckets for API, event and layer durations (seconds)."""

LONG_TASK_BUCKETS: tuple[float, ...] = (0.1, 1, 10, 30, 60, 300, 600)
"""Upstream's buckets for background task durations (seconds)."""

SUCCESS_LABEL_TRUE = "True"
SUCCESS_LABEL_FALSE = "False"


class MetricNaming(enum.StrEnum):
    """Which names the observers register.

    ``PROMETHEUS`` (default) keeps upstream's names except where they break Prometheus naming
    rules that ``promtool check metrics`` enforces: durations end in ``_seconds`` instead of
    ``_sec``, and gauges named ``*_count`` end in ``_in_progress``. ``UPSTREAM`` registers
    upstream's exact names, for dashboards built on upstream Backend.AI.
    """

    PROMETHEUS = "prometheus"
    UPSTREAM = "upstream"
