"""Metrics middleware: count and time every request by method, canonical route and outcome.

Guarantees:
- the ``endpoint`` label is the canonical route, so path parameters do not multiply series
  [tests/middlewares/test_metrics.py::test_path_parameters_do_not_explode_cardinality];
- unmatched paths share one label and unknown methods one label
  [tests/middlewares/test_metrics.py::test_unmatched_and_odd_methods_are_bounded];
- error responses carry their error code [tests/middlewares/test_metrics.py::test_error_code_label];
- a failure after the response started (the connection is closed mid-body) is counted with the
  status the client received and the error code ``backendai_generic_internal-error``, so error
  rates see it while status panels show what clients got; without the prepare hook of
  ``install_middleware_stack`` the status is unknown and counted as 500
  [tests/middlewares/test_errors.py::test_error_after_prepare_closes_the_connection].
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..exception import BackendAIError, ErrorCode
from ..metrics import APIMetricObserver
from ..web import canonical_route

__all__ = ("KNOWN_METHODS", "exception_outcome", "metrics_middleware", "record_request")

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_INTERNAL = ErrorCode("backendai", "generic", "internal-error")


def exception_outcome(exc: BaseException) -> tuple[int, ErrorCode | None]:
    """``(status, error code)`` recorded for an exception that escapes the handler."""
    if isinstance(exc, web.HTTPException):
        return exc.status, None
    if isinstance(exc, BackendAIError):  # no error middleware below this one
        return exc.status_code, exc.error_code()
    if isinstance(exc, asyncio.CancelledError):
        return 499, None  # the client left; nginx's "client closed request"
    return 500, _INTERNAL


def record_request(
    observer: APIMetricObserver,
    request: web.Request,
    status: int,
    error_code: ErrorCode | None,
    duration: float,
) -> None:
    """Record one request: method (``OTHER`` when unknown), canonical route, outcome, seconds."""
    method = request.method
    observer.observe_request(
        method=method if method in KNOWN_METHODS else "OTHER",
        endpoint=canonical_route(request),
        status_code=status,
        duration=duration,
        error_code=error_code,
    )


def metrics_middleware(
    observer: APIMetricObserver, *, clock: Callable[[], float] = time.perf_counter
) -> Middleware:
    """The middleware, recording into ``observer``."""

    @web.middleware
    async def metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = clock()
        try:
            response = await handler(request)
        except BaseException as exc:
            status, error_code = exception_outcome(exc)
            record_request(observer, request, status, error_code, clock() - start)
            raise
        # ProblemResponse carries its error code; other responses carry none.
        code: ErrorCode | None = getattr(response, "error_code", None)
        record_request(observer, request, response.status, code, clock() - start)
        return response

    return metrics
