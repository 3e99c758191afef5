"""Kernel lifecycle events, anycast and broadcast (domain ``kernel``).

Upstream declares the lifecycle names for both delivery patterns; the anycast ones drive the
manager's state machine, the broadcast ones feed event streams to clients.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

from pydantic import Field

from ..event import AbstractAnycastEvent, AbstractBroadcastEvent, AbstractEvent
from ..types import EventDomain

__all__ = (
    "DoSyncKernelLogsEvent",
    "KernelCancelledAnycastEvent",
    "KernelCancelledBroadcastEvent",
    "KernelCreatingAnycastEvent",
    "KernelCreatingBroadcastEvent",
    "KernelHeartbeatEvent",
    "KernelLifecycleEventReason",
    "KernelPreparingAnycastEvent",
    "KernelPreparingBroadcastEvent",
    "KernelPullingAnycastEvent",
    "KernelPullingBroadcastEvent",
    "KernelStartedAnycastEvent",
    "KernelStartedBroadcastEvent",
    "KernelTerminatedAnycastEvent",
    "KernelTerminatedBroadcastEvent",
    "KernelTerminatingAnycastEvent",
    "KernelTerminatingBroadcastEvent",
)


class KernelLifecycleEventReason(enum.StrEnum):
    """Why a kernel or session changed state (upstream's values; fields accept any string)."""

    AGENT_TERMINATION = "agent-termination"
    ALREADY_TERMINATED = "already-terminated"
    ANOMALY_DETECTED = "anomaly-detected"
    EXEC_TIMEOUT = "exec-timeout"
    FAILED_TO_CREATE = "failed-to-create"
    FAILED_TO_START = "failed-to-start"
    FORCE_TERMINATED = "force-terminated"
    BOOTSTRAP_TIMEOUT = "bootstrap-timeout"
    HANG_TIMEOUT = "hang-timeout"
    IDLE_TIMEOUT = "idle-timeout"
    IDLE_SESSION_LIFETIME = "idle-session-lifetime"
    IDLE_UTILIZATION = "idle-utilization"
    KILLED_BY_EVENT = "killed-by-event"
    SERVICE_SCALED_DOWN = "service-scaled-down"
    NEW_CONTAINER_STARTED = "new-container-started"
    PENDING_TIMEOUT = "pending-timeout"
    RESTARTING = "restarting"
    RESTART_TIMEOUT = "restart-timeout"
    RESUMING_AGENT_OPERATION = "resuming-agent-operation"
    SELF_TERMINATED = "self-terminated"
    TASK_FAILED = "task-failed"
    TASK_TIMEOUT = "task-timeout"
    TASK_CANCELLED = "task-cancelled"
    TASK_FINISHED = "task-finished"
    TERMINATED_UNKNOWN_CONTAINER = "terminated-unknown-container"
    UNKNOWN = "unknown"
    USER_REQUESTED = "user-requested"
    USER_PURGED = "user-purged"
    NOT_FOUND_IN_MANAGER = "not-found-in-manager"
    CONTAINER_NOT_FOUND = "container-not-found"


class _KernelEvent(AbstractEvent, domain=EventDomain.KERNEL):
    kernel_id: uuid.UUID

    def domain_id(self) -> str | None:
        """The kernel id."""
        return str(self.kernel_id)


class _KernelLifecycle(_KernelEvent):
    session_id: uuid.UUID
    reason: str = ""


class _KernelCreation(_KernelLifecycle):
    creation_info: dict[str, Any] = Field(default_factory=dict)


class _KernelTermination(_KernelEvent):
    session_id: uuid.UUID
    reason: str = KernelLifecycleEventReason.UNKNOWN.value
    exit_code: int = -1

    def domain_id(self) -> str | None:
        """``None``: upstream does not route termination events by kernel id."""
        return None


class KernelPreparingAnycastEvent(_KernelCreation, AbstractAnycastEvent, name="kernel_preparing"):
    """A kernel is being prepared."""


class KernelPullingAnycastEvent(_KernelCreation, AbstractAnycastEvent, name="kernel_pulling"):
    """A kernel's image is being pulled."""


class KernelCreatingAnycastEvent(_KernelCreation, AbstractAnycastEvent, name="kernel_creating"):
    """A kernel's container is being created."""


class KernelStartedAnycastEvent(_KernelCreation, AbstractAnycastEvent, name="kernel_started"):
    """A kernel started."""


class KernelCancelledAnycastEvent(_KernelLifecycle, AbstractAnycastEvent, name="kernel_cancelled"):
    """A kernel's creation was cancelled."""


class KernelTerminatingAnycastEvent(
    _KernelTermination, AbstractAnycastEvent, name="kernel_terminating"
):
    """A kernel is terminating."""


class KernelTerminatedAnycastEvent(
    _KernelTermination, AbstractAnycastEvent, name="kernel_terminated"
):
    """A kernel terminated."""


class KernelHeartbeatEvent(_KernelEvent, AbstractAnycastEvent, name="kernel_heartbeat"):
    """A kernel's container is alive."""

    container_id: str


class DoSyncKernelLogsEvent(_KernelEvent, AbstractAnycastEvent, name="do_sync_kernel_logs"):
    """Ask for a kernel's logs to be synced."""

    container_id: str


class KernelPreparingBroadcastEvent(
    _KernelCreation, AbstractBroadcastEvent, name="kernel_preparing"
):
    """A kernel is being prepared (broadcast to event streams)."""


class KernelPullingBroadcastEvent(_KernelCreation, AbstractBroadcastEvent, name="kernel_pulling"):
    """A kernel's image is being pulled (broadcast)."""


class KernelCreatingBroadcastEvent(_KernelCreation, AbstractBroadcastEvent, name="kernel_creating"):
    """A kernel's container is being created (broadcast)."""


class KernelStartedBroadcastEvent(_KernelCreation, AbstractBroadcastEvent, name="kernel_started"):
    """A kernel started (broadcast)."""


class KernelCancelledBroadcastEvent(
    _KernelLifecycle, AbstractBroadcastEvent, name="kernel_cancelled"
):
    """A kernel's creation was cancelled (broadcast)."""


class KernelTerminatingBroadcastEvent(
    _KernelTermination, AbstractBroadcastEvent, name="kernel_terminating"
):
    """A kernel is terminating (broadcast)."""

    def domain_id(self) -> str | None:
        """The kernel id (upstream routes broadcast terminations by kernel)."""
        return str(self.kernel_id)


class KernelTerminatedBroadcastEvent(
    _KernelTermination, AbstractBroadcastEvent, name="kernel_terminated"
):
    """A kernel terminated (broadcast)."""

    def domain_id(self) -> str | None:
        """The kernel id (upstream routes broadcast terminations by kernel)."""
        return str(self.kernel_id)
