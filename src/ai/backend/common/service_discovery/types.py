"""Service records (DESIGN.md section 3): upstream's field names and JSON, so records interoperate.

``ServiceMetadata`` is what upstream Backend.AI writes: ``id`` (UUID), ``display_name``,
``service_group``, ``version``, ``endpoint {address, port, protocol, prometheus_address}``,
``health_status {registration_time, last_heartbeat}`` (UNIX seconds) and ``labels``. Fields a
newer peer adds are ignored when reading.

Names that would break a backend's keys are refused when a record is built, the same way on
every backend: a ``service_group`` is one component of the etcd key
(``<prefix>/<group>/<id>/...``), so it must be non-empty and contain no ``/``; a label name
must be non-empty (an empty key component stands for the parent's own value in etcd).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = (
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "HealthStatus",
    "RecordsRestored",
    "RecordsRestoredObserver",
    "ServiceDiscoveryStatistics",
    "ServiceEndpoint",
    "ServiceKey",
    "ServiceMetadata",
    "WallClock",
    "group_name_problem",
)

DEFAULT_HEARTBEAT_TIMEOUT: Final[float] = 60.0 * 5
"""Seconds without a heartbeat after which a record counts as unhealthy (upstream's value)."""

WallClock = Callable[[], float]
"""A source of UNIX time in seconds (``time.time``); injectable for tests."""

ServiceKey = tuple[str, uuid.UUID]
"""``(service_group, service_id)``: what identifies one record."""


def group_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a ``service_group`` (it would break a backend's keys), or None."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if "/" in name:
        return "must not contain '/' (the group is one component of the etcd key)"
    return None


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ServiceEndpoint(_Model):
    """Where a service listens, and where Prometheus scrapes it (``host:port``)."""

    address: str
    port: int
    protocol: str
    prometheus_address: str


class HealthStatus(_Model):
    """When a record was registered and when its service last sent a heartbeat (UNIX seconds)."""

    registration_time: float = Field(default_factory=time.time)
    last_heartbeat: float = Field(default_factory=time.time)

    def check_healthy(
        self, timeout: float = DEFAULT_HEARTBEAT_TIMEOUT, *, now: float | None = None
    ) -> bool:
        """Whether the last heartbeat is less than ``timeout`` seconds old."""
        current = time.time() if now is None else now
        return (current - self.last_heartbeat) < timeout


class ServiceMetadata(_Model):
    """One service instance as stored in service discovery (upstream's record)."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    display_name: str
    service_group: str
    version: str
    endpoint: ServiceEndpoint
    health_status: HealthStatus = Field(default_factory=HealthStatus)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("service_group")
    @classmethod
    def _check_group(cls, value: str) -> str:
        problem = group_name_problem(value)
        if problem is not None:
            raise ValueError(f"service_group {value!r} {problem}")
        return value

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        if "" in value:
            raise ValueError("labels must not have an empty name (etcd reads it as the parent)")
        return value

    @property
    def key(self) -> ServiceKey:
        """``(service_group, id)``."""
        return (self.service_group, self.id)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Validate a record read back (values may be text, as etcd stores them)."""
        return cls.model_validate(data)

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON-compatible data (``id`` as text)."""
        return self.model_dump(mode="json")

    def with_heartbeat(self, now: float) -> Self:
        """A copy whose ``last_heartbeat`` is ``now``."""
        health = self.health_status.model_copy(update={"last_heartbeat": now})
        return self.model_copy(update={"health_status": health})

    def is_healthy(
        self, timeout: float = DEFAULT_HEARTBEAT_TIMEOUT, *, now: float | None = None
    ) -> bool:
        """Whether the service sent a heartbeat within ``timeout`` seconds."""
        return self.health_status.check_healthy(timeout, now=now)


@dataclass(frozen=True, slots=True)
class RecordsRestored:
    """Records of this process were found gone (lease lost, key expired) and written again."""

    services: tuple[ServiceKey, ...]
    reason: str


RecordsRestoredObserver = Callable[[RecordsRestored], None]
"""Called (synchronously, in the backend's task) after records were re-created."""


@dataclass(frozen=True, slots=True)
class ServiceDiscoveryStatistics:
    """A snapshot of one service-discovery instance."""

    owned: int
    """Records registered through this instance and kept alive by it."""
    restorations: int
    """Times records of this instance had to be re-created."""
    malformed: int
    """Records skipped while reading because they did not validate."""
