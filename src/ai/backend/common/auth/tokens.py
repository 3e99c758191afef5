"""JWTs between the web server and the manager (DESIGN.md section 3): issue and verify.

A token travels in ``X-BackendAI-Token``, is signed with HS256 using the secret key of the
keypair it names, and carries ``exp`` and ``iat`` (integer seconds), ``access_key`` and
``role`` (``superadmin``, ``admin``, ``user``, ``monitor``).

Guarantees:
- a token issued here verifies, and yields the keypair it names
  [tests/auth/test_tokens.py::test_issue_then_verify];
- only HS256 is accepted: ``alg: none`` and other algorithms (including RS256/HS256 confusion)
  are rejected before any key lookup [tests/auth/test_tokens.py::test_alg_none_rejected],
  [tests/auth/test_tokens.py::test_other_algorithms_rejected];
- ``exp`` / ``iat`` are checked against an injectable clock with a configurable leeway
  [tests/auth/test_tokens.py::test_expiry_and_leeway];
- the role comes from the keypair store; a token claiming another role is rejected
  [tests/auth/test_tokens.py::test_role_claim_must_match_keypair];
- any malformed token (non-ASCII ones included) raises an ``AuthError``, never another
  exception, whose problem body always encodes
  [tests/auth/test_tokens.py::test_fuzz_tokens_raise_only_auth_errors];
- an ``access_key`` claim that is not 1-128 visible ASCII characters (JSON may spell lone
  surrogates) is rejected before any store lookup
  [tests/auth/test_tokens.py::test_undecodable_claims_rejected_before_lookup].

Limits:
- upstream's newer ``principal_type=user`` tokens (a ``user_id`` and no ``access_key``) are
  rejected: the access key is the only lookup key here;
- no revocation list: a token stays valid until ``exp`` unless its keypair is deleted or
  deactivated.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from ..data.user import UserRole
from ..exception import InvalidArgument
from ._text import echo, escape
from .abc import AbstractKeypairStore
from .exceptions import InvalidToken, TokenExpired, UnknownAccessKey
from .keys import MAX_ACCESS_KEY_LENGTH, is_wellformed_access_key
from .types import AuthMethod, AuthResult, Clock, JWTClaims, Keypair, utcnow

__all__ = ("JWT_ALGORITHM", "JWTVerifier", "issue_token")

JWT_ALGORITHM = "HS256"
_MAX_TOKEN_LEN = 8192
_REQUIRED_CLAIMS = ("exp", "iat", "access_key", "role")


def issue_token(
    keypair: Keypair, *, lifetime: timedelta = timedelta(minutes=15), clock: Clock = utcnow
) -> str:
    """A new HS256 JWT for ``keypair``: ``iat`` now, ``exp`` after ``lifetime``."""
    if lifetime <= timedelta(0):
        raise InvalidArgument(
            f"lifetime must be positive, got {lifetime}", data={"field": "lifetime"}
        )
    now = int(clock().timestamp())
    claims = {
        "exp": now + int(lifetime.total_seconds()),
        "iat": now,
        "access_key": keypair.access_key,
        "role": keypair.role.value,
    }
    return jwt.encode(claims, keypair.secret_key, algorithm=JWT_ALGORITHM)


def _iso(ts: int) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return str(ts)


def _int_claim(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidToken(
            f"JWT claim {name!r} must be an integer number of seconds, got {type(value).__name__}",
            data={"claim": name},
        )
    return value


class JWTVerifier:
    """Verifies ``X-BackendAI-Token`` JWTs against an :class:`AbstractKeypairStore`."""

    def __init__(
        self,
        keypairs: AbstractKeypairStore,
        *,
        leeway: timedelta = timedelta(0),
        clock: Clock = utcnow,
    ) -> None:
        if leeway < timedelta(0):
            raise InvalidArgument(f"leeway must be >= 0, got {leeway}", data={"field": "leeway"})
        self._keypairs = keypairs
        self._leeway = int(leeway.total_seconds())
        self._clock = clock

    async def verify(self, token: str) -> AuthResult:
        """Verify ``token``; raises ``InvalidToken``, ``TokenExpired`` or ``UnknownAccessKey``."""
        if not token or len(token) > _MAX_TOKEN_LEN:
            raise InvalidToken(
                f"JWT must be 1-{_MAX_TOKEN_LEN} characters, got {len(token)}",
                data={"header": "X-BackendAI-Token"},
            )
        if not token.isascii():  # a compact JWT is base64url and dots; PyJWT would crash
            raise InvalidToken(
                "JWT must be ASCII (base64url parts joined by dots)",
                data={"header": "X-BackendAI-Token"},
            )
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            if alg != JWT_ALGORITHM:
                raise InvalidToken(
                    f"JWT algorithm {echo(str(alg), 32)} is not accepted; only {JWT_ALGORITHM} is",
                    data={"header": "X-BackendAI-Token", "alg": escape(str(alg), 32)},
                )
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"JWT cannot be decoded: {escape(str(exc), 200)}") from exc
        access_key = unverified.get("access_key")
        if not isinstance(access_key, str) or not access_key:
            raise InvalidToken(
                "JWT lacks a string 'access_key' claim", data={"claim": "access_key"}
            )
        if not is_wellformed_access_key(access_key):
            raise InvalidToken(
                f"JWT claim 'access_key' {echo(access_key, 32)} is not "
                f"1-{MAX_ACCESS_KEY_LENGTH} visible ASCII characters",
                data={"claim": "access_key"},
            )
        keypair = await self._keypairs.get(access_key)
        if keypair is None or not keypair.is_active:
            raise UnknownAccessKey(
                f"access key {access_key!r} named by the JWT is unknown or inactive",
                data={"access_key": access_key},
            )
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                keypair.secret_key,
                algorithms=[JWT_ALGORITHM],
                options={
                    "require": list(_REQUIRED_CLAIMS),
                    "verify_exp": False,  # checked below against the injectable clock
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken(
                f"JWT signature does not verify with the secret key of access key {access_key}",
                data={"access_key": access_key},
            ) from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(
                f"JWT rejected: {escape(str(exc), 200)}", data={"access_key": access_key}
            ) from exc
        return AuthResult(
            keypair=keypair, method=AuthMethod.JWT, claims=self._claims(payload, keypair)
        )

    def _claims(self, payload: dict[str, Any], keypair: Keypair) -> JWTClaims:
        exp = _int_claim(payload, "exp")
        iat = _int_claim(payload, "iat")
        now = int(self._clock().timestamp())
        if exp <= now - self._leeway:
            raise TokenExpired(
                f"JWT expired at {_iso(exp)}; server time is {_iso(now)} (leeway {self._leeway} s)",
                data={"exp": exp, "server_time": now, "leeway_sec": self._leeway},
            )
        if iat > now + self._leeway:
            raise TokenExpired(
                f"JWT issued at {_iso(iat)}, after the server time {_iso(now)} "
                f"(leeway {self._leeway} s)",
                data={"iat": iat, "server_time": now, "leeway_sec": self._leeway},
            )
        if iat > exp:
            raise InvalidToken(f"JWT 'iat' {iat} is after its 'exp' {exp}", data={"claim": "iat"})
        nbf = payload.get("nbf")
        if nbf is not None:
            nbf = _int_claim(payload, "nbf")
            if nbf > now + self._leeway:
                raise InvalidToken(
                    f"JWT is not valid before {_iso(nbf)}; server time is {_iso(now)}",
                    data={"claim": "nbf"},
                )
        raw_role = payload.get("role")
        try:
            role = UserRole(str(raw_role))
        except ValueError as exc:
            raise InvalidToken(
                f"JWT role {str(raw_role)[:32]!r} is not one of "
                f"{', '.join(r.value for r in UserRole)}",
                data={"claim": "role"},
            ) from exc
        if role is not keypair.role:
            raise InvalidToken(
                f"JWT role {role.value!r} does not match the role of access key "
                f"{keypair.access_key}",
                data={"claim": "role", "access_key": keypair.access_key},
            )
        return JWTClaims(access_key=keypair.access_key, role=role, iat=iat, exp=exp)
