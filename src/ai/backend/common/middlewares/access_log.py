"""Access log middleware: one structured stdlib log record per request.

Each record's ``extra`` carries ``request_id``, ``user_id``, ``access_key``, ``method``,
``route`` (canonical), ``path``, ``status``, ``duration_ms`` and ``client_ip``; the message is a
readable one-liner.

Guarantees: every request is logged once, errors and aiohttp exceptions included, with the
final status [tests/middlewares/test_access_log.py::test_one_record_per_request].
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..web import REQUEST_ID_KEY, auth_result, canonical_route

__all__ = ("access_log_middleware", "log_access")

log = logging.getLogger("ai.backend.common.access")


def log_access(
    logger: logging.Logger, level: int, request: web.Request, status: int, duration: float
) -> None:
    """Write the access record of one request (``duration`` in seconds); the caller has
    checked ``logger.isEnabledFor(level)``."""
    auth = auth_result(request)
    path = request.rel_url.raw_path
    duration_ms = duration * 1000
    logger.log(
        level,
        "%s %s %d %.1fms",
        request.method,
        path,
        status,
        duration_ms,
        extra={
            "request_id": request.get(REQUEST_ID_KEY),
            "user_id": str(auth.keypair.user_id) if auth else None,
            "access_key": auth.access_key if auth else None,
            "method": request.method,
            "route": canonical_route(request),
            "path": path,
            "status": status,
            "duration_ms": round(duration_ms, 3),
            "client_ip": request.remote,
        },
    )


def access_log_middleware(
    *,
    logger: logging.Logger | None = None,
    level: int = logging.INFO,
    clock: Callable[[], float] = time.perf_counter,
) -> Middleware:
    """The middleware, logging to ``logger`` (``ai.backend.common.access`` by default)."""
    logger = logger or log

    @web.middleware
    async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = clock()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            if logger.isEnabledFor(level):
                log_access(logger, level, request, status, clock() - start)

    return access_log
