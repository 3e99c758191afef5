"""Errors of the health checkers.

::

    HealthCheckError            503  health_read_unavailable   (ServiceUnavailable)
    ├── HealthCheckFailed       503  a dependency answered, but not healthily (wrong role, status)
    └── HealthCheckTimeout      504  health_read_timeout        (OperationTimeout)
"""

from __future__ import annotations

from ..exception import (
    PROBLEM_BASE_URI as _PROBS,
)
from ..exception import (
    BackendAIError,
    ErrorDetail,
    ErrorDomain,
    ErrorOperation,
    OperationTimeout,
    ServiceUnavailable,
)

__all__ = ("HealthCheckError", "HealthCheckFailed", "HealthCheckTimeout")


class HealthCheckError(BackendAIError):
    """Base of the health checkers' errors: a dependency is not healthy."""

    error_type = _PROBS + "health-check-failed"
    error_title = "Health check failed."
    status_code = 503
    error_domain = ErrorDomain.HEALTH
    error_operation = ErrorOperation.READ
    error_detail = ErrorDetail.UNAVAILABLE


class HealthCheckFailed(HealthCheckError, ServiceUnavailable):
    """The dependency answered, but not as a healthy one (wrong role, bad status, ...)."""


class HealthCheckTimeout(HealthCheckError, OperationTimeout):
    """The dependency did not answer within the checker's timeout."""

    error_type = _PROBS + "health-check-timeout"
    error_title = "Health check timed out."
    status_code = 504
    error_detail = ErrorDetail.TIMEOUT
