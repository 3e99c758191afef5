"""Error middleware: exceptions become problem+json responses; nothing leaks to the client.

Guarantees:
- a ``BackendAIError`` becomes its ``problem()`` body, its status and
  ``application/problem+json`` [tests/middlewares/test_errors.py::test_backendai_error_rendered];
- any other exception becomes a 500 with an error id, logged once with its traceback, and no
  traceback or message in the body [tests/middlewares/test_errors.py::test_unexpected_error_500];
- an error whose problem body cannot be encoded (``data`` holding bytes, paths, exceptions or
  lone surrogates) becomes that same opaque 500, logged once, never aiohttp's plain-text 500
  [tests/middlewares/test_errors.py::test_unencodable_problem_falls_back_to_500];
- aiohttp's ``HTTPException`` (404, 405, redirects, 413) passes through with its own status and
  headers [tests/middlewares/test_errors.py::test_http_exceptions_pass_through];
- cancellation is never turned into a response
  [tests/middlewares/test_errors.py::test_cancel_propagates].
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..contexts import current_request_id
from ..exception import BackendAIError
from ..web import ProblemResponse, canonical_route, problem_response

__all__ = ("InternalServerError", "error_middleware", "render_error")

log = logging.getLogger(__name__)


class InternalServerError(BackendAIError):
    """What the client sees of an unexpected exception: an error id, nothing else."""


def render_error(request: web.Request, exc: Exception, logger: logging.Logger) -> ProblemResponse:
    """The problem+json response of an exception a handler raised (not an ``HTTPException``).

    A ``BackendAIError`` renders as itself (logged as a warning when it is a 5xx); anything
    else is logged once with its traceback and becomes an opaque 500 with an error id.
    """
    if isinstance(exc, BackendAIError):
        try:
            response = problem_response(exc)
        except Exception:  # orjson refused data or msg: fall back to the opaque 500
            return _internal_error(request, exc, logger, "error with an unencodable problem body")
        if exc.status_code >= 500:
            logger.warning(
                "%s %s failed: %r",
                request.method,
                canonical_route(request),
                exc,
                extra={"request_id": current_request_id(), "error_code": str(exc.error_code())},
            )
        return response
    return _internal_error(request, exc, logger, "unexpected error")


def _internal_error(
    request: web.Request, exc: Exception, logger: logging.Logger, what: str
) -> ProblemResponse:
    error_id = str(uuid.uuid4())
    request_id = current_request_id()
    logger.exception(
        "%s %s in %s %s (request %s)",
        what,
        error_id,
        request.method,
        canonical_route(request),
        request_id,
        exc_info=exc,
        extra={"request_id": request_id, "error_id": error_id},
    )
    error = InternalServerError(
        f"Internal server error (error id {error_id}).",
        data={"error_id": error_id, "request_id": request_id},
    )
    return problem_response(error)


def error_middleware(*, logger: logging.Logger | None = None) -> Middleware:
    """The middleware; unexpected exceptions are logged to ``logger`` (this module's by default)."""
    logger = logger or log

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except (web.HTTPException, asyncio.CancelledError):
            raise
        except Exception as exc:
            return render_error(request, exc, logger)

    return errors
