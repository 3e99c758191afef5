"""Errors of the etcd client; no ``aetcd`` or ``grpc`` error leaves a public call.

::

    EtcdError                       500  etcd_generic_internal-error
    ├── EtcdUnavailable             503  etcd_connect_unavailable   (ServiceUnavailable)
    ├── EtcdTimeout                 504  etcd_request_timeout       (OperationTimeout)
    ├── EtcdCompareFailed           409  etcd_update_conflict
    ├── EtcdWatchCompacted          410  etcd_read_data-expired
    ├── EtcdLeaseNotFound           404  etcd_read_not-found        (ObjectNotFound)
    ├── EtcdInvalidArgument         400  etcd_generic_invalid-parameters (InvalidArgument)
    └── EtcdClosed                  500  etcd_generic_canceled

The in-memory backend raises the same classes in the same situations.
"""

from __future__ import annotations

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
    "EtcdClosed",
    "EtcdCompareFailed",
    "EtcdError",
    "EtcdInvalidArgument",
    "EtcdLeaseNotFound",
    "EtcdTimeout",
    "EtcdUnavailable",
    "EtcdWatchCompacted",
)


class EtcdError(BackendAIError):
    """Base of every error raised by :mod:`ai.backend.common.clients.etcd`."""

    error_type = _PROBS + "etcd-error"
    error_title = "etcd operation failed."
    error_domain = ErrorDomain.ETCD


class EtcdUnavailable(EtcdError, ServiceUnavailable):
    """No etcd endpoint answered (every member down, no quorum) within the failover deadline."""

    error_type = _PROBS + "etcd-unavailable"
    error_title = "etcd is unavailable."
    error_operation = ErrorOperation.CONNECT


class EtcdTimeout(EtcdError, OperationTimeout):
    """A request did not complete within its deadline."""

    error_type = _PROBS + "etcd-timeout"
    error_title = "etcd request timed out."
    error_operation = ErrorOperation.REQUEST


class EtcdCompareFailed(EtcdError):
    """A compare-and-swap found another value than the expected one (``raise_on_conflict``)."""

    error_type = _PROBS + "etcd-compare-failed"
    error_title = "etcd compare-and-swap failed."
    status_code = 409
    error_operation = ErrorOperation.UPDATE
    error_detail = ErrorDetail.CONFLICT


class EtcdWatchCompacted(EtcdError):
    """A watch could not resume: the revision it needs was compacted away; re-read and re-watch."""

    error_type = _PROBS + "etcd-watch-compacted"
    error_title = "etcd revision compacted."
    status_code = 410
    error_operation = ErrorOperation.READ
    error_detail = ErrorDetail.DATA_EXPIRED

    def __init__(self, msg: str | None = None, *, compact_revision: int = 0) -> None:
        super().__init__(msg, data={"compact_revision": compact_revision})
        self.compact_revision = compact_revision


class EtcdLeaseNotFound(EtcdError, ObjectNotFound):
    """A lease id is unknown to etcd (expired or revoked)."""

    error_type = _PROBS + "etcd-lease-not-found"
    error_title = "etcd lease not found."
    error_operation = ErrorOperation.READ


class EtcdInvalidArgument(EtcdError, InvalidArgument):
    """A key, value, TTL or endpoint given to the client is malformed (the message names it)."""

    error_type = _PROBS + "etcd-invalid-argument"
    error_title = "Invalid etcd argument."


class EtcdClosed(EtcdError):
    """The client was used before ``open()`` or after ``aclose()``."""

    error_type = _PROBS + "etcd-closed"
    error_title = "etcd client is closed."
    error_detail = ErrorDetail.CANCELED
