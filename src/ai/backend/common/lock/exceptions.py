"""Errors of the distributed locks; no etcd, Redis or OS error leaves a public call.

::

    LockError                   500  lock_generic_internal-error
    ├── LockTimeout             504  lock_execute_timeout       (TimeoutError)
    ├── LockUnavailable         503  lock_connect_unavailable   (ServiceUnavailable)
    └── LockUsageError          400  lock_generic_invalid-parameters (InvalidArgument)
"""

from __future__ import annotations

from ..exception import (
    PROBLEM_BASE_URI as _PROBS,
)
from ..exception import (
    BackendAIError,
    ErrorDomain,
    ErrorOperation,
    InvalidArgument,
    OperationTimeout,
    ServiceUnavailable,
)

__all__ = ("LockError", "LockTimeout", "LockUnavailable", "LockUsageError")


class LockError(BackendAIError):
    """Base of every error raised by :mod:`ai.backend.common.lock`."""

    error_type = _PROBS + "lock-error"
    error_title = "Distributed lock failed."
    error_domain = ErrorDomain.LOCK


class LockTimeout(LockError, OperationTimeout):
    """The lock was not acquired within the timeout (someone else holds it)."""

    error_type = _PROBS + "lock-timeout"
    error_title = "Timed out acquiring a lock."
    error_operation = ErrorOperation.EXECUTE


class LockUnavailable(LockError, ServiceUnavailable):
    """The lock's backend (etcd, Redis, the file system) cannot be reached."""

    error_type = _PROBS + "lock-unavailable"
    error_title = "Lock backend unavailable."
    error_operation = ErrorOperation.CONNECT


class LockUsageError(LockError, InvalidArgument):
    """The lock was used wrongly (acquired twice, bad lifetime)."""

    error_type = _PROBS + "lock-usage-error"
    error_title = "Invalid use of a lock."
