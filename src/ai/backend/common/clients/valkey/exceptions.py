"""Errors of the Valkey/Redis client; no ``redis.*`` error leaves a public call::

    ValkeyError (BackendAIError)                      500  redis_generic_internal-error
    ├── ValkeyConnectionError (ServiceUnavailable)     503  redis_connect_unavailable
    │   └── ValkeyReadOnly                             503  redis_execute_unavailable
    ├── ValkeyTimeout (OperationTimeout)               504  redis_execute_timeout
    │   └── ValkeyPoolExhausted                        504  redis_execute_timeout
    ├── ValkeyAuthenticationError (PermissionError)    401  redis_connect_unauthorized
    ├── ValkeyConfigError (InvalidArgument)            400  redis_setup_invalid-parameters
    ├── ValkeyResponseError                            500  redis_execute_bad-request
    │   └── ValkeyNoGroup (LookupError)                404  redis_execute_not-found
    └── ValkeyClosed (RuntimeError)                    503  redis_generic_canceled

(``OperationTimeout`` is a ``TimeoutError``, ``InvalidArgument`` a ``ValueError``.)
``ValkeyConnectionError`` and ``ValkeyTimeout`` are the transient ones: a retry may succeed.
"""

from __future__ import annotations

from ai.backend.common.exception import (
    BackendAIError,
    ErrorDetail,
    ErrorDomain,
    ErrorOperation,
    InvalidArgument,
    OperationTimeout,
    ServiceUnavailable,
)

__all__ = (
    "ValkeyAuthenticationError",
    "ValkeyClosed",
    "ValkeyConfigError",
    "ValkeyConnectionError",
    "ValkeyError",
    "ValkeyNoGroup",
    "ValkeyPoolExhausted",
    "ValkeyReadOnly",
    "ValkeyResponseError",
    "ValkeyTimeout",
)


class ValkeyError(BackendAIError):
    """Base of every Valkey/Redis client error."""

    error_domain = ErrorDomain.REDIS


class ValkeyConnectionError(ValkeyError, ServiceUnavailable):
    """The server cannot be reached, dropped the connection, or has no master right now."""

    error_operation = ErrorOperation.CONNECT


class ValkeyReadOnly(ValkeyConnectionError):
    """The server answered as a replica (a demoted master after a failover)."""

    error_operation = ErrorOperation.EXECUTE


class ValkeyTimeout(ValkeyError, OperationTimeout):
    """A request did not complete within the target's ``request_timeout``."""

    error_operation = ErrorOperation.EXECUTE


class ValkeyPoolExhausted(ValkeyTimeout):
    """A call's time limit ran out while it waited for a free connection: every one of the
    client's ``max_connections`` was busy (the message names the pool size)."""


class ValkeyAuthenticationError(ValkeyError, PermissionError):
    """The server or a sentinel rejected the credentials."""

    status_code = 401
    error_operation = ErrorOperation.CONNECT
    error_detail = ErrorDetail.UNAUTHORIZED


class ValkeyConfigError(ValkeyError, InvalidArgument):
    """A connection target or a command argument is invalid (the message names it)."""

    error_operation = ErrorOperation.SETUP


class ValkeyResponseError(ValkeyError):
    """The server rejected a command (wrong type, syntax, script error...)."""

    error_operation = ErrorOperation.EXECUTE
    error_detail = ErrorDetail.BAD_REQUEST


class ValkeyNoGroup(ValkeyResponseError, LookupError):
    """A stream command named a consumer group (or stream) that does not exist."""

    status_code = 404
    error_detail = ErrorDetail.NOT_FOUND


class ValkeyClosed(ValkeyError, RuntimeError):
    """The client is not open (never opened, or already closed)."""

    status_code = 503
    error_detail = ErrorDetail.CANCELED
