"""Auth middleware: JWT (``X-BackendAI-Token``) first, then the HMAC ``Authorization`` header.

Routes are authenticated unless their handler is marked with ``ai.backend.common.web.anonymous``
or their canonical route or path is listed in ``anonymous_routes``; unmatched paths go on to
their 404/405 unauthenticated. The result is stored on the request (``web.auth_result``) and
the user is bound (``contexts.current_user``) while the handler runs.

Guarantees:
- the official client's signed requests (the upstream vectors) are accepted through a real
  server [tests/middlewares/test_auth.py::test_vectors_accepted_through_server];
- fuzzed ``Authorization``, date and token headers always give a 4xx, never a 5xx
  [tests/middlewares/test_auth.py::test_fuzz_headers_always_4xx], also as raw bytes that are
  not UTF-8 on a socket, with keypairs in memory or Redis: always a 4xx problem+json
  [tests/middlewares/test_auth.py::test_fuzz_raw_header_bytes_always_4xx_problem];
- anonymous routes are served without credentials; others are 401 without them
  [tests/middlewares/test_auth.py::test_anonymous_routes];
- ``require_role`` answers 403 to other roles [tests/middlewares/test_auth.py::test_require_role].
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Collection

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..auth import (
    TOKEN_HEADER,
    AuthResult,
    HMACVerifier,
    InsufficientRole,
    JWTVerifier,
    Keypair,
    MissingCredentials,
)
from ..contexts import bind_user
from ..data.user import UserData, UserRole
from ..exception import InvalidArgument
from ..web import AUTH_RESULT_KEY, auth_result, canonical_route, is_anonymous

__all__ = ("Authenticator", "auth_middleware", "require_role")


class Authenticator:
    """The auth work of one configuration, shared by :func:`auth_middleware` and the fused stack."""

    __slots__ = ("_anonymous", "_expected", "_hmac", "_jwt", "_needs_auth", "_users")

    def __init__(
        self,
        *,
        hmac: HMACVerifier | None = None,
        jwt: JWTVerifier | None = None,
        anonymous_routes: Collection[str] = (),
    ) -> None:
        if hmac is None and jwt is None:
            raise InvalidArgument("auth_middleware needs an HMAC or a JWT verifier", data={})
        self._hmac = hmac
        self._jwt = jwt
        self._anonymous = frozenset(anonymous_routes)
        self._needs_auth: dict[object, bool] = {}  # per route object; routes live with the app
        self._users: dict[str, tuple[Keypair, UserData]] = {}
        self._expected = " or ".join(
            name for name, used in ((TOKEN_HEADER, jwt), ("Authorization", hmac)) if used
        )

    def needs_auth(self, request: web.Request) -> bool:
        """Whether the request's route is authenticated (unmatched paths are not)."""
        route = request.match_info.route
        needed = self._needs_auth.get(route)
        if needed is None:
            resource = route.resource
            if resource is None:  # unmatched: let the 404/405 through
                return False
            needed = not (resource.canonical in self._anonymous or is_anonymous(route.handler))
            self._needs_auth[route] = needed
        return needed and not (self._anonymous and request.path in self._anonymous)

    def authenticate(self, request: web.Request) -> Awaitable[AuthResult]:
        """Verify the JWT, else the HMAC signature (the verifier's awaitable, so no extra
        coroutine layer); raises ``MissingCredentials`` at once when neither is sent."""
        headers = request.headers
        jwt = self._jwt
        if jwt is not None and (token := headers.get(TOKEN_HEADER)) is not None:
            return jwt.verify(token)
        hmac = self._hmac
        if hmac is not None and "Authorization" in headers:
            return hmac.verify_request(request)
        raise MissingCredentials(f"this route needs credentials: send {self._expected}")

    def user_of(self, keypair: Keypair) -> UserData:
        """The ``UserData`` of ``keypair``, built once per keypair (it is a frozen model)."""
        cached = self._users.get(keypair.access_key)
        if cached is None or cached[0] is not keypair:
            if len(self._users) >= 4096:
                self._users.clear()
            cached = self._users[keypair.access_key] = (keypair, keypair.user_data())
        return cached[1]


def auth_middleware(
    *,
    hmac: HMACVerifier | None = None,
    jwt: JWTVerifier | None = None,
    anonymous_routes: Collection[str] = (),
) -> Middleware:
    """The middleware; at least one verifier is needed."""
    auth = Authenticator(hmac=hmac, jwt=jwt, anonymous_routes=anonymous_routes)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not auth.needs_auth(request):
            return await handler(request)
        result = await auth.authenticate(request)
        request[AUTH_RESULT_KEY] = result
        with bind_user(auth.user_of(result.keypair)):
            return await handler(request)

    return authenticate


H = Callable[[web.Request], Awaitable[web.StreamResponse]]


def require_role(*roles: UserRole) -> Callable[[H], H]:
    """A handler decorator answering 403 unless the caller's role is one of ``roles``."""
    allowed = frozenset(roles)

    def decorate(handler: H) -> H:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            result = auth_result(request)
            if result is None:
                raise MissingCredentials("this route needs an authenticated caller")
            if result.role not in allowed:
                raise InsufficientRole(
                    f"role {result.role.value!r} may not use {canonical_route(request)}; "
                    f"allowed: {', '.join(sorted(r.value for r in allowed))}",
                    data={"role": result.role.value},
                )
            return await handler(request)

        return guarded

    return decorate
