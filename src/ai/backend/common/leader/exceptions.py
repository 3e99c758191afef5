"""Errors of leader election; no etcd or Redis error leaves a public call.

::

    LeaderError                     500  leader_generic_internal-error
    ├── LeaderElectionUnavailable   503  leader_connect_unavailable (ServiceUnavailable)
    └── LeaderElectionClosed        500  leader_generic_canceled
"""

from __future__ import annotations

from ..exception import PROBLEM_BASE_URI as _PROBS
from ..exception import BackendAIError, ErrorDetail, ErrorDomain, ErrorOperation, ServiceUnavailable

__all__ = ("LeaderElectionClosed", "LeaderElectionUnavailable", "LeaderError")


class LeaderError(BackendAIError):
    """Base of every error raised by :mod:`ai.backend.common.leader`."""

    error_type = _PROBS + "leader-error"
    error_title = "Leader election failed."
    error_domain = ErrorDomain.LEADER


class LeaderElectionUnavailable(LeaderError, ServiceUnavailable):
    """The election's backend (etcd, Redis) cannot be reached."""

    error_type = _PROBS + "leader-election-unavailable"
    error_title = "Leader election backend unavailable."
    error_operation = ErrorOperation.CONNECT


class LeaderElectionClosed(LeaderError):
    """The election was used before ``open()`` or after ``aclose()``."""

    error_type = _PROBS + "leader-election-closed"
    error_title = "Leader election is closed."
    error_detail = ErrorDetail.CANCELED
