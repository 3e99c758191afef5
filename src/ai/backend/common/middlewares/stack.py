"""Assemble the middlewares in the one order that works.

Outermost first: request id (every response gets it, the id is bound for all below), access
log (sees the final status), metrics (times everything below), CORS (answers preflights before
auth; adds headers to error responses too), errors (renders what auth and handlers raise),
auth (innermost, so its failures are rendered, counted, logged and CORS-readable).
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..auth import HMACVerifier, JWTVerifier
from ..metrics import APIMetricObserver, CommonMetricRegistry
from ..web import on_response_prepare
from .access_log import access_log_middleware
from .auth import auth_middleware
from .cors import CORSOptions, cors_middleware
from .errors import error_middleware
from .metrics import metrics_middleware
from .request_id import request_id_middleware

__all__ = ("build_middleware_stack", "install_middleware_stack")


def build_middleware_stack(
    *,
    request_id: bool = True,
    access_log: bool | logging.Logger = True,
    metrics: APIMetricObserver | CommonMetricRegistry | None = None,
    cors: CORSOptions | None = None,
    errors: bool | logging.Logger = True,
    hmac: HMACVerifier | None = None,
    jwt: JWTVerifier | None = None,
    anonymous_routes: Collection[str] = (),
) -> list[Middleware]:
    """The middlewares, outermost first, for ``web.Application(middlewares=...)``.

    Each part is left out when disabled (``False`` / ``None``); auth is on when a verifier is
    given. Prefer :func:`install_middleware_stack`, which also lets the pending headers
    (request id, CORS) reach streamed responses that do not apply them themselves.
    """
    stack: list[Middleware] = []
    if request_id:
        stack.append(request_id_middleware())
    if access_log:
        logger = access_log if isinstance(access_log, logging.Logger) else None
        stack.append(access_log_middleware(logger=logger))
    if metrics is not None:
        observer = metrics.api if isinstance(metrics, CommonMetricRegistry) else metrics
        stack.append(metrics_middleware(observer))
    if cors is not None:
        stack.append(cors_middleware(cors))
    if errors:
        stack.append(
            error_middleware(logger=errors if isinstance(errors, logging.Logger) else None)
        )
    if hmac is not None or jwt is not None:
        stack.append(auth_middleware(hmac=hmac, jwt=jwt, anonymous_routes=anonymous_routes))
    return stack


def install_middleware_stack(
    app: web.Application,
    *,
    request_id: bool = True,
    access_log: bool | logging.Logger = True,
    metrics: APIMetricObserver | CommonMetricRegistry | None = None,
    cors: CORSOptions | None = None,
    errors: bool | logging.Logger = True,
    hmac: HMACVerifier | None = None,
    jwt: JWTVerifier | None = None,
    anonymous_routes: Collection[str] = (),
) -> None:
    """Append :func:`build_middleware_stack` to ``app`` and hook pending response headers."""
    app.middlewares.extend(
        build_middleware_stack(
            request_id=request_id,
            access_log=access_log,
            metrics=metrics,
            cors=cors,
            errors=errors,
            hmac=hmac,
            jwt=jwt,
            anonymous_routes=anonymous_routes,
        )
    )
    app.on_response_prepare.append(on_response_prepare)
