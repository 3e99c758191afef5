"""Agent lifecycle and operation events (anycast, domain ``agent``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..event import AbstractAnycastEvent
from ..types import EventDomain

__all__ = (
    "AgentErrorEvent",
    "AgentHeartbeatEvent",
    "AgentImagesRemoveEvent",
    "AgentStartedEvent",
    "AgentTerminatedEvent",
    "DoAgentResourceCheckEvent",
)


class _AgentEvent(AbstractAnycastEvent, domain=EventDomain.AGENT):
    pass


class AgentStartedEvent(_AgentEvent, name="agent_started"):
    """An agent process started."""

    reason: str


class AgentTerminatedEvent(_AgentEvent, name="agent_terminated"):
    """An agent process is terminating."""

    reason: str


class AgentErrorEvent(_AgentEvent, name="agent_error"):
    """An agent reports an error (``severity``: upstream log level, ``ERROR`` ...)."""

    message: str
    traceback: str | None = None
    user: Any | None = None
    context_env: dict[str, Any] = Field(default_factory=dict)
    severity: str = "ERROR"


class AgentHeartbeatEvent(_AgentEvent, name="agent_heartbeat"):
    """Periodic agent status; ``agent_info`` is upstream's ``AgentInfo`` object as JSON."""

    agent_info: dict[str, Any]


class AgentImagesRemoveEvent(_AgentEvent, name="agent_images_remove"):
    """An agent removed images."""

    image_canonicals: list[str]


class DoAgentResourceCheckEvent(_AgentEvent, name="do_agent_resource_check"):
    """Ask the manager to check an agent's resources."""

    agent_id: str
