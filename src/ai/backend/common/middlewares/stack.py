"""Assemble the middlewares in the one order that works, or fuse them into one.

Outermost first: request id (every response gets it, the id is bound for all below), access
log (sees the final status), metrics (times everything below), CORS (answers preflights before
auth; adds headers to error responses too), errors (renders what auth and handlers raise),
auth (innermost, so its failures are rendered, counted, logged and CORS-readable).

:func:`fused_middleware` does the same work in that order in one aiohttp middleware (one
coroutine frame instead of six, one pending-headers record, headers set once), calling the same
functions as the separate middlewares; :func:`install_middleware_stack` installs it by default.

Guarantees:
- the fused middleware answers every request as the separate middlewares do: status, headers,
  body, metric series, access record and bound context
  [tests/middlewares/test_stack.py::test_fused_matches_separate];
- :func:`install_middleware_stack` with ``fused=False`` installs the separate middlewares
  [tests/middlewares/test_stack.py::test_install_unfused].
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from ..auth import HMACVerifier, JWTVerifier
from ..contexts import bind_client_ip, bind_request_id, bind_user
from ..exception import ErrorCode
from ..metrics import APIMetricObserver, CommonMetricRegistry
from ..web import (
    AUTH_RESULT_KEY,
    REQUEST_ID_KEY,
    apply_response_headers,
    claim_response_headers,
    merge_response_headers,
    on_response_prepare,
    started_status,
)
from .access_log import access_log_middleware, log_access
from .access_log import log as access_logger
from .auth import Authenticator, auth_middleware
from .cors import CORSOptions, CORSPolicy, cors_middleware
from .errors import abort_started_response, error_middleware, render_error
from .errors import log as error_logger
from .metrics import exception_outcome, metrics_middleware, record_request
from .request_id import REQUEST_ID_HEADER, request_id_middleware, resolve_request_id

__all__ = ("build_middleware_stack", "fused_middleware", "install_middleware_stack")

_NO_BINDING = contextlib.nullcontext()
_INTERNAL = ErrorCode("backendai", "generic", "internal-error")


def _observer(metrics: APIMetricObserver | CommonMetricRegistry | None) -> APIMetricObserver | None:
    return metrics.api if isinstance(metrics, CommonMetricRegistry) else metrics


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
    """The separate middlewares, outermost first, for ``web.Application(middlewares=...)``.

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
    observer = _observer(metrics)
    if observer is not None:
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


def fused_middleware(
    *,
    request_id: bool = True,
    access_log: bool | logging.Logger = True,
    metrics: APIMetricObserver | CommonMetricRegistry | None = None,
    cors: CORSOptions | None = None,
    errors: bool | logging.Logger = True,
    hmac: HMACVerifier | None = None,
    jwt: JWTVerifier | None = None,
    anonymous_routes: Collection[str] = (),
    clock: Callable[[], float] = time.perf_counter,
) -> Middleware:
    """:func:`build_middleware_stack`'s work in one middleware (same options, same answers)."""
    log_to: logging.Logger | None = None
    if access_log:
        log_to = access_log if isinstance(access_log, logging.Logger) else access_logger
    log_level = logging.INFO
    observer = _observer(metrics)
    policy = CORSPolicy(cors) if cors is not None else None
    vary = policy is not None and policy.varies
    render_to: logging.Logger | None = None
    if errors:
        render_to = errors if isinstance(errors, logging.Logger) else error_logger
    auth: Authenticator | None = None
    if hmac is not None or jwt is not None:
        auth = Authenticator(hmac=hmac, jwt=jwt, anonymous_routes=anonymous_routes)

    @web.middleware
    async def backendai_stack(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = clock()
        pending: dict[str, str] = {}
        bind_id: contextlib.AbstractContextManager[object] = _NO_BINDING
        bind_ip: contextlib.AbstractContextManager[object] = _NO_BINDING
        if request_id:  # request id: outermost
            rid = resolve_request_id(request, REQUEST_ID_HEADER, True)
            pending[REQUEST_ID_HEADER] = rid
            bind_id, bind_ip = bind_request_id(rid), bind_client_ip(request.remote)
        preflight: web.Response | None = None
        if policy is not None:  # CORS: a preflight is answered here, below log and metrics
            if vary:
                pending[hdrs.VARY] = "Origin"
            headers = request.headers
            origin = headers.get(hdrs.ORIGIN)
            if origin is not None:
                if request.method == hdrs.METH_OPTIONS and (
                    requested_method := headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD)
                ):
                    preflight = policy.preflight(request, origin, requested_method)
                elif (allowed := policy.origin_headers(origin)) is not None:
                    pending.update(allowed)
            elif policy.always is not None:  # the same answer with or without an Origin
                pending.update(policy.always)
        owner = claim_response_headers(request, pending) if pending else None
        if request_id:  # after the claim, which is cheaper on an empty request state
            request[REQUEST_ID_KEY] = rid
        status = log_status = 500
        error_code: ErrorCode | None = _INTERNAL
        with bind_id, bind_ip:
            try:
                if preflight is not None:
                    response: web.StreamResponse = preflight
                else:
                    try:  # errors, then auth, then the handler
                        if auth is not None and auth.needs_auth(request):
                            result = await auth.authenticate(request)
                            request[AUTH_RESULT_KEY] = result
                            with bind_user(auth.user_of(result.keypair)):
                                response = await handler(request)
                        else:
                            response = await handler(request)
                    except asyncio.CancelledError:
                        raise
                    except web.HTTPException as exc:
                        if render_to is None or (started := started_status(request)) is None:
                            raise
                        response = abort_started_response(request, exc, render_to, started)
                    except Exception as exc:
                        if render_to is None:
                            raise
                        response = render_error(request, exc, render_to)
                status = log_status = response.status
                error_code = getattr(response, "error_code", None)  # set by ProblemResponse
            except BaseException as exc:
                status, error_code = exception_outcome(exc)
                if isinstance(exc, web.HTTPException):
                    log_status = exc.status
                    if owner is not None:
                        apply_response_headers(request, exc)
                raise
            finally:
                duration = clock() - start
                if observer is not None:
                    record_request(observer, request, status, error_code, duration)
                if log_to is not None and log_to.isEnabledFor(log_level):
                    log_access(log_to, log_level, request, log_status, duration)
        if owner is not None and not response.prepared:
            merge_response_headers(owner, response)
        return response

    return backendai_stack


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
    fused: bool = True,
) -> None:
    """Append the stack to ``app`` (fused, or the separate middlewares with ``fused=False``)
    and hook the pending response headers (request id, CORS) onto streamed responses."""
    if fused:
        middleware = fused_middleware(
            request_id=request_id,
            access_log=access_log,
            metrics=metrics,
            cors=cors,
            errors=errors,
            hmac=hmac,
            jwt=jwt,
            anonymous_routes=anonymous_routes,
        )
        app.middlewares.append(middleware)
    else:
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
