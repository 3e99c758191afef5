"""Records and vocabulary of background tasks: ids, states, leases, stored task records.

A task record is what the task store keeps per task (one Redis hash ``bgtask:t:<id>``, see
:mod:`.redis`); every node reads the same record. A :class:`Lease` is the right to write it: the
owner's node id plus the task's fencing token, which grows by one each time another node adopts
the task (and when its owner releases it), so a write presenting an older token is rejected.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NewType, Protocol

from ..events import BgtaskStatus

__all__ = (
    "ExpiredLease",
    "Lease",
    "LeaseStatus",
    "ShutdownPolicy",
    "SystemWallClock",
    "TaskId",
    "TaskOutcome",
    "TaskRecord",
    "TaskResult",
    "TaskState",
    "WallClock",
)

TaskId = NewType("TaskId", uuid.UUID)
"""The id of a background task (a UUID, upstream's ``TaskID``)."""


class WallClock(Protocol):
    """A source of wall-clock seconds (``ai.backend.common.message_queue.ManualClock`` is one)."""

    def time(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemWallClock:
    """The real wall clock (``time.time``)."""

    __slots__ = ()

    def time(self) -> float:
        """Seconds since the epoch."""
        return time.time()


class TaskState(enum.StrEnum):
    """Where a task is in its life; the last four are final."""

    PENDING = "pending"
    """Recorded, not running anywhere yet (waiting for a slot, or handed over by its owner)."""
    RUNNING = "running"
    """Its handler runs on the owner node."""
    SUCCEEDED = "succeeded"
    """The handler returned without errors."""
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    """The handler returned a result listing errors."""
    FAILED = "failed"
    """The handler raised, or its owner was lost and it could not be resumed."""
    CANCELLED = "cancelled"
    """Cancelled on request (from any node) or by a shutdown policy."""

    @property
    def is_final(self) -> bool:
        """Whether the task has ended (nothing writes to it any more)."""
        return self not in (TaskState.PENDING, TaskState.RUNNING)

    @property
    def bgtask_status(self) -> BgtaskStatus:
        """The upstream status (event name) this state is reported with."""
        return _STATUS_OF[self]


_STATUS_OF = {
    TaskState.PENDING: BgtaskStatus.STARTED,
    TaskState.RUNNING: BgtaskStatus.UPDATED,
    TaskState.SUCCEEDED: BgtaskStatus.DONE,
    TaskState.PARTIALLY_SUCCEEDED: BgtaskStatus.PARTIAL_SUCCESS,
    TaskState.FAILED: BgtaskStatus.FAILED,
    TaskState.CANCELLED: BgtaskStatus.CANCELLED,
}


class LeaseStatus(enum.StrEnum):
    """What renewing one lease found."""

    RENEWED = "renewed"
    """Still ours; the lease was extended."""
    CANCEL_REQUESTED = "cancel_requested"
    """Still ours and extended, and someone asked for the task to be cancelled."""
    LOST = "lost"
    """Not ours any more (released, adopted by another node, finished, or gone): stop, write
    nothing."""


class ShutdownPolicy(enum.StrEnum):
    """What a manager does with its unfinished tasks when it closes."""

    HANDOVER = "handover"
    """Stop them here and release their leases so another node adopts them at once (resumable
    and never-started tasks run again there; started non-resumable ones are failed here)."""
    CANCEL = "cancel"
    """Cancel them and record them as cancelled, with the reason."""
    FAIL = "fail"
    """Stop them and record them as failed, with the reason."""


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to write a task: its owner node and the fencing token it holds."""

    task_id: TaskId
    owner: str
    token: int


@dataclass(frozen=True, slots=True)
class ExpiredLease:
    """A task whose owner stopped renewing its lease (a candidate for adoption)."""

    task_id: TaskId
    name: str
    """The handler name, so that a node without that handler can leave it to one that has it."""
    expired_at: float
    """When the lease ran out (epoch seconds, store clock)."""
    overdue: float
    """Seconds since it ran out (store clock)."""


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What a handler may return: a message, JSON-able data, and the errors of a partial success.

    A result with ``errors`` ends the task as ``partially_succeeded``. A handler may also return
    ``None`` or a string (the message), as upstream handlers do.
    """

    message: str | None = None
    data: Any = None
    """Any JSON-able value; stored as the task's result."""
    errors: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """The final write of a task: its final state and what it produced or why it failed."""

    state: TaskState
    message: str | None = None
    result: Any = None
    errors: tuple[str, ...] = ()
    error_code: str | None = None
    """``domain_operation_detail`` of the error (failed/cancelled tasks)."""


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task as the store keeps it; every node sees the same record."""

    task_id: TaskId
    name: str
    """The registered handler name (or the function name of an ad-hoc task)."""
    state: TaskState
    owner: str
    """The node that holds (or last held) the lease."""
    token: int
    """The fencing token: 1 at creation, one more at each adoption and at each release."""
    args: Mapping[str, Any] = field(default_factory=dict)
    """The manifest: the handler's arguments as JSON, enough to resume on another node."""
    tags: tuple[str, ...] = ()
    resumable: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    """When the handler first ran (``None`` while it never ran)."""
    finished_at: float | None = None
    lease_expires_at: float | None = None
    """When the owner's lease runs out unless renewed (``None`` once final)."""
    current: float = 0.0
    total: float = 0.0
    message: str | None = None
    """The last progress message, then the final message."""
    result: Any = None
    errors: tuple[str, ...] = ()
    error_code: str | None = None
    cancel_requested: bool = False
    run_count: int = 0
    """How many times a handler was started for this task (resumes included)."""
    previous_owner: str | None = None
    """The node that held the lease before the last adoption."""
    checkpoint: Any = None
    """The last value a handler saved with ``ProgressReporter.checkpoint`` (for resuming)."""
    retention: float = 0.0
    """Seconds the record is kept once final."""
    expires_at: float | None = None
    """When a final record (and its index entries) is removed."""

    @property
    def lease(self) -> Lease:
        """The lease this record's owner holds."""
        return Lease(self.task_id, self.owner, self.token)
