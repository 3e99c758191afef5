"""Errors of the message queue; every backend raises these and never its own::

MessageQueueError (BackendAIError)                 500  message-queue_generic_internal-error
├── QueueUnavailable (ServiceUnavailable,           503  message-queue_connect_unavailable
│                     ConnectionError)
├── QueueTimeout (OperationTimeout: TimeoutError)   504  message-queue_execute_timeout
├── QueueConfigError (InvalidArgument: ValueError)  400  message-queue_setup_invalid-parameters
├── QueueClosed (RuntimeError)                      503  message-queue_generic_canceled
├── InvalidMessage (InvalidArgument: ValueError)    400  message-queue_publish_invalid-parameters
└── UnknownMessage (ObjectNotFound: LookupError)    404  message-queue_consume_not-found
"""

from __future__ import annotations

from ai.backend.common.exception import (
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
    "InvalidMessage",
    "MessageQueueError",
    "QueueClosed",
    "QueueConfigError",
    "QueueTimeout",
    "QueueUnavailable",
    "UnknownMessage",
)


class MessageQueueError(BackendAIError):
    """Base of every message-queue error."""

    error_domain = ErrorDomain.MESSAGE_QUEUE


class QueueUnavailable(MessageQueueError, ServiceUnavailable, ConnectionError):
    """The queue's server cannot be reached or refused the operation (raised, never swallowed)."""

    error_operation = ErrorOperation.CONNECT


class QueueTimeout(MessageQueueError, OperationTimeout):
    """An operation on the queue's server did not finish within the request timeout."""

    error_operation = ErrorOperation.EXECUTE


class QueueConfigError(MessageQueueError, InvalidArgument):
    """A setting of :class:`~.types.QueueConfig` is missing or invalid for this operation."""

    error_operation = ErrorOperation.SETUP


class QueueClosed(MessageQueueError, RuntimeError):
    """The client is not open (never opened, or already closed)."""

    status_code = 503
    error_detail = ErrorDetail.CANCELED


class InvalidMessage(MessageQueueError, InvalidArgument):
    """Fields given to ``send``/``broadcast`` are empty or not text, or an id given to ``ack``
    or a dead-letter call is not a stream id (the message names them)."""

    error_operation = ErrorOperation.PUBLISH


class UnknownMessage(MessageQueueError, ObjectNotFound):
    """A message id given to ``nack``/``dead_letter`` is not in flight at this client."""

    error_operation = ErrorOperation.CONSUME
