"""Vocabulary of the events package: domains, delivery patterns, handler ids (DESIGN.md §3)."""

from __future__ import annotations

import enum
from typing import NewType

__all__ = (
    "ALL_IDS",
    "DeliveryPattern",
    "EventCacheDomain",
    "EventDomain",
    "HandlerId",
)

HandlerId = NewType("HandlerId", str)
"""The stable id of a registered handler; per-handler acknowledgement records it."""

ALL_IDS = "*"
"""The wildcard id of an :class:`~.hub.EventHub` alias: every id of the domain."""


class EventDomain(enum.StrEnum):
    """The part of the platform an event is about (upstream's values)."""

    BGTASK = "bgtask"
    IMAGE = "image"
    KERNEL = "kernel"
    MODEL_SERVING = "model_serving"
    MODEL_ROUTE = "model_route"
    NOTIFICATION = "notification"
    SCHEDULE = "schedule"
    IDLE_CHECK = "idle_check"
    SESSION = "session"
    AGENT = "agent"
    ARTIFACT = "artifact"
    VFOLDER = "vfolder"
    VOLUME = "volume"
    LOG = "log"
    WORKFLOW = "workflow"
    SERVICE_DISCOVERY = "service_discovery"


class EventCacheDomain(enum.StrEnum):
    """Prefix of the cache id of a broadcast kept for late readers (``bgtask.<uuid>``)."""

    BGTASK = "bgtask"
    SESSION_SCHEDULER = "session_scheduler"

    def cache_id(self, domain_id: str) -> str:
        """The cache key of the event with ``domain_id`` (``<prefix>.<domain_id>``)."""
        return f"{self.value}.{domain_id}"


class DeliveryPattern(enum.StrEnum):
    """How an event travels: to one consumer per group, or to every subscriber."""

    ANYCAST = "anycast"
    """Stream ``events``: each consumer group sees it, one consumer in a group handles it."""
    BROADCAST = "broadcast"
    """Channel ``events_all`` (and the durable stream): every subscriber receives it."""
