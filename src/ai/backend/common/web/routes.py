"""Route facts shared by the middlewares: canonical route labels, anonymous handlers, keys,
and the response headers middlewares add (also to streamed responses)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from aiohttp import hdrs, web

if TYPE_CHECKING:
    from ..auth import AuthResult

__all__ = (
    "AUTH_RESULT_KEY",
    "REQUEST_ID_KEY",
    "RESPONSE_HEADERS_KEY",
    "UNMATCHED_ROUTE",
    "PendingHeaders",
    "add_response_header",
    "add_response_headers",
    "anonymous",
    "apply_response_headers",
    "auth_result",
    "canonical_route",
    "claim_response_headers",
    "is_anonymous",
    "merge_response_headers",
    "on_response_prepare",
    "started_status",
)

_RequestKey: Any = getattr(web, "RequestKey", None)  # aiohttp >= 3.14


def _key(name: str) -> Any:
    # Typed request keys where aiohttp has them (no NotAppKeyWarning), plain strings before.
    return _RequestKey(name, object) if _RequestKey is not None else f"backendai.{name}"


AUTH_RESULT_KEY: Final[Any] = _key("auth_result")
"""Request key of the :class:`~ai.backend.common.auth.AuthResult` set by the auth middleware."""
REQUEST_ID_KEY: Final[Any] = _key("request_id")
"""Request key of the request id bound by the request-id middleware."""
RESPONSE_HEADERS_KEY: Final[Any] = _key("response_headers")
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


class PendingHeaders(dict[str, str]):
    """The headers middlewares asked for on a request's response, and the response they were
    last copied onto (so copying twice onto the same response is free)."""

    __slots__ = ("applied_to",)

    applied_to: object


def _pending(headers: Mapping[str, str] | None = None) -> PendingHeaders:
    pending = PendingHeaders() if headers is None else PendingHeaders(headers)
    pending.applied_to = None
    return pending


def _add(headers: PendingHeaders, name: str, value: str) -> None:
    if name == hdrs.VARY and name in headers:
        values = [v.strip() for v in headers[name].split(",")]
        if value not in values:
            headers[name] = ", ".join([*values, value])
    else:
        headers[name] = value


def add_response_header(request: web.Request, name: str, value: str) -> bool:
    """Ask for ``name: value`` on this request's response (``Vary`` values accumulate).

    Returns ``True`` to the first caller of a request: middlewares run outside-in, so that one
    is the outermost and applies the headers (:func:`apply_response_headers`) once the inner
    ones have added theirs; the others only add.
    """
    headers: PendingHeaders | None = request.get(RESPONSE_HEADERS_KEY) if len(request) else None
    owner = headers is None
    if headers is None:
        headers = request[RESPONSE_HEADERS_KEY] = _pending()
    _add(headers, name, value)
    headers.applied_to = None
    return owner


def claim_response_headers(
    request: web.Request, headers: Mapping[str, str]
) -> PendingHeaders | None:
    """Add several headers; the first caller of a request gets the pending record back (to
    hand to :func:`merge_response_headers` once the inner middlewares are done), the others
    ``None``."""
    # An empty request state cannot hold the record: skip get(), whose miss raises KeyError.
    pending: PendingHeaders | None = request.get(RESPONSE_HEADERS_KEY) if len(request) else None
    if pending is None:
        pending = request[RESPONSE_HEADERS_KEY] = _pending(headers)
        return pending
    for name, value in headers.items():
        _add(pending, name, value)
    pending.applied_to = None
    return None


def add_response_headers(request: web.Request, headers: Mapping[str, str]) -> bool:
    """:func:`add_response_header` for several headers at once (same return value)."""
    return claim_response_headers(request, headers) is not None


def merge_response_headers(
    pending: PendingHeaders, response: web.StreamResponse | web.HTTPException
) -> None:
    """Copy ``pending`` onto ``response`` (``Vary`` values merge); the caller checks that the
    response is not prepared yet."""
    if pending.applied_to is response:
        return
    target = response.headers
    vary = pending.get(hdrs.VARY)
    if vary is not None and hdrs.VARY in target:
        have = [v.strip() for v in target[hdrs.VARY].split(",")]
        extra = [v.strip() for v in vary.split(",") if v.strip() not in have]
        target.update({name: value for name, value in pending.items() if name != hdrs.VARY})
        if extra:
            target[hdrs.VARY] = ", ".join([*have, *extra])
    else:
        target.update(pending)  # one call; replaces the values of names already there
    pending.applied_to = response


def apply_response_headers(
    request: web.Request, response: web.StreamResponse | web.HTTPException
) -> None:
    """Copy the added headers onto ``response`` unless it was already prepared (sent)."""
    pending: PendingHeaders | None = request.get(RESPONSE_HEADERS_KEY)
    if pending and not (isinstance(response, web.StreamResponse) and response.prepared):
        merge_response_headers(pending, response)


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """``app.on_response_prepare`` hook: the added headers also reach streamed responses, and
    the prepared response is remembered (:func:`started_status`)."""
    try:
        pending: PendingHeaders = request[RESPONSE_HEADERS_KEY]  # one call, not Mapping.get's two
    except KeyError:
        request[RESPONSE_HEADERS_KEY] = pending = _pending()  # no headers; the response only
        pending.applied_to = response
        return
    if pending.applied_to is not response:
        # Runs inside prepare(): the response counts as prepared, its headers are not sent yet.
        merge_response_headers(pending, response)


def started_status(request: web.Request) -> int | None:
    """The status of a response already prepared for ``request`` (its status line is out, or
    buffered in aiohttp's writer), or ``None`` when a new response can still be sent.

    Knows the response when the :func:`on_response_prepare` hook is installed; without it,
    bytes already written still count, as status 500 (which response sent them is unknown).
    """
    pending: PendingHeaders | None = request.get(RESPONSE_HEADERS_KEY) if len(request) else None
    started = pending.applied_to if pending is not None else None
    if isinstance(started, web.StreamResponse) and started.prepared:
        return started.status
    output_size = getattr(request.writer, "output_size", 0)  # what aiohttp itself checks
    return 500 if isinstance(output_size, int) and output_size > 0 else None
