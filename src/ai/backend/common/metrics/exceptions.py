"""Errors of the metrics package.

::

    MetricError                      500  metric_setup_internal-error
    └── MetricAlreadyRegistered      500  metric_setup_conflict (same name twice in one registry)
"""

from __future__ import annotations

from ..exception import PROBLEM_BASE_URI, BackendAIError, ErrorDetail, ErrorDomain, ErrorOperation

__all__ = ("MetricAlreadyRegistered", "MetricError")


class MetricError(BackendAIError):
    """Base of the metrics package's errors."""

    error_type = PROBLEM_BASE_URI + "metric-error"
    error_title = "Metrics error."
    error_domain = ErrorDomain.METRIC
    error_operation = ErrorOperation.SETUP


class MetricAlreadyRegistered(MetricError, ValueError):
    """A metric of that name already lives in the ``CollectorRegistry`` given."""

    error_type = PROBLEM_BASE_URI + "metric-already-registered"
    error_title = "Metric already registered."
    error_detail = ErrorDetail.CONFLICT
