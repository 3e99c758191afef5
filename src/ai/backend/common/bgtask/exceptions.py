"""Errors of the background-task package::

    BgtaskError (BackendAIError)                       500  bgtask_generic_internal-error
    ├── TaskNotFound        (LookupError)              404  bgtask_read_not-found
    ├── UnknownTaskName     (LookupError)              404  bgtask_create_not-found
    ├── InvalidTaskArgs     (ValueError)               400  bgtask_create_invalid-parameters
    ├── DuplicateTaskName   (ValueError)               409  bgtask_setup_already-exists
    ├── StaleFencingToken   (RuntimeError)             409  bgtask_update_conflict
    ├── TaskAlreadyFinished (RuntimeError)             409  bgtask_update_already-exists
    ├── TaskAlreadyExists   (ValueError)               409  bgtask_create_already-exists
    ├── TaskStoreUnavailable (ServiceUnavailable)      503  bgtask_connect_unavailable
    ├── ManagerClosed       (RuntimeError)             503  bgtask_create_unavailable
    └── TaskCancelled       (only as an ``error_code``) 499  bgtask_execute_canceled

``StaleFencingToken`` is the fencing rejection: a node wrote a task with a token older than the
current one (it was paused or partitioned past its lease, and another node adopted the task).
"""

from __future__ import annotations

from ..exception import (
    BackendAIError,
    ErrorDetail,
    ErrorDomain,
    ErrorOperation,
    ServiceUnavailable,
)

__all__ = (
    "BgtaskError",
    "DuplicateTaskName",
    "InvalidTaskArgs",
    "ManagerClosed",
    "StaleFencingToken",
    "TaskAlreadyExists",
    "TaskAlreadyFinished",
    "TaskCancelled",
    "TaskNotFound",
    "TaskStoreUnavailable",
    "UnknownTaskName",
)


class BgtaskError(BackendAIError):
    """Base of every error raised by the background-task package."""

    error_title = "Background task error."
    error_domain = ErrorDomain.BGTASK


class TaskNotFound(BgtaskError, LookupError):
    """No task has this id (never created, or removed after its retention)."""

    error_title = "No such background task."
    status_code = 404
    error_operation = ErrorOperation.READ
    error_detail = ErrorDetail.NOT_FOUND


class UnknownTaskName(BgtaskError, LookupError):
    """No handler is registered under this name."""

    error_title = "Unknown background task name."
    status_code = 404
    error_operation = ErrorOperation.CREATE
    error_detail = ErrorDetail.NOT_FOUND


class InvalidTaskArgs(BgtaskError, ValueError):
    """A task's arguments do not validate against its handler's manifest model."""

    error_title = "Invalid background task arguments."
    status_code = 400
    error_operation = ErrorOperation.CREATE
    error_detail = ErrorDetail.INVALID_PARAMETERS


class DuplicateTaskName(BgtaskError, ValueError):
    """A second handler was registered under a taken name."""

    error_title = "Duplicate background task name."
    status_code = 409
    error_operation = ErrorOperation.SETUP
    error_detail = ErrorDetail.ALREADY_EXISTS


class StaleFencingToken(BgtaskError, RuntimeError):
    """A write presented a fencing token older than the task's: another node owns it now."""

    error_title = "Stale fencing token: the task is owned by another node."
    status_code = 409
    error_operation = ErrorOperation.UPDATE
    error_detail = ErrorDetail.CONFLICT


class TaskAlreadyFinished(BgtaskError, RuntimeError):
    """A write reached a task that has already ended."""

    error_title = "The background task has already finished."
    status_code = 409
    error_operation = ErrorOperation.UPDATE
    error_detail = ErrorDetail.ALREADY_EXISTS


class TaskAlreadyExists(BgtaskError, ValueError):
    """A task was created with an id that is taken."""

    error_title = "A background task with this id exists."
    status_code = 409
    error_operation = ErrorOperation.CREATE
    error_detail = ErrorDetail.ALREADY_EXISTS


class TaskStoreUnavailable(BgtaskError, ServiceUnavailable):
    """The task store (Redis) cannot be reached or timed out; a retry may succeed."""

    error_title = "Background task store unavailable."
    error_operation = ErrorOperation.CONNECT
    error_detail = ErrorDetail.UNAVAILABLE


class ManagerClosed(BgtaskError, RuntimeError):
    """The manager is not running (not opened yet, or closing)."""

    error_title = "Background task manager is closed."
    status_code = 503
    error_operation = ErrorOperation.CREATE
    error_detail = ErrorDetail.UNAVAILABLE


class TaskCancelled(BgtaskError):
    """The error code recorded for a cancelled task (never raised to callers)."""

    error_title = "Background task cancelled."
    status_code = 499
    error_operation = ErrorOperation.EXECUTE
    error_detail = ErrorDetail.CANCELED
