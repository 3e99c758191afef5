"""Request id middleware: read ``X-BackendAI-RequestID`` or make one, bind it, echo it.

Guarantees:
- every response, errors and streams included, carries the request id, which is the client's
  when valid and a fresh one otherwise; it is bound (``contexts.current_request_id``) while the
  request is handled [tests/middlewares/test_request_id.py::test_request_id_echoed];
- fresh ids (64 random bits) are never handed out twice, across threads
  [tests/middlewares/test_request_id.py::test_fresh_ids_unique_across_threads] and to a forked
  worker [tests/middlewares/test_request_id.py::test_fresh_ids_not_shared_with_a_forked_child].
"""

from __future__ import annotations

import os
from collections import deque

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..contexts import bind_client_ip, bind_request_id
from ..web import REQUEST_ID_KEY, add_response_header, apply_response_headers

__all__ = (
    "REQUEST_ID_HEADER",
    "fresh_request_id",
    "request_id_middleware",
    "resolve_request_id",
)

REQUEST_ID_HEADER = "X-BackendAI-RequestID"
_MAX_LEN = 256


def _valid(value: str) -> bool:
    return 0 < len(value) <= _MAX_LEN and value.isascii() and value.isprintable()


_FRESH_BATCH = 256
_fresh: deque[str] = deque()
# A forked worker must not hand out the ids its parent drew.
os.register_at_fork(after_in_child=_fresh.clear)


def fresh_request_id() -> str:
    """A new id of ``contexts.new_request_id``'s form (``req-`` + 16 random hex digits), drawn
    256 at a time from one ``os.urandom`` call; safe across threads and forks."""
    try:
        return _fresh.popleft()  # atomic, so threads never share an id
    except IndexError:
        digits = os.urandom(8 * _FRESH_BATCH).hex()
        _fresh.extend(["req-" + digits[i : i + 16] for i in range(16, len(digits), 16)])
        return "req-" + digits[:16]


def resolve_request_id(request: web.Request, header: str, trust_incoming: bool) -> str:
    """The client's id from ``header`` when trusted and well-formed, else a fresh one."""
    incoming = request.headers.get(header) if trust_incoming else None
    return incoming if incoming is not None and _valid(incoming) else fresh_request_id()


def request_id_middleware(
    *, header: str = REQUEST_ID_HEADER, trust_incoming: bool = True, client_ip: bool = True
) -> Middleware:
    """The middleware; an incoming id is used only when ``trust_incoming`` and well-formed.

    With ``client_ip`` the peer address is also bound (``contexts.current_client_ip``).
    """

    @web.middleware
    async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = resolve_request_id(request, header, trust_incoming)
        request[REQUEST_ID_KEY] = rid
        owner = add_response_header(request, header, rid)
        with bind_request_id(rid), bind_client_ip(request.remote if client_ip else None):
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if owner:
                    apply_response_headers(request, exc)
                raise
        if owner:
            apply_response_headers(request, response)
        return response

    return request_id
