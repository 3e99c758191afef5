"""Route facts shared by the middlewares: canonical route labels, anonymous handlers, keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from aiohttp import hdrs, web
from multidict import CIMultiDict

if TYPE_CHECKING:
    from ..auth import AuthResult

__all__ = (
    "AUTH_RESULT_KEY",
    "ERROR_CODE_KEY",
    "PENDING_HEADERS_KEY",
    "REQUEST_ID_KEY",
    "UNMATCHED_ROUTE",
    "add_response_header",
    "anonymous",
    "apply_response_headers",
    "auth_result",
    "canonical_route",
    "is_anonymous",
    "on_response_prepare",
)

_RequestKey: Any = getattr(web, "RequestKey", None)  # aiohttp >= 3.14


def _key(name: str) -> Any:
    # Typed request keys where aiohttp has them (no NotAppKeyWarning), plain strings before.
    return _RequestKey(name, object) if _RequestKey is not None else f"backendai.{name}"


AUTH_RESULT_KEY: Final[Any] = _key("auth_result")
"""Request key of the :class:`~ai.backend.common.auth.AuthResult` set by the auth middleware."""
ERROR_CODE_KEY: Final[Any] = _key("error_code")
"""Request key of the ``ErrorCode`` of the error rendered by the error middleware."""
REQUEST_ID_KEY: Final[Any] = _key("request_id")
"""Request key of the request id bound by the request-id middleware."""
PENDING_HEADERS_KEY: Final[Any] = _key("pending_headers")
"""Request key of the headers middlewares want on the response, streamed or not."""
UNMATCHED_ROUTE = "__unmatched__"
"""The route label of requests that match no route (404/405), whatever their path."""

_ANONYMOUS_ATTR = "__backendai_anonymous__"
H = TypeVar("H", bound=Callable[..., Any])


def canonical_route(request: web.Request) -> str:
    """The route's canonical form (``/folders/{name}``), never the raw path; or UNMATCHED_ROUTE."""
    resource = request.match_info.route.resource
    if resource is None:
        return UNMATCHED_ROUTE
    return resource.canonical


def anonymous(handler: H) -> H:
    """Mark a handler (function or ``web.View`` class) as served without authentication."""
    setattr(handler, _ANONYMOUS_ATTR, True)
    return handler


def is_anonymous(handler: Any) -> bool:
    """Whether ``handler`` was marked with :func:`anonymous`."""
    return bool(getattr(handler, _ANONYMOUS_ATTR, False))


def auth_result(request: web.Request) -> AuthResult | None:
    """Who the request was authenticated as (``None`` on anonymous routes)."""
    result: AuthResult | None = request.get(AUTH_RESULT_KEY)
    return result


def add_response_header(request: web.Request, name: str, value: str) -> None:
    """Ask for ``name: value`` on this request's response (``Vary`` values accumulate)."""
    pending: CIMultiDict[str] | None = request.get(PENDING_HEADERS_KEY)
    if pending is None:
        pending = request[PENDING_HEADERS_KEY] = CIMultiDict()
    if name.lower() == "vary" and name in pending:
        values = [v.strip() for v in pending[name].split(",")]
        if value not in values:
            pending[name] = ", ".join([*values, value])
    else:
        pending[name] = value


def _merge(pending: CIMultiDict[str], headers: Any) -> None:
    for name, value in pending.items():
        if name.lower() == "vary" and hdrs.VARY in headers:
            have = [v.strip() for v in headers[hdrs.VARY].split(",")]
            extra = [v.strip() for v in value.split(",") if v.strip() not in have]
            if extra:
                headers[hdrs.VARY] = ", ".join([*have, *extra])
        else:
            headers[name] = value


def apply_response_headers(
    request: web.Request, response: web.StreamResponse | web.HTTPException
) -> None:
    """Copy the pending headers onto ``response`` unless it was already prepared (sent)."""
    pending: CIMultiDict[str] | None = request.get(PENDING_HEADERS_KEY)
    if not pending or (isinstance(response, web.StreamResponse) and response.prepared):
        return
    _merge(pending, response.headers)


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """``app.on_response_prepare`` hook: pending headers also reach streamed responses."""
    pending: CIMultiDict[str] | None = request.get(PENDING_HEADERS_KEY)
    if pending:
        # Runs inside prepare(): the response counts as prepared, its headers are not sent yet.
        _merge(pending, response.headers)
