"""Per-method latency metrics of agent RPC calls (prometheus-client)."""

from __future__ import annotations

import threading
from typing import ClassVar

from prometheus_client import REGISTRY, CollectorRegistry, Histogram

__all__ = ("AgentRPCMetrics",)

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class AgentRPCMetrics:
    """The ``backendai_agent_rpc_call_duration_seconds`` histogram, labelled by method and outcome.

    Children are bound once per (method, outcome) and cached, so an observation costs no label
    lookup. Pass a ``CollectorRegistry`` to keep the histogram off the global registry (tests,
    several pools in one process); :meth:`default` gives the process-wide instance on it.
    """

    _default: ClassVar[AgentRPCMetrics | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.histogram = Histogram(
            "backendai_agent_rpc_call_duration_seconds",
            "Latency of agent RPC calls, by method and outcome.",
            ("method", "outcome"),
            registry=registry,
            buckets=_BUCKETS,
        )
        self._children: dict[tuple[str, str], Histogram] = {}

    @classmethod
    def default(cls) -> AgentRPCMetrics:
        """The shared instance registered on prometheus-client's global registry."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls()
            return cls._default

    def observe(self, method: str, outcome: str, seconds: float) -> None:
        """Record one call's latency; ``outcome`` is ``ok`` or an error class name."""
        key = (method, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.histogram.labels(method, outcome)
        child.observe(seconds)
