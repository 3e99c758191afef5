"""CommonMetricRegistry: the observers of a service on one CollectorRegistry, and exposition."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from .multiprocess import multiprocess_dir, render_multiprocess
from .observers import (
    APIMetricObserver,
    BgTaskMetricObserver,
    EventMetricObserver,
    LayerMetricObserver,
    ResilienceMetricObserver,
)
from .types import MetricNaming

__all__ = ("EXPOSITION_CONTENT_TYPE", "CommonMetricRegistry")

EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The content type of what ``generate_latest`` writes: the Prometheus text format 0.0.4."""


class CommonMetricRegistry:
    """The observers of one service, registered in one ``CollectorRegistry``.

    ``CommonMetricRegistry.instance()`` is the process-wide one on the global registry; tests
    and embedders pass their own ``CollectorRegistry``. ``render()`` exposes the registry, or
    every worker's samples when multiprocess mode is on (``multiprocess_dir`` or the
    ``PROMETHEUS_MULTIPROC_DIR`` variable when the registry is the global one).
    """

    _instance: ClassVar[CommonMetricRegistry | None] = None

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        naming: MetricNaming = MetricNaming.PROMETHEUS,
        multiprocess_dir: str | Path | None = None,
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.naming = naming
        self._multiprocess_dir = Path(multiprocess_dir) if multiprocess_dir else None
        self.api = APIMetricObserver(self.registry, naming=naming)
        self.event = EventMetricObserver(self.registry, naming=naming)
        self.bgtask = BgTaskMetricObserver(self.registry, naming=naming)
        self.layer = LayerMetricObserver(self.registry, naming=naming)
        self.resilience = ResilienceMetricObserver(self.registry)

    @classmethod
    def _global(cls) -> CommonMetricRegistry:
        registry = cls.__new__(cls)
        registry.registry = REGISTRY
        registry.naming = MetricNaming.PROMETHEUS
        registry._multiprocess_dir = None
        registry.api = APIMetricObserver.instance()
        registry.event = EventMetricObserver.instance()
        registry.bgtask = BgTaskMetricObserver.instance()
        registry.layer = LayerMetricObserver.instance()
        registry.resilience = ResilienceMetricObserver.instance()
        return registry

    @classmethod
    def instance(cls) -> Self:
        """The process-wide registry on ``prometheus_client.REGISTRY`` (created on first use),
        made of each observer's ``instance()``, so code using those shares its series."""
        if CommonMetricRegistry._instance is None:
            CommonMetricRegistry._instance = cls._global()
        return CommonMetricRegistry._instance  # type: ignore[return-value]

    def multiprocess_dir(self) -> Path | None:
        """Where worker samples are read from, or ``None`` in single-process mode."""
        if self._multiprocess_dir is not None:
            return self._multiprocess_dir
        return multiprocess_dir() if self.registry is REGISTRY else None

    def render(self) -> bytes:
        """The Prometheus text exposition (``EXPOSITION_CONTENT_TYPE``)."""
        directory = self.multiprocess_dir()
        if directory is not None:
            return render_multiprocess(directory)
        return generate_latest(self.registry)
