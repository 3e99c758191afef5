"""Errors of the HTTP clients; no ``aiohttp`` error leaves a public call.

::

    HTTPClientError                   500  backendai_request_internal-error
    ├── HTTPUnavailable               503  (ServiceUnavailable: refused, reset, DNS, TLS)
    ├── HTTPTimeout                   504  (OperationTimeout: no complete answer in time)
    ├── HTTPPoolClosed                500  the pool is not open
    └── HTTPStatusError               the peer answered with a 4xx/5xx status
        ├── HTTPServerError           a 5xx status (counted by circuit breakers)
        └── StorageProxyError         storage-proxy answers; ``upstream_error_code`` from the body
            ├── StorageProxyBadRequest     400/422  (InvalidArgument)
            ├── StorageProxyAuthFailed     401/403
            ├── StorageProxyNotFound       404/410  (ObjectNotFound)
            ├── StorageProxyConflict       409
            └── StorageProxyServerError    5xx (also an HTTPServerError)

A status error keeps the peer's status in ``status`` and, when its body was JSON, the body's
``error_code`` (``upstream_error_code``) and message.
"""

from __future__ import annotations

from typing import Any

from ...exception import (
    PROBLEM_BASE_URI as _PROBS,
)
from ...exception import (
    BackendAIError,
    ErrorDetail,
    ErrorDomain,
    ErrorOperation,
    InvalidArgument,
    ObjectNotFound,
    OperationTimeout,
    ServiceUnavailable,
)

__all__ = (
    "HTTPClientError",
    "HTTPPoolClosed",
    "HTTPServerError",
    "HTTPStatusError",
    "HTTPTimeout",
    "HTTPUnavailable",
    "StorageProxyAuthFailed",
    "StorageProxyBadRequest",
    "StorageProxyConflict",
    "StorageProxyError",
    "StorageProxyNotFound",
    "StorageProxyServerError",
    "http_error_class",
    "status_error_class",
)


class HTTPClientError(BackendAIError):
    """Base of every error raised by :mod:`ai.backend.common.clients.http`."""

    error_type = _PROBS + "http-client-error"
    error_title = "HTTP request failed."
    error_operation = ErrorOperation.REQUEST


class HTTPUnavailable(HTTPClientError, ServiceUnavailable):
    """The endpoint could not be reached or dropped the connection."""

    error_type = _PROBS + "http-unavailable"
    error_title = "HTTP endpoint unavailable."
    error_operation = ErrorOperation.CONNECT


class HTTPTimeout(HTTPClientError, OperationTimeout):
    """No complete answer within the request's deadline."""

    error_type = _PROBS + "http-timeout"
    error_title = "HTTP request timed out."


class HTTPPoolClosed(HTTPClientError):
    """The session pool is not open."""

    error_type = _PROBS + "http-pool-closed"
    error_title = "HTTP session pool is closed."
    error_detail = ErrorDetail.CANCELED


class HTTPStatusError(HTTPClientError):
    """The peer answered with an error status; ``status`` and the upstream code are kept."""

    error_type = _PROBS + "http-status-error"
    error_title = "HTTP peer answered with an error."

    def __init__(self, msg: str | None = None, *, data: dict[str, Any] | None = None) -> None:
        super().__init__(msg, data=data)

    @property
    def status(self) -> int:
        """The HTTP status the peer answered with."""
        return int(self.data.get("status", 0))

    @property
    def upstream_error_code(self) -> str | None:
        """The ``error_code`` of the peer's problem+json body, if any."""
        code = self.data.get("upstream_error_code")
        return None if code is None else str(code)


class HTTPServerError(HTTPStatusError):
    """The peer answered with a 5xx status."""

    error_type = _PROBS + "http-server-error"
    status_code = 502


class StorageProxyError(HTTPStatusError):
    """The storage proxy answered with an error status."""

    error_type = _PROBS + "storage-proxy-error"
    error_title = "Storage proxy request failed."
    error_domain = ErrorDomain.STORAGE_PROXY


class StorageProxyBadRequest(StorageProxyError, InvalidArgument):
    """The storage proxy rejected the parameters (400, 422)."""

    error_type = _PROBS + "storage-proxy-bad-request"


class StorageProxyAuthFailed(StorageProxyError):
    """The storage proxy refused the auth token (401, 403)."""

    error_type = _PROBS + "storage-proxy-auth-failed"
    status_code = 403
    error_operation = ErrorOperation.AUTHORIZE
    error_detail = ErrorDetail.FORBIDDEN


class StorageProxyNotFound(StorageProxyError, ObjectNotFound):
    """The volume, folder, quota scope or file does not exist (404, 410)."""

    error_type = _PROBS + "storage-proxy-not-found"


class StorageProxyConflict(StorageProxyError):
    """The object already exists or is busy (409)."""

    error_type = _PROBS + "storage-proxy-conflict"
    status_code = 409
    error_detail = ErrorDetail.CONFLICT


class StorageProxyServerError(StorageProxyError, HTTPServerError):
    """The storage proxy failed internally (5xx)."""

    error_type = _PROBS + "storage-proxy-server-error"
    status_code = 502
    error_detail = ErrorDetail.INTERNAL_ERROR


def http_error_class(status: int) -> type[HTTPStatusError]:
    """The generic error class for an HTTP status."""
    return HTTPServerError if status >= 500 else HTTPStatusError


def status_error_class(status: int) -> type[HTTPStatusError]:
    """The storage-proxy error class for an HTTP status."""
    if status in (400, 422):
        return StorageProxyBadRequest
    if status in (401, 403):
        return StorageProxyAuthFailed
    if status in (404, 410):
        return StorageProxyNotFound
    if status == 409:
        return StorageProxyConflict
    if status >= 500:
        return StorageProxyServerError
    return StorageProxyError
