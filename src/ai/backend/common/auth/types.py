"""Records and wire names of the auth package (DESIGN.md section 3)."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..data.user import UserData, UserRole

__all__ = (
    "AUTHORIZATION_HEADER",
    "DATE_HEADER",
    "DEFAULT_API_VERSION",
    "FORWARDED_URL_HEADER",
    "TOKEN_HEADER",
    "VERSION_HEADER",
    "X_DATE_HEADER",
    "AuthMethod",
    "AuthResult",
    "Clock",
    "JWTClaims",
    "Keypair",
    "SignatureVersion",
    "utcnow",
)

AUTHORIZATION_HEADER = "Authorization"
DATE_HEADER = "Date"
X_DATE_HEADER = "X-BackendAI-Date"
VERSION_HEADER = "X-BackendAI-Version"
TOKEN_HEADER = "X-BackendAI-Token"
FORWARDED_URL_HEADER = "X-Forwarded-URL"
DEFAULT_API_VERSION = "v9.20250722"

Clock = Callable[[], datetime]
"""A source of the current time as an aware datetime (injectable for tests)."""


def utcnow() -> datetime:
    """The current time, aware, in UTC (the default ``Clock``)."""
    return datetime.now(UTC)


class SignatureVersion(enum.IntEnum):
    """Which HMAC string-to-sign a request uses.

    ``V1`` is upstream's: the body is not signed (the hash of empty bytes for API versions
    from ``v4.20181215``). ``V2`` is ours: it adds a marker line and hashes the real body;
    it is announced by ``sigVersion=2`` in the ``Authorization`` header.
    """

    V1 = 1
    V2 = 2


class AuthMethod(enum.StrEnum):
    """How a request was authenticated."""

    HMAC = "hmac"
    JWT = "jwt"


@dataclass(frozen=True, slots=True)
class Keypair:
    """An API keypair and the identity it stands for; ``secret_key`` is never in ``repr``."""

    access_key: str
    secret_key: str = field(repr=False)
    user_id: uuid.UUID
    role: UserRole = UserRole.USER
    is_active: bool = True
    domain_name: str = "default"

    def user_data(self) -> UserData:
        """The ``UserData`` bound to the request context for this keypair's owner."""
        return UserData(
            user_id=self.user_id,
            is_authorized=True,
            is_admin=self.role in (UserRole.ADMIN, UserRole.SUPERADMIN),
            is_superadmin=self.role is UserRole.SUPERADMIN,
            role=self.role,
            domain_name=self.domain_name,
        )


@dataclass(frozen=True, slots=True)
class JWTClaims:
    """The claims of a Backend.AI JWT: ``exp`` and ``iat`` in integer seconds, key and role."""

    access_key: str
    role: UserRole
    iat: int
    exp: int


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Who a request was authenticated as, and how."""

    keypair: Keypair
    method: AuthMethod
    signature_version: SignatureVersion | None = None
    claims: JWTClaims | None = None

    @property
    def access_key(self) -> str:
        """The authenticated access key."""
        return self.keypair.access_key

    @property
    def role(self) -> UserRole:
        """The role of the authenticated user, always the keypair store's (never a claim)."""
        return self.keypair.role
