"""Service-discovery events (anycast, domain ``service_discovery``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..event import AbstractAnycastEvent
from ..types import EventDomain

__all__ = (
    "DoSweepStaleServicesEvent",
    "ServiceDeregisteredEvent",
    "ServiceEndpointInfo",
    "ServiceRegisteredEvent",
)


class ServiceEndpointInfo(BaseModel):
    """One endpoint of a service instance."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    role: str
    scope: str
    address: str
    port: int
    protocol: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class _ServiceDiscoveryEvent(AbstractAnycastEvent, domain=EventDomain.SERVICE_DISCOVERY):
    pass


class ServiceRegisteredEvent(_ServiceDiscoveryEvent, name="service_registered"):
    """A service instance registered or sent a heartbeat."""

    instance_id: str
    service_group: str
    display_name: str
    version: str
    labels: dict[str, str] = Field(default_factory=dict)
    endpoints: list[ServiceEndpointInfo] = Field(default_factory=list)
    startup_time: datetime
    config_hash: str = ""


class ServiceDeregisteredEvent(_ServiceDiscoveryEvent, name="service_deregistered"):
    """A service instance deregistered."""

    instance_id: str
    service_group: str


class DoSweepStaleServicesEvent(_ServiceDiscoveryEvent, name="do_sweep_stale_services"):
    """Ask the catalog to drop services whose heartbeat is stale (no fields)."""
