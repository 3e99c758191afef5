"""Configuration, key pairs and statistics of the agent RPC pool and server."""

from __future__ import annotations

from dataclasses import dataclass

import zmq
from zmq.utils import z85

from .exceptions import AgentInvalidArgument

__all__ = (
    "AgentPoolStatistics",
    "AgentServerStatistics",
    "CurveKeyPair",
    "generate_keypair",
    "z85_key",
)


def z85_key(key: bytes | str, *, field: str = "key") -> bytes:
    """Check and normalise a CurveZMQ key to its 40-character Z85 form."""
    raw = key.encode("ascii") if isinstance(key, str) else bytes(key)
    raw = raw.strip()
    if len(raw) != 40:
        raise AgentInvalidArgument(
            f"{field} must be a 40-character Z85 CurveZMQ key, got {len(raw)} bytes",
            data={"field": field},
        )
    try:
        z85.decode(raw)
    except (ValueError, KeyError, IndexError) as exc:
        raise AgentInvalidArgument(f"{field} is not valid Z85 text", data={"field": field}) from exc
    return raw


@dataclass(frozen=True, slots=True)
class CurveKeyPair:
    """A CurveZMQ key pair in Z85 form (as ``zmq.curve_keypair()`` and upstream's key files)."""

    public_key: bytes
    secret_key: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_key", z85_key(self.public_key, field="public_key"))
        object.__setattr__(self, "secret_key", z85_key(self.secret_key, field="secret_key"))

    def __repr__(self) -> str:
        return f"CurveKeyPair(public_key={self.public_key!r}, secret_key=<redacted>)"


def generate_keypair() -> CurveKeyPair:
    """Create a fresh CurveZMQ key pair."""
    public, secret = zmq.curve_keypair()
    return CurveKeyPair(public, secret)


@dataclass(frozen=True, slots=True)
class AgentPoolStatistics:
    """A snapshot of :class:`~ai.backend.common.clients.agent.AgentRPCPool`."""

    connections: int
    """Open connections (one per agent address)."""
    in_flight: int
    """Calls sent and not yet answered, over all agents."""
    waiting: int
    """Calls waiting for an in-flight slot of a full connection."""
    connects: int
    """Connections opened successfully since the pool opened."""
    connect_failures: int
    """Connects that failed (refused, handshake timeout, authentication)."""
    evictions: int
    """Connections closed because they stayed idle too long."""
    disconnects: int
    """Connections dropped because the agent went away."""


@dataclass(frozen=True, slots=True)
class AgentServerStatistics:
    """A snapshot of :class:`~ai.backend.common.clients.agent.AgentRPCServer`."""

    in_flight: int
    """Handlers running now."""
    handled: int
    """Calls answered (result, failure or cancellation)."""
    failed: int
    """Calls whose handler raised."""
    cancelled: int
    """Calls cancelled by the caller or by their deadline."""
    dropped_replies: int
    """Replies that could not be routed because the caller had gone (ROUTER_MANDATORY)."""
