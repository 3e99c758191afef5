"""The upstream bgtask events that describe a task record (DESIGN.md section 3)."""

from __future__ import annotations

from typing import TypeAlias

from ..events import (
    BgtaskCancelledEvent,
    BgtaskDoneEvent,
    BgtaskFailedEvent,
    BgtaskPartialSuccessEvent,
    BgtaskUpdatedEvent,
)
from .types import TaskRecord, TaskState

__all__ = (
    "BGTASK_EVENT_TYPES",
    "FINAL_EVENT_TYPES",
    "STARTED_MESSAGE",
    "BgtaskEvent",
    "event_of_record",
    "progress_event",
)

BgtaskEvent: TypeAlias = (
    BgtaskUpdatedEvent
    | BgtaskDoneEvent
    | BgtaskPartialSuccessEvent
    | BgtaskFailedEvent
    | BgtaskCancelledEvent
)
"""Any upstream bgtask event (the classes ``ai.backend.common.events`` exports)."""

STARTED_MESSAGE = "Task started"
"""The message of the ``bgtask_updated`` event broadcast when a task is created (upstream's)."""

FINAL_EVENT_TYPES = (
    BgtaskDoneEvent,
    BgtaskPartialSuccessEvent,
    BgtaskFailedEvent,
    BgtaskCancelledEvent,
)
"""The events that end a task's stream."""

BGTASK_EVENT_TYPES = (BgtaskUpdatedEvent, *FINAL_EVENT_TYPES)
"""Every bgtask event class."""


def progress_event(record: TaskRecord) -> BgtaskUpdatedEvent:
    """``bgtask_updated`` with the record's progress."""
    return BgtaskUpdatedEvent(
        task_id=record.task_id,
        current_progress=record.current,
        total_progress=record.total,
        message=record.message,
    )


def event_of_record(record: TaskRecord) -> BgtaskEvent:
    """The final event of a final record, else its progress event."""
    match record.state:
        case TaskState.SUCCEEDED:
            return BgtaskDoneEvent(task_id=record.task_id, message=record.message)
        case TaskState.PARTIALLY_SUCCEEDED:
            return BgtaskPartialSuccessEvent(
                task_id=record.task_id, message=record.message, errors=list(record.errors)
            )
        case TaskState.FAILED:
            return BgtaskFailedEvent(task_id=record.task_id, message=record.message)
        case TaskState.CANCELLED:
            return BgtaskCancelledEvent(task_id=record.task_id, message=record.message)
        case _:
            return progress_event(record)
