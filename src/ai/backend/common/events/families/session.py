"""Session lifecycle and execution events, anycast and broadcast (domain ``session``)."""

from __future__ import annotations

import uuid

from ..event import AbstractAnycastEvent, AbstractBroadcastEvent, AbstractEvent
from ..types import EventDomain
from .kernel import KernelLifecycleEventReason

__all__ = (
    "DoTerminateSessionEvent",
    "DoUpdateSessionStatusEvent",
    "ExecutionCancelledAnycastEvent",
    "ExecutionFinishedAnycastEvent",
    "ExecutionStartedAnycastEvent",
    "ExecutionTimeoutAnycastEvent",
    "SessionCancelledAnycastEvent",
    "SessionCancelledBroadcastEvent",
    "SessionCheckingPrecondAnycastEvent",
    "SessionCheckingPrecondBroadcastEvent",
    "SessionEnqueuedAnycastEvent",
    "SessionEnqueuedBroadcastEvent",
    "SessionFailureAnycastEvent",
    "SessionFailureBroadcastEvent",
    "SessionPreparingAnycastEvent",
    "SessionPreparingBroadcastEvent",
    "SessionScheduledAnycastEvent",
    "SessionScheduledBroadcastEvent",
    "SessionStartedAnycastEvent",
    "SessionStartedBroadcastEvent",
    "SessionSuccessAnycastEvent",
    "SessionSuccessBroadcastEvent",
    "SessionTerminatedAnycastEvent",
    "SessionTerminatedBroadcastEvent",
    "SessionTerminatingAnycastEvent",
    "SessionTerminatingBroadcastEvent",
)

_UNKNOWN = KernelLifecycleEventReason.UNKNOWN.value


class _SessionEvent(AbstractEvent, domain=EventDomain.SESSION):
    session_id: uuid.UUID

    def domain_id(self) -> str | None:
        """The session id."""
        return str(self.session_id)


class _SessionCreation(_SessionEvent):
    creation_id: str
    reason: str = _UNKNOWN


class _SessionTermination(_SessionEvent):
    reason: str = ""


class _SessionResult(_SessionEvent):
    reason: str = _UNKNOWN
    exit_code: int = -1


class DoUpdateSessionStatusEvent(
    AbstractAnycastEvent, domain=EventDomain.SESSION, name="do_update_session_status"
):
    """Ask the manager to re-evaluate session statuses (no fields)."""


class DoTerminateSessionEvent(_SessionEvent, AbstractAnycastEvent, name="do_terminate_session"):
    """Ask the manager to terminate a session."""

    reason: str


class SessionEnqueuedAnycastEvent(_SessionCreation, AbstractAnycastEvent, name="session_enqueued"):
    """A session entered the queue."""


class SessionScheduledAnycastEvent(
    _SessionCreation, AbstractAnycastEvent, name="session_scheduled"
):
    """A session was scheduled."""


class SessionCheckingPrecondAnycastEvent(
    _SessionCreation, AbstractAnycastEvent, name="session_checking_precondition"
):
    """A session's preconditions are being checked."""


class SessionPreparingAnycastEvent(
    _SessionCreation, AbstractAnycastEvent, name="session_preparing"
):
    """A session is being prepared."""


class SessionCancelledAnycastEvent(
    _SessionCreation, AbstractAnycastEvent, name="session_cancelled"
):
    """A session's creation was cancelled."""


class SessionStartedAnycastEvent(_SessionCreation, AbstractAnycastEvent, name="session_started"):
    """A session started."""


class SessionTerminatingAnycastEvent(
    _SessionTermination, AbstractAnycastEvent, name="session_terminating"
):
    """A session is terminating."""


class SessionTerminatedAnycastEvent(
    _SessionTermination, AbstractAnycastEvent, name="session_terminated"
):
    """A session terminated."""


class SessionSuccessAnycastEvent(_SessionResult, AbstractAnycastEvent, name="session_success"):
    """A batch session finished successfully."""


class SessionFailureAnycastEvent(_SessionResult, AbstractAnycastEvent, name="session_failure"):
    """A batch session failed."""


class ExecutionStartedAnycastEvent(_SessionEvent, AbstractAnycastEvent, name="execution_started"):
    """A session's execution started."""


class ExecutionFinishedAnycastEvent(_SessionEvent, AbstractAnycastEvent, name="execution_finished"):
    """A session's execution finished."""


class ExecutionTimeoutAnycastEvent(_SessionEvent, AbstractAnycastEvent, name="execution_timeout"):
    """A session's execution timed out."""


class ExecutionCancelledAnycastEvent(
    _SessionEvent, AbstractAnycastEvent, name="execution_cancelled"
):
    """A session's execution was cancelled."""


class SessionEnqueuedBroadcastEvent(
    _SessionCreation, AbstractBroadcastEvent, name="session_enqueued"
):
    """A session entered the queue (broadcast to event streams)."""


class SessionScheduledBroadcastEvent(
    _SessionCreation, AbstractBroadcastEvent, name="session_scheduled"
):
    """A session was scheduled (broadcast)."""


class SessionCheckingPrecondBroadcastEvent(
    _SessionCreation, AbstractBroadcastEvent, name="session_checking_precondition"
):
    """A session's preconditions are being checked (broadcast)."""


class SessionPreparingBroadcastEvent(
    _SessionCreation, AbstractBroadcastEvent, name="session_preparing"
):
    """A session is being prepared (broadcast)."""


class SessionCancelledBroadcastEvent(
    _SessionCreation, AbstractBroadcastEvent, name="session_cancelled"
):
    """A session's creation was cancelled (broadcast)."""


class SessionStartedBroadcastEvent(
    _SessionCreation, AbstractBroadcastEvent, name="session_started"
):
    """A session started (broadcast)."""


class SessionTerminatingBroadcastEvent(
    _SessionTermination, AbstractBroadcastEvent, name="session_terminating"
):
    """A session is terminating (broadcast)."""


class SessionTerminatedBroadcastEvent(
    _SessionTermination, AbstractBroadcastEvent, name="session_terminated"
):
    """A session terminated (broadcast)."""


class SessionSuccessBroadcastEvent(_SessionResult, AbstractBroadcastEvent, name="session_success"):
    """A batch session finished successfully (broadcast)."""


class SessionFailureBroadcastEvent(_SessionResult, AbstractBroadcastEvent, name="session_failure"):
    """A batch session failed (broadcast)."""
