"""The health checker interface."""

from __future__ import annotations

import abc
from typing import Any

from .types import ProbeKind

__all__ = ("HealthChecker",)


class HealthChecker(abc.ABC):
    """Checks one dependency; :meth:`check` returns details or raises when it is unhealthy.

    ``check`` raises a ``BackendAIError`` (the client's own, or
    :class:`~.exceptions.HealthCheckFailed`); the probe bounds it by ``timeout`` and cancels
    it when the time is up, so a check must leave nothing behind when cancelled.
    """

    name: str
    kind: ProbeKind
    timeout: float

    def __init__(self, name: str, *, kind: ProbeKind = ProbeKind.READINESS, timeout: float = 5.0):
        self.name = name
        self.kind = ProbeKind(kind)
        self.timeout = timeout

    @abc.abstractmethod
    async def check(self) -> dict[str, Any]:
        """Check the dependency once; return details for the report, raise if unhealthy."""
