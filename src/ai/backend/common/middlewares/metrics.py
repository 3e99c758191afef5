"""Metrics middleware: count and time every request by method, canonical route and outcome.

Guarantees:
- the ``endpoint`` label is the canonical route, so path parameters do not multiply series
  [tests/middlewares/test_metrics.py::test_path_parameters_do_not_explode_cardinality];
- unmatched paths share one label and unknown methods one label
  [tests/middlewares/test_metrics.py::test_unmatched_and_odd_methods_are_bounded];
- error responses carry their error code [tests/middlewares/test_metrics.py::test_error_code_label].
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

__all__ = ("KNOWN_METHODS", "metrics_middleware")

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_INTERNAL = ErrorCode("backendai", "generic", "internal-error")


def metrics_middleware(
    observer: APIMetricObserver, *, clock: Callable[[], float] = time.perf_counter
) -> Middleware:
    """The middleware, recording into ``observer``."""

    @web.middleware
    async def metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = clock()
        status = 500
        error_code: ErrorCode | None = _INTERNAL
        try:
            response = await handler(request)
            status = response.status
            error_code = getattr(response, "error_code", None)  # set by ProblemResponse
            return response
        except web.HTTPException as exc:
            status = exc.status
            error_code = None
            raise
        except BackendAIError as exc:  # no error middleware below this one
            status, error_code = exc.status_code, exc.error_code()
            raise
        except asyncio.CancelledError:
            status, error_code = 499, None  # the client left; nginx's "client closed request"
            raise
        finally:
            method = request.method if request.method in KNOWN_METHODS else "OTHER"
            observer.observe_request(
                method=method,
                endpoint=canonical_route(request),
                status_code=status,
                duration=clock() - start,
                error_code=error_code,
            )

    return metrics
