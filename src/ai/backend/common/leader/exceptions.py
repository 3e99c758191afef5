"""Errors of leader election; no etcd or Redis error leaves a public call.

::

    LeaderError                     500  leader_generic_internal-error
    ├── LeaderElectionUnavailable   503  leader_connect_unavailable (ServiceUnavailable)
    └── LeaderElectionClosed        500  leader_generic_canceled
"""

from __future__ import annotations

from ..exception import BackendAIError, ErrorDetail, ErrorDomain, ErrorOperation, ServiceUnavailable

__all__ = ("LeaderElectionClosed", "LeaderElectionUnavailable", "LeaderError")

_PROBS = "https://api.backend.ai/probs/"


class LeaderError(BackendAIError):
    """Base of every error raised by :mod:`ai.backend.common.leader`."""

    error_type = _PROBS + "leader-error"
    error_title = "Leader election failed."
    error_domain = ErrorDomain.LEADER


class LeaderElectionUnavailable(LeaderError, ServiceUnavailable):
    """The election's backend (etcd, Redis) cannot be reached."""

    error_type = _PROBS + "leader-election-unavailable"
    error_title = "Leader election backend unavailable."
    status_code = 503
    error_operation = ErrorOperation.CONNECT
    error_detail = ErrorDetail.UNAVAILABLE


class LeaderElectionClosed(LeaderError):
    """The election was used before ``open()`` or after ``aclose()``."""

    error_type = _PROBS + "leader-election-closed"
    error_title = "Leader election is closed."
    error_detail = ErrorDetail.CANCELED
