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

__all__ = ("access_log_middleware",)

log = logging.getLogger("ai.backend.common.access")


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
                duration_ms = (clock() - start) * 1000
                auth = auth_result(request)
                route = canonical_route(request)
                logger.log(
                    level,
                    "%s %s %d %.1fms",
                    request.method,
                    request.rel_url.raw_path,
                    status,
                    duration_ms,
                    extra={
                        "request_id": request.get(REQUEST_ID_KEY),
                        "user_id": str(auth.keypair.user_id) if auth else None,
                        "access_key": auth.access_key if auth else None,
                        "method": request.method,
                        "route": route,
                        "path": request.rel_url.raw_path,
                        "status": status,
                        "duration_ms": round(duration_ms, 3),
                        "client_ip": request.remote,
                    },
                )

    return access_log
