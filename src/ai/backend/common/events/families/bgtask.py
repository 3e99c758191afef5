"""Background-task progress events (broadcast, domain ``bgtask``, cached as ``bgtask.<uuid>``)."""

from __future__ import annotations

import enum
import uuid

from pydantic import Field

from ..event import AbstractBroadcastEvent
from ..types import EventCacheDomain, EventDomain

__all__ = (
    "BaseBgtaskDoneEvent",
    "BaseBgtaskEvent",
    "BgtaskCancelledEvent",
    "BgtaskDoneEvent",
    "BgtaskFailedEvent",
    "BgtaskPartialSuccessEvent",
    "BgtaskStatus",
    "BgtaskUpdatedEvent",
)


class BgtaskStatus(enum.StrEnum):
    """The status a bgtask event reports (upstream's values)."""

    STARTED = "bgtask_started"
    UPDATED = "bgtask_updated"
    DONE = "bgtask_done"
    CANCELLED = "bgtask_cancelled"
    FAILED = "bgtask_failed"
    PARTIAL_SUCCESS = "bgtask_partial_success"


class BaseBgtaskEvent(
    AbstractBroadcastEvent, domain=EventDomain.BGTASK, cache_domain=EventCacheDomain.BGTASK
):
    """Fields and routing shared by every bgtask event."""

    task_id: uuid.UUID

    def domain_id(self) -> str | None:
        """The task id."""
        return str(self.task_id)

    @property
    def status(self) -> BgtaskStatus:
        """The status this event reports."""
        return BgtaskStatus(self.event_name)


class BgtaskUpdatedEvent(BaseBgtaskEvent, name="bgtask_updated"):
    """Progress of a running task."""

    current_progress: float
    total_progress: float
    message: str | None = None


class BaseBgtaskDoneEvent(BaseBgtaskEvent):
    """Fields of the events that end a task."""

    message: str | None = None


class BgtaskDoneEvent(BaseBgtaskDoneEvent, name="bgtask_done"):
    """The task finished successfully."""


class BgtaskCancelledEvent(BaseBgtaskDoneEvent, name="bgtask_cancelled"):
    """The task was cancelled."""


class BgtaskFailedEvent(BaseBgtaskDoneEvent, name="bgtask_failed"):
    """The task failed; ``message`` says why."""


class BgtaskPartialSuccessEvent(BaseBgtaskDoneEvent, name="bgtask_partial_success"):
    """The task finished with some errors."""

    errors: list[str] = Field(default_factory=list)
