"""CORS middleware: answers preflights and adds the CORS headers to allowed origins.

Guarantees:
- a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed origin for
  an allowed method and headers gets 204 with the allow headers, without reaching auth or the
  handler [tests/middlewares/test_cors.py::test_preflight_allowed];
- a preflight asking for anything not allowed gets 403 and no allow headers
  [tests/middlewares/test_cors.py::test_preflight_rejected];
- responses to listed origins (errors included) carry ``Access-Control-Allow-Origin`` echoing
  the origin, and every response carries ``Vary: Origin``
  [tests/middlewares/test_cors.py::test_simple_request_headers];
- with any origin allowed, every response carries the same ``Access-Control-Allow-Origin: *``,
  with or without an ``Origin`` header, and no ``Vary`` (what the Fetch spec asks of a static
  value, so a shared cache never serves a copy without it to a CORS request)
  [tests/middlewares/test_cors.py::test_any_origin];
- any origin together with credentials is refused (``InvalidArgument``): it would let every
  site read credentialed responses; the ``null`` origin (sandboxed documents, ``file:``) is
  allowed only when listed
  [tests/middlewares/test_cors.py::test_wildcard_with_credentials_refused],
  [tests/middlewares/test_cors.py::test_null_origin_only_when_listed].

Limits: ``*`` is readable by every document, sandboxed ones included; only a preflight from
``null`` is refused under any origin
[tests/middlewares/test_cors.py::test_null_origin_only_when_listed].
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from ..exception import InvalidArgument
from ..web import (
    CORSRejected,
    add_response_header,
    add_response_headers,
    apply_response_headers,
    problem_response,
)

__all__ = ("CORSOptions", "CORSPolicy", "cors_middleware")

_DEFAULT_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_DEFAULT_HEADERS = (
    "Authorization",
    "Content-Type",
    "Date",
    "X-BackendAI-Date",
    "X-BackendAI-Version",
    "X-BackendAI-Token",
    "X-BackendAI-RequestID",
)
_DEFAULT_EXPOSE = ("X-BackendAI-RequestID",)


@dataclass(frozen=True)
class CORSOptions:
    """Which cross-origin requests are allowed; ``allow_origins=("*",)`` allows any origin
    (without credentials only); ``"null"`` is allowed only when listed."""

    allow_origins: Collection[str] = ()
    allow_methods: Collection[str] = _DEFAULT_METHODS
    allow_headers: Collection[str] = _DEFAULT_HEADERS
    expose_headers: Collection[str] = _DEFAULT_EXPOSE
    allow_credentials: bool = False
    max_age: int | None = 600
    _origins: frozenset[str] = field(init=False, repr=False)
    _methods: frozenset[str] = field(init=False, repr=False)
    _headers: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.allow_origins, str):
            raise InvalidArgument(
                "allow_origins must be a collection of origins, not a string",
                data={"field": "allow_origins"},
            )
        object.__setattr__(self, "_origins", frozenset(o.rstrip("/") for o in self.allow_origins))
        if self.any_origin and self.allow_credentials:
            raise InvalidArgument(
                'allow_origins ("*") with allow_credentials=True would let every site read '
                "credentialed responses; list the allowed origins instead",
                data={"field": "allow_credentials"},
            )
        object.__setattr__(self, "_methods", frozenset(m.upper() for m in self.allow_methods))
        object.__setattr__(self, "_headers", frozenset(h.lower() for h in self.allow_headers))

    @property
    def any_origin(self) -> bool:
        """Whether every origin is allowed."""
        return "*" in self._origins

    def origin_allowed(self, origin: str) -> bool:
        """Whether ``origin`` may send preflighted requests (``null`` only when listed)."""
        return origin in self._origins or (self.any_origin and origin != "null")

    def method_allowed(self, method: str) -> bool:
        """Whether a cross-origin request may use ``method``."""
        return method.upper() in self._methods

    def headers_allowed(self, names: Collection[str]) -> bool:
        """Whether a cross-origin request may send all of ``names``."""
        return all(name.lower() in self._headers for name in names)


class CORSPolicy:
    """The per-request CORS work of one :class:`CORSOptions`, shared by :func:`cors_middleware`
    and the fused stack: preflight answers and the headers of allowed origins (cached)."""

    __slots__ = (
        "_allowed",
        "_cache_limit",
        "_options",
        "_static",
        "allow_headers",
        "allow_methods",
        "always",
        "varies",
    )

    def __init__(self, options: CORSOptions, *, cache_limit: int = 1024) -> None:
        self._options = options
        self.allow_methods = ", ".join(sorted(options._methods))
        self.allow_headers = ", ".join(sorted(options.allow_headers))
        # Listed origins are echoed, so answers depend on the Origin: "Vary: Origin".
        self.varies = not options.any_origin
        expose_headers = ", ".join(options.expose_headers)
        self._static: dict[str, str] = {}
        if options.allow_credentials:
            self._static[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
        if expose_headers:
            self._static[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = expose_headers
        # Any origin: one static answer for every response, Origin or not (Fetch spec,
        # "CORS protocol and HTTP caches"). Shared: callers copy it, never change it.
        self.always: dict[str, str] | None = None
        if options.any_origin:
            self.always = {hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: "*", **self._static}
        self._allowed: dict[str, dict[str, str]] = {}
        self._cache_limit = cache_limit

    def _allow_origin_value(self, origin: str) -> str:
        return "*" if self._options.any_origin else origin

    def origin_headers(self, origin: str) -> dict[str, str] | None:
        """The headers a response to ``origin`` carries, or ``None`` when it is not allowed
        (with any origin allowed: :attr:`always`, for every origin).

        The dict is shared: callers copy it, never change it.
        """
        if self.always is not None:
            return self.always
        headers = self._allowed.get(origin)
        if headers is None:
            if not self._options.origin_allowed(origin):
                return None
            headers = {hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin}
            headers.update(self._static)
            if len(self._allowed) < self._cache_limit:
                self._allowed[origin] = headers
        return headers

    def preflight(self, request: web.Request, origin: str, requested_method: str) -> web.Response:
        """The answer to a preflight: 204 with the allow headers, or a 403 problem."""
        options = self._options
        raw = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, "")
        requested_headers = [h.strip() for h in raw.split(",") if h.strip()]
        problem: str | None = None
        if not options.origin_allowed(origin):
            problem = f"origin {origin[:100]!r} is not allowed"
        elif not options.method_allowed(requested_method):
            problem = f"method {requested_method[:20]!r} is not allowed"
        elif not options.headers_allowed(requested_headers):
            problem = f"headers {raw[:200]!r} are not allowed"
        if problem is not None:
            return problem_response(CORSRejected(f"CORS preflight rejected: {problem}"))
        preflight = web.Response(status=204)
        headers = preflight.headers
        headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = self._allow_origin_value(origin)
        headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = self.allow_methods
        if requested_headers:
            headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = self.allow_headers
        if options.allow_credentials:
            headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
        if options.max_age is not None:
            headers[hdrs.ACCESS_CONTROL_MAX_AGE] = str(options.max_age)
        return preflight


def cors_middleware(options: CORSOptions) -> Middleware:
    """The middleware for ``options``."""
    policy = CORSPolicy(options)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        owner = add_response_header(request, hdrs.VARY, "Origin") if policy.varies else False
        if origin is None:
            if policy.always is not None:  # the same answer with or without an Origin
                owner = add_response_headers(request, policy.always) or owner
        else:
            requested_method = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD)
            if request.method == hdrs.METH_OPTIONS and requested_method:
                preflight = policy.preflight(request, origin, requested_method)
                if owner:
                    apply_response_headers(request, preflight)
                return preflight
            allowed = policy.origin_headers(origin)
            if allowed is not None:
                owner = add_response_headers(request, allowed) or owner
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if owner:
                apply_response_headers(request, exc)
            raise
        if owner:
            apply_response_headers(request, response)
        return response

    return cors
