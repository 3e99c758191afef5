"""Errors raised by the resilience policies.

::

    ResilienceError                          500  resilience_generic_internal-error
    ├── CallNotPermitted                     503  resilience_execute_unavailable
    │   ├── BreakerOpen                      503  (an open circuit breaker failing fast)
    │   ├── BulkheadFull                     503  (no free slot and no room in the queue)
    │   └── RateLimited                      429  (no permit within the allowed wait)
    └── CallTimeout (OperationTimeout, TimeoutError)
                                             504  resilience_execute_timeout

A rejection carries ``retry_after`` (seconds, or ``None``): the delay after which a new call may
succeed. :class:`~ai.backend.common.resilience.Retry` honours that attribute on any exception (the
``SupportsRetryAfter`` protocol), so a retry around an open breaker waits until it half-opens.
"""

from __future__ import annotations

from typing import Any

from ..exception import (
    BackendAIError,
    ErrorDetail,
    ErrorDomain,
    ErrorOperation,
    OperationTimeout,
)

__all__ = (
    "BreakerOpen",
    "BulkheadFull",
    "CallNotPermitted",
    "CallTimeout",
    "RateLimited",
    "ResilienceError",
)

_PROBS = "https://api.backend.ai/probs/"


class ResilienceError(BackendAIError):
    """Base of every error raised by a resilience policy itself."""

    error_domain = ErrorDomain.RESILIENCE


class CallNotPermitted(ResilienceError):
    """Raised when a policy refuses a call before it reaches the dependency."""

    error_type = _PROBS + "call-rejected"
    error_title = "Call rejected by a resilience policy."
    status_code = 503
    error_operation = ErrorOperation.EXECUTE
    error_detail = ErrorDetail.UNAVAILABLE

    policy: str
    """Name of the rejecting policy (breaker name, bulkhead name, ...)."""
    retry_after: float | None
    """Seconds after which a new call may be admitted, when known."""

    def __init__(
        self,
        msg: str | None = None,
        *,
        policy: str = "",
        retry_after: float | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        extra: dict[str, Any] = {"policy": policy}
        if retry_after is not None:
            extra["retry_after"] = retry_after
        super().__init__(msg, data={**extra, **(data or {})})
        self.policy = policy
        self.retry_after = retry_after


class BreakerOpen(CallNotPermitted):
    """Raised when a circuit breaker is open (or its half-open probes are all taken)."""

    error_type = _PROBS + "circuit-breaker-open"
    error_title = "Circuit breaker open."


class BulkheadFull(CallNotPermitted):
    """Raised when a bulkhead has no free slot and its wait queue is full or timed out."""

    error_type = _PROBS + "bulkhead-full"
    error_title = "Too many concurrent calls."


class RateLimited(CallNotPermitted):
    """Raised when a rate limiter has no permit within the allowed wait."""

    error_type = _PROBS + "rate-limited"
    error_title = "Rate limit exceeded."
    status_code = 429
    error_detail = ErrorDetail.TOO_MANY_REQUESTS


class CallTimeout(ResilienceError, OperationTimeout):
    """Raised when a call guarded by :class:`Timeout` outlives its time limit."""

    error_type = _PROBS + "call-timeout"
    error_title = "Call timed out."
    status_code = 504
    error_operation = ErrorOperation.EXECUTE
    error_detail = ErrorDetail.TIMEOUT

    timeout: float
    """The time limit (seconds) that expired."""

    def __init__(self, msg: str | None = None, *, timeout: float = 0.0, policy: str = "") -> None:
        super().__init__(msg, data={"timeout": timeout, "policy": policy})
        self.timeout = timeout
