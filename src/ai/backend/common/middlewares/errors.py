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
  [tests/middlewares/test_errors.py::test_cancel_propagates];
- an exception (``HTTPException`` included) after the handler's response was prepared never
  writes a second response into the first: the connection is closed, so the client sees a
  truncated body (a payload error, never a clean end or a second status line), the error is
  logged once with an error id, and metrics count the status the client got with the error
  code ``backendai_generic_internal-error``
  [tests/middlewares/test_errors.py::test_error_after_prepare_closes_the_connection].
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..contexts import current_request_id
from ..exception import BackendAIError, ErrorCode
from ..web import ProblemResponse, canonical_route, problem_response, started_status

__all__ = ("InternalServerError", "abort_started_response", "error_middleware", "render_error")

log = logging.getLogger(__name__)
_INTERNAL = ErrorCode("backendai", "generic", "internal-error")


class InternalServerError(BackendAIError):
    """What the client sees of an unexpected exception: an error id, nothing else."""


class _AbortedResponse(web.StreamResponse):
    """Stands for a response that started before an error: aiohttp's ``finish_response`` calls
    ``prepare`` (nothing) and ``write_eof``, whose ``ConnectionResetError`` makes it drop the
    connection quietly instead of ending the body cleanly."""

    def __init__(self, status: int) -> None:
        super().__init__(status=status)
        self.error_code = _INTERNAL  # read by the metrics middleware, as on ProblemResponse

    @property
    def prepared(self) -> bool:
        return True  # nothing may be added to it or sent for it

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        raise ConnectionResetError("the response failed after it started; connection closed")


def abort_started_response(
    request: web.Request, exc: BaseException, logger: logging.Logger, status: int
) -> web.StreamResponse:
    """Log ``exc`` once and close the connection of a response that already started (with
    ``status``): the client sees a truncated body. Returns the stand-in to hand to aiohttp."""
    error_id = str(uuid.uuid4())
    request_id = current_request_id()
    extra = {"request_id": request_id, "error_id": error_id}
    if isinstance(exc, ConnectionError):  # the client left mid-stream: nothing to trace
        logger.info(
            "client of %s %s left mid-response (request %s, error id %s)",
            request.method,
            canonical_route(request),
            request_id,
            error_id,
            extra=extra,
        )
    else:
        logger.error(
            "error %s after the %d response to %s %s started (request %s); closing the connection",
            error_id,
            status,
            request.method,
            canonical_route(request),
            request_id,
            exc_info=exc,
            extra=extra,
        )
    transport = request.transport
    if transport is not None:
        transport.close()  # sends what was written, then ends without the last chunk
    return _AbortedResponse(status)


def render_error(
    request: web.Request, exc: Exception, logger: logging.Logger
) -> web.StreamResponse:
    """The problem+json response of an exception a handler raised (not an ``HTTPException``).

    A ``BackendAIError`` renders as itself (logged as a warning when it is a 5xx); anything
    else is logged once with its traceback and becomes an opaque 500 with an error id. When
    the handler's own response already started, see :func:`abort_started_response`.
    """
    if (status := started_status(request)) is not None:
        return abort_started_response(request, exc, logger, status)
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
        except asyncio.CancelledError:
            raise
        except web.HTTPException as exc:
            if (status := started_status(request)) is not None:
                return abort_started_response(request, exc, logger, status)
            raise
        except Exception as exc:
            return render_error(request, exc, logger)

    return errors
