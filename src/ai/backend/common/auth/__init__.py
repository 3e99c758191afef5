"""Authentication for the Backend.AI API: HMAC request signatures, JWTs and API keypairs.

``HMACSigner`` signs requests as the official client does; ``HMACVerifier`` checks them
(DESIGN.md section 3) with a configurable clock-skew window, optional replay protection through
an ``AbstractNonceStore`` and an optional stricter signature version (``SignatureVersion.V2``)
that also signs the body. ``JWTVerifier`` checks ``X-BackendAI-Token`` JWTs (HS256 only).
Keypairs come from an ``AbstractKeypairStore`` (``MemoryKeypairStore``, ``RedisKeypairStore``).

Guarantees:
- every upstream ``hmac`` vector is produced by the signer and accepted by the verifier
  [tests/auth/test_signature.py::test_signer_matches_vectors],
  [tests/auth/test_signature.py::test_verifier_accepts_vectors];
- a replay within the window is rejected
  [tests/auth/test_signature.py::test_replay_rejected_within_window];
- a body changed under ``V2`` is rejected
  [tests/auth/test_signature.py::test_v2_body_tamper_rejected];
- JWTs with ``alg: none`` or another algorithm are rejected
  [tests/auth/test_tokens.py::test_alg_none_rejected];
- every failure is an ``AuthError`` with status 401 (503 for an unreachable store)
  [tests/auth/test_signature.py::test_fuzz_verify_raises_only_auth_errors];
- memory and Redis stores keep the same promises
  [tests/auth/test_keypair_store_conformance.py], [tests/auth/test_nonce_store_conformance.py].

Limits: see ``signature`` (date formats, ``V1`` signs no body) and ``tokens`` (no revocation).
"""

from .abc import AbstractKeypairStore, AbstractNonceStore
from .exceptions import (
    AuthBackendUnavailable,
    AuthError,
    BodyTooLarge,
    ClockSkewExceeded,
    InsufficientRole,
    InvalidDateHeader,
    InvalidToken,
    MalformedCredentials,
    MissingCredentials,
    ReplayedRequest,
    SignatureMismatch,
    TokenExpired,
    UnknownAccessKey,
    UnsupportedSignMethod,
)
from .keys import (
    MAX_ACCESS_KEY_LENGTH,
    check_access_key,
    generate_access_key,
    generate_keypair,
    generate_secret_key,
    is_access_key,
    is_wellformed_access_key,
)
from .memory import MemoryKeypairStore, MemoryNonceStore
from .redis import RedisKeypairStore, RedisNonceStore
from .signature import (
    DEFAULT_HASH_TYPES,
    V2_MARKER,
    AuthorizationParams,
    HMACSigner,
    HMACVerifier,
    compute_signature,
    derive_signing_key,
    format_authorization,
    parse_api_version,
    parse_authorization,
    parse_date_header,
    string_to_sign,
)
from .tokens import JWT_ALGORITHM, JWTVerifier, issue_token
from .types import (
    AUTHORIZATION_HEADER,
    DATE_HEADER,
    DEFAULT_API_VERSION,
    FORWARDED_URL_HEADER,
    TOKEN_HEADER,
    VERSION_HEADER,
    X_DATE_HEADER,
    AuthMethod,
    AuthResult,
    Clock,
    JWTClaims,
    Keypair,
    SignatureVersion,
    utcnow,
)

__all__ = (
    "AUTHORIZATION_HEADER",
    "DATE_HEADER",
    "DEFAULT_API_VERSION",
    "DEFAULT_HASH_TYPES",
    "FORWARDED_URL_HEADER",
    "JWT_ALGORITHM",
    "MAX_ACCESS_KEY_LENGTH",
    "TOKEN_HEADER",
    "V2_MARKER",
    "VERSION_HEADER",
    "X_DATE_HEADER",
    "AbstractKeypairStore",
    "AbstractNonceStore",
    "AuthBackendUnavailable",
    "AuthError",
    "AuthMethod",
    "AuthResult",
    "AuthorizationParams",
    "BodyTooLarge",
    "Clock",
    "ClockSkewExceeded",
    "HMACSigner",
    "HMACVerifier",
    "InsufficientRole",
    "InvalidDateHeader",
    "InvalidToken",
    "JWTClaims",
    "JWTVerifier",
    "Keypair",
    "MalformedCredentials",
    "MemoryKeypairStore",
    "MemoryNonceStore",
    "MissingCredentials",
    "RedisKeypairStore",
    "RedisNonceStore",
    "ReplayedRequest",
    "SignatureMismatch",
    "SignatureVersion",
    "TokenExpired",
    "UnknownAccessKey",
    "UnsupportedSignMethod",
    "check_access_key",
    "compute_signature",
    "derive_signing_key",
    "format_authorization",
    "generate_access_key",
    "generate_keypair",
    "generate_secret_key",
    "is_access_key",
    "is_wellformed_access_key",
    "issue_token",
    "parse_api_version",
    "parse_authorization",
    "parse_date_header",
    "string_to_sign",
    "utcnow",
)
