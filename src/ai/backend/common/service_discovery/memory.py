"""In-memory backend of service discovery: the semantics of the Redis backend, in process.

:class:`MemoryServiceRegistry` is the shared store (what Redis is to several processes); records
expire ``ttl`` seconds after they were last written or refreshed, on an injectable clock
(:class:`~ai.backend.common.clients.etcd.ManualClock` in tests).

Guarantees: the conformance suite of every backend
[tests/service_discovery/test_discovery_conformance.py].
"""

from __future__ import annotations

import time

from ..clients.etcd import Clock, SystemClock
from ._base import RecordKeeper
from .types import RecordsRestoredObserver, ServiceKey, ServiceMetadata, WallClock

__all__ = ("MemoryServiceDiscovery", "MemoryServiceRegistry")


class MemoryServiceRegistry:
    """Records with deadlines, shared by the :class:`MemoryServiceDiscovery` instances given it."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._records: dict[ServiceKey, tuple[ServiceMetadata, float]] = {}

    def _expire(self) -> None:
        now = self.clock.monotonic()
        for key in [k for k, (_, deadline) in self._records.items() if deadline <= now]:
            del self._records[key]

    def put(self, record: ServiceMetadata, ttl: float) -> None:
        """Store a record until ``ttl`` seconds from now."""
        self._records[record.key] = (record, self.clock.monotonic() + ttl)

    def touch(self, key: ServiceKey, ttl: float) -> bool:
        """Push a record's deadline to ``ttl`` seconds from now; False if it is gone."""
        self._expire()
        entry = self._records.get(key)
        if entry is None:
            return False
        self._records[key] = (entry[0], self.clock.monotonic() + ttl)
        return True

    def delete(self, key: ServiceKey) -> None:
        """Remove a record if present."""
        self._records.pop(key, None)

    def get(self, key: ServiceKey) -> ServiceMetadata | None:
        """A live record, or None."""
        self._expire()
        entry = self._records.get(key)
        return None if entry is None else entry[0]

    def all(self) -> list[ServiceMetadata]:
        """Every live record."""
        self._expire()
        return [record for record, _ in self._records.values()]


class MemoryServiceDiscovery(RecordKeeper):
    """Service records in a :class:`MemoryServiceRegistry` (a private one by default)."""

    def __init__(
        self,
        registry: MemoryServiceRegistry | None = None,
        *,
        ttl: float = 60.0,
        on_records_restored: RecordsRestoredObserver | None = None,
        wall_clock: WallClock = time.time,
    ) -> None:
        super().__init__(
            "memory-service-discovery",
            on_records_restored=on_records_restored,
            wall_clock=wall_clock,
        )
        if ttl <= 0:
            raise ValueError(f"ttl must be positive: {ttl!r}")
        self._registry = registry if registry is not None else MemoryServiceRegistry()
        self._ttl = ttl

    @property
    def registry(self) -> MemoryServiceRegistry:
        """The shared store."""
        return self._registry

    def _start_background(self) -> None:
        self._tasks.spawn(self._refresh_loop(), "ttl-refresh")

    async def _refresh_loop(self) -> None:
        clock = self._registry.clock
        while True:
            await clock.sleep(self._ttl / 3)
            async with self._lock:
                missing = [
                    record
                    for key, record in self._owned.items()
                    if not self._registry.touch(key, self._ttl)
                ]
                for record in missing:
                    self._registry.put(record, self._ttl)
            if missing:
                self._restored([r.key for r in missing], "record expired or was deleted")

    async def _write(self, record: ServiceMetadata) -> None:
        self._registry.put(record, self._ttl)

    async def _delete(self, key: ServiceKey) -> None:
        self._registry.delete(key)

    async def _read_all(self) -> list[ServiceMetadata]:
        return self._registry.all()

    async def _read_group(self, service_group: str) -> list[ServiceMetadata]:
        return [r for r in self._registry.all() if r.service_group == service_group]

    async def _read_one(self, key: ServiceKey) -> ServiceMetadata | None:
        return self._registry.get(key)

    async def _release_owned(self) -> None:
        for key in list(self._owned):
            self._registry.delete(key)
