"""Errors of the agent RPC client and server; no ``zmq`` or ``msgpack`` error leaves a public call.

::

    AgentRPCError                     500  agent_request_internal-error
    ├── AgentUnreachable              503  agent_connect_unavailable   (ServiceUnavailable)
    │   ├── AgentConnectionLost       503  the connection dropped while a call was in flight
    │   ├── AgentAuthenticationFailed 503  the CurveZMQ handshake was refused
    │   └── AgentCircuitOpen          503  the agent's circuit breaker fails calls fast
    ├── AgentCallTimeout              504  agent_request_timeout       (OperationTimeout)
    ├── AgentCallCancelled            500  agent_execute_canceled      (the agent cancelled it)
    ├── AgentProtocolError            500  agent_parse_invalid-parameters
    ├── AgentInvalidArgument          400  (InvalidArgument: a value cannot be encoded, bad option)
    ├── AgentPoolClosed               500  agent_request_canceled     (the pool is not open)
    └── AgentRemoteError              500  agent_execute_internal-error (the handler raised)
        └── AgentMethodNotFound       404  agent_execute_not-found     (LookupError)

``AgentUnreachable`` (except ``AgentConnectionLost``) means the request never left this process,
so a retry cannot run a call twice; ``AgentConnectionLost`` and ``AgentCallTimeout`` may follow a
call that the agent did run.
"""

from __future__ import annotations

from typing import Any

from ...exception import (
    PROBLEM_BASE_URI as _PROBS,
)
from ...exception import (
    BackendAIError,
    ErrorDetail,
    ErrorDomain,
    ErrorOperation,
    InvalidArgument,
    OperationTimeout,
    ServiceUnavailable,
)

__all__ = (
    "AgentAuthenticationFailed",
    "AgentCallCancelled",
    "AgentCallTimeout",
    "AgentCircuitOpen",
    "AgentConnectionLost",
    "AgentInvalidArgument",
    "AgentMethodNotFound",
    "AgentPoolClosed",
    "AgentProtocolError",
    "AgentRPCError",
    "AgentRemoteError",
    "AgentUnreachable",
)


class AgentRPCError(BackendAIError):
    """Base of every error raised by :mod:`ai.backend.common.clients.agent`."""

    error_type = _PROBS + "agent-rpc-error"
    error_title = "Agent RPC failed."
    error_domain = ErrorDomain.AGENT
    error_operation = ErrorOperation.REQUEST


class AgentUnreachable(AgentRPCError, ServiceUnavailable):
    """The agent could not be reached (refused, handshake timed out, breaker open)."""

    error_type = _PROBS + "agent-unreachable"
    error_title = "Agent is unreachable."
    error_operation = ErrorOperation.CONNECT


class AgentConnectionLost(AgentUnreachable):
    """The connection to the agent dropped while the call was in flight (it may have run)."""

    error_type = _PROBS + "agent-connection-lost"
    error_title = "Connection to the agent was lost."


class AgentAuthenticationFailed(AgentUnreachable):
    """The CurveZMQ handshake failed (wrong server key, or the agent refused our key)."""

    error_type = _PROBS + "agent-authentication-failed"
    error_title = "Agent RPC authentication failed."


class AgentCircuitOpen(AgentUnreachable):
    """The agent's circuit breaker is open; ``retry_after`` says when it half-opens."""

    error_type = _PROBS + "agent-circuit-open"
    error_title = "Agent circuit breaker is open."

    retry_after: float | None

    def __init__(
        self,
        msg: str | None = None,
        *,
        data: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(msg, data=data)
        self.retry_after = retry_after


class AgentCallTimeout(AgentRPCError, OperationTimeout):
    """The call got no answer within its deadline (a cancel was sent to the agent)."""

    error_type = _PROBS + "agent-call-timeout"
    error_title = "Agent RPC call timed out."


class AgentCallCancelled(AgentRPCError):
    """The agent cancelled the call on its side (deadline passed there, or shutting down)."""

    error_type = _PROBS + "agent-call-cancelled"
    error_title = "Agent cancelled the RPC call."
    error_operation = ErrorOperation.EXECUTE
    error_detail = ErrorDetail.CANCELED


class AgentProtocolError(AgentRPCError):
    """A message on the wire is not a valid callosum RPC message."""

    error_type = _PROBS + "agent-protocol-error"
    error_title = "Malformed agent RPC message."
    error_operation = ErrorOperation.PARSE
    error_detail = ErrorDetail.INVALID_PARAMETERS


class AgentInvalidArgument(AgentRPCError, InvalidArgument):
    """An argument or option is invalid (unencodable value, malformed key or address)."""

    error_type = _PROBS + "agent-invalid-argument"
    error_title = "Invalid agent RPC argument."


class AgentPoolClosed(AgentRPCError):
    """The pool is not open (never opened, or closed): no call can be made through it."""

    error_type = _PROBS + "agent-rpc-pool-closed"
    error_title = "Agent RPC pool is closed."
    error_detail = ErrorDetail.CANCELED


class AgentRemoteError(AgentRPCError):
    """The agent's handler raised; carries the remote exception's type name, repr and traceback.

    ``remote_error_code`` is set when the remote exception was a ``BackendAIError`` served by
    :class:`~ai.backend.common.clients.agent.AgentRPCServer`.
    """

    error_type = _PROBS + "agent-remote-error"
    error_title = "Agent RPC handler raised an error."
    error_operation = ErrorOperation.EXECUTE
    error_detail = ErrorDetail.INTERNAL_ERROR

    @property
    def remote_type(self) -> str:
        """Class name of the exception raised on the agent."""
        return str(self.data.get("remote_type", ""))

    @property
    def remote_repr(self) -> str:
        """``repr()`` of the exception raised on the agent."""
        return str(self.data.get("remote_repr", ""))

    @property
    def remote_traceback(self) -> str:
        """Formatted traceback sent by the agent (may be empty)."""
        return str(self.data.get("remote_traceback", ""))

    @property
    def remote_error_code(self) -> str | None:
        """``domain_operation_detail`` of a remote ``BackendAIError``, else ``None``."""
        code = self.data.get("remote_error_code")
        return None if code is None else str(code)

    @property
    def internal(self) -> bool:
        """True when the RPC layer of the agent failed rather than the handler."""
        return bool(self.data.get("internal", False))


class AgentMethodNotFound(AgentRemoteError, LookupError):
    """The agent has no handler for the called method."""

    error_type = _PROBS + "agent-method-not-found"
    error_title = "Agent RPC method not found."
    status_code = 404
    error_detail = ErrorDetail.NOT_FOUND
