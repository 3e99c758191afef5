"""Errors of the events package::

    EventError                          (BackendAIError)  event_*_*
    ├── EventDefinitionError  (TypeError)   an event class declaration is invalid
    │   └── DuplicateEventName               two classes declare the same name and delivery
    ├── UnknownEvent          (LookupError) no event class has this name
    ├── EventDecodeError      (ValueError)  stream fields, payload or metadata cannot be decoded
    ├── HandlerConflict       (ValueError)  a handler id is registered twice for one event
    └── DispatcherStateError  (RuntimeError) the dispatcher is closed or not started

Message-queue failures (publishing, acking) surface as the message queue's own errors
(``ai.backend.common.message_queue.MessageQueueError`` subclasses), unchanged.
"""

from __future__ import annotations

from ..exception import BackendAIError, ErrorDetail, ErrorDomain, ErrorOperation

__all__ = (
    "DispatcherStateError",
    "DuplicateEventName",
    "EventDecodeError",
    "EventDefinitionError",
    "EventError",
    "HandlerConflict",
    "UnknownEvent",
)


class EventError(BackendAIError):
    """Base of every error raised by the events package."""

    error_title = "Event error."
    error_domain = ErrorDomain.EVENT


class EventDefinitionError(EventError, TypeError):
    """An event class declares a bad name, domain or delivery pattern (raised at class creation)."""

    error_title = "Invalid event definition."
    error_operation = ErrorOperation.SETUP
    error_detail = ErrorDetail.INVALID_PARAMETERS


class DuplicateEventName(EventDefinitionError):
    """A second event class declares a name already taken for the same delivery pattern."""

    error_title = "Duplicate event name."
    error_detail = ErrorDetail.ALREADY_EXISTS


class UnknownEvent(EventError, LookupError):
    """No registered event class has the requested name."""

    error_title = "Unknown event."
    status_code = 404
    error_operation = ErrorOperation.READ
    error_detail = ErrorDetail.NOT_FOUND


class EventDecodeError(EventError, ValueError):
    """A stream entry, broadcast message, payload or metadata is malformed."""

    error_title = "Undecodable event."
    status_code = 400
    error_operation = ErrorOperation.PARSE
    error_detail = ErrorDetail.INVALID_PARAMETERS


class HandlerConflict(EventError, ValueError):
    """A handler id is already registered for the same event class."""

    error_title = "Duplicate event handler."
    status_code = 409
    error_operation = ErrorOperation.SETUP
    error_detail = ErrorDetail.CONFLICT


class DispatcherStateError(EventError, RuntimeError):
    """The dispatcher cannot do this in its current state (closed, or already started)."""

    error_title = "Event dispatcher is not running."
    status_code = 503
    error_operation = ErrorOperation.CONSUME
    error_detail = ErrorDetail.UNAVAILABLE
