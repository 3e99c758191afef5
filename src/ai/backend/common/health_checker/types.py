"""Probe kinds, statuses and the per-dependency report of the health checkers."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ("DependencyStatus", "HealthReport", "HealthStatus", "ProbeKind")


class ProbeKind(enum.StrEnum):
    """What a failing checker means for the component."""

    LIVENESS = "liveness"
    """Failing: the process is broken and should be restarted."""
    READINESS = "readiness"
    """Failing: the component must not receive traffic now."""
    INFORMATIONAL = "informational"
    """Reported only; never changes the overall status."""


class HealthStatus(enum.StrEnum):
    """The outcome of one check or of a whole probe."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"
    """Not checked yet."""


@dataclass(frozen=True, slots=True)
class DependencyStatus:
    """The last result of one checker."""

    name: str
    kind: ProbeKind
    status: HealthStatus
    latency: float | None
    """Seconds the last check took (``None`` before the first)."""
    checked_at: float | None
    """Wall-clock time (epoch seconds) of the last check."""
    last_error: str | None
    """The most recent failure's message, kept after the dependency recovers."""
    last_error_at: float | None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON form served by the health endpoints."""
        return {
            "name": self.name,
            "kind": str(self.kind),
            "status": str(self.status),
            "latency_ms": None if self.latency is None else round(self.latency * 1000, 3),
            "checked_at": self.checked_at,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The result of a probe: overall status plus each dependency's."""

    status: HealthStatus
    dependencies: tuple[DependencyStatus, ...]

    def to_json(self) -> dict[str, Any]:
        """The JSON body of a health endpoint."""
        return {
            "status": str(self.status),
            "dependencies": [d.to_json() for d in self.dependencies],
        }
