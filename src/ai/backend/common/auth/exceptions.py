"""Errors of the auth package: every failure to authenticate is a 401 that says what is wrong.

::

    AuthError                         401  auth_authorize_unauthorized
    ├── MissingCredentials            401  no Authorization / X-BackendAI-Token header
    ├── MalformedCredentials  (ValueError)  401  unparsable Authorization header or token
    │   └── UnsupportedSignMethod     401  sign method or hash type not accepted
    ├── InvalidDateHeader  (ValueError)     401  Date / X-BackendAI-Date missing or unparsable
    ├── ClockSkewExceeded             401  auth_authorize_data-expired (request and server time)
    ├── UnknownAccessKey  (LookupError)     401  access key unknown or inactive
    ├── SignatureMismatch             401  auth_authorize_mismatch
    ├── ReplayedRequest               401  auth_authorize_conflict (signature already seen)
    ├── InvalidToken                  401  JWT rejected (algorithm, signature, claims)
    │   └── TokenExpired              401  auth_authorize_data-expired
    ├── InsufficientRole  (PermissionError) 403  auth_authorize_forbidden
    ├── BodyTooLarge  (ValueError)    413  body to hash longer than the verifier's max_body
    └── AuthBackendUnavailable        503  auth_authorize_unavailable (keypair / replay store)

Messages name the header or claim and, where it helps, the value the server saw; they never
carry a secret key, the expected signature or a derived signing key.
"""

from __future__ import annotations

from ..exception import (
    PROBLEM_BASE_URI,
    BackendAIError,
    ErrorDetail,
    ErrorDomain,
    ErrorOperation,
)

__all__ = (
    "AuthBackendUnavailable",
    "AuthError",
    "BodyTooLarge",
    "ClockSkewExceeded",
    "InsufficientRole",
    "InvalidDateHeader",
    "InvalidToken",
    "MalformedCredentials",
    "MissingCredentials",
    "ReplayedRequest",
    "SignatureMismatch",
    "TokenExpired",
    "UnknownAccessKey",
    "UnsupportedSignMethod",
)


class AuthError(BackendAIError):
    """Base of every auth failure: the request could not be authenticated (401)."""

    error_type = PROBLEM_BASE_URI + "auth-failed"
    error_title = "Authorization failed."
    status_code = 401
    error_domain = ErrorDomain.AUTH
    error_operation = ErrorOperation.AUTHORIZE
    error_detail = ErrorDetail.UNAUTHORIZED


class MissingCredentials(AuthError):
    """The request carries neither an ``Authorization`` nor an ``X-BackendAI-Token`` header."""

    error_type = PROBLEM_BASE_URI + "auth-missing"
    error_title = "Authentication credentials are missing."


class MalformedCredentials(AuthError, ValueError):
    """An ``Authorization`` header, API version or token cannot be parsed."""

    error_type = PROBLEM_BASE_URI + "invalid-auth-params"
    error_title = "Malformed authorization parameters."
    error_detail = ErrorDetail.BAD_REQUEST


class UnsupportedSignMethod(MalformedCredentials):
    """The ``signMethod`` (MAC type or hash) or signature version is not accepted here."""

    error_type = PROBLEM_BASE_URI + "auth-unsupported-method"
    error_title = "Unsupported request signing method."
    error_detail = ErrorDetail.NOT_IMPLEMENTED


class InvalidDateHeader(AuthError, ValueError):
    """``Date`` / ``X-BackendAI-Date`` is missing or not a date this server understands."""

    error_type = PROBLEM_BASE_URI + "auth-invalid-date"
    error_title = "Missing or invalid request date."
    error_detail = ErrorDetail.INVALID_PARAMETERS


class ClockSkewExceeded(AuthError):
    """The request date is farther from the server's clock than the allowed window."""

    error_type = PROBLEM_BASE_URI + "auth-clock-skew"
    error_title = "Request date is outside the allowed clock-skew window."
    error_detail = ErrorDetail.DATA_EXPIRED


class UnknownAccessKey(AuthError, LookupError):
    """No active keypair has the given access key."""

    error_type = PROBLEM_BASE_URI + "auth-unknown-key"
    error_title = "Unknown or inactive access key."
    error_detail = ErrorDetail.NOT_FOUND


class SignatureMismatch(AuthError):
    """The HMAC signature does not match the one computed with the keypair's secret."""

    error_type = PROBLEM_BASE_URI + "auth-signature-mismatch"
    error_title = "Request signature mismatch."
    error_detail = ErrorDetail.MISMATCH


class ReplayedRequest(AuthError):
    """The exact signature was already accepted within the clock-skew window."""

    error_type = PROBLEM_BASE_URI + "auth-replayed"
    error_title = "Replayed request."
    error_detail = ErrorDetail.CONFLICT


class InvalidToken(AuthError):
    """A JWT was rejected: bad algorithm, signature, structure or claims."""

    error_type = PROBLEM_BASE_URI + "auth-invalid-token"
    error_title = "Invalid authentication token."


class TokenExpired(InvalidToken):
    """A JWT's ``exp`` is in the past (beyond the leeway) or its ``iat`` in the future."""

    error_type = PROBLEM_BASE_URI + "auth-token-expired"
    error_title = "Authentication token expired."
    error_detail = ErrorDetail.DATA_EXPIRED


class InsufficientRole(AuthError, PermissionError):
    """The caller is authenticated but its role does not allow this route (403)."""

    error_type = PROBLEM_BASE_URI + "auth-forbidden"
    error_title = "Insufficient privileges."
    status_code = 403
    error_detail = ErrorDetail.FORBIDDEN


class BodyTooLarge(AuthError, ValueError):
    """A body the signature covers (``V2``, old API versions) is longer than ``max_body`` (413)."""

    error_type = PROBLEM_BASE_URI + "auth-body-too-large"
    error_title = "Request body too large to verify."
    status_code = 413
    error_detail = ErrorDetail.BAD_REQUEST


class AuthBackendUnavailable(AuthError):
    """The keypair store or replay store cannot be reached (503, the request may be retried)."""

    error_type = PROBLEM_BASE_URI + "auth-backend-unavailable"
    error_title = "Authentication backend unavailable."
    status_code = 503
    error_detail = ErrorDetail.UNAVAILABLE
