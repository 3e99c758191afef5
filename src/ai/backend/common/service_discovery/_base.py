"""What the record-keeping backends share: lifecycle, owned records, parsing (private)."""

from __future__ import annotations

import abc
import asyncio
import time
import uuid
from collections.abc import Iterable

from pydantic import ValidationError

from ..aio import TaskOwner
from .abc import AbstractServiceDiscovery
from .exceptions import ServiceDiscoveryClosed, ServiceNotFound
from .types import (
    RecordsRestored,
    RecordsRestoredObserver,
    ServiceDiscoveryStatistics,
    ServiceKey,
    ServiceMetadata,
    WallClock,
    group_name_problem,
)

__all__ = ("RecordKeeper", "sort_records")


def sort_records(records: Iterable[ServiceMetadata]) -> list[ServiceMetadata]:
    """Records sorted by group, then id."""
    return sorted(records, key=lambda r: (r.service_group, str(r.id)))


class RecordKeeper(AbstractServiceDiscovery):
    """Lifecycle and owned-record bookkeeping; backends supply storage and keep-alive."""

    def __init__(
        self,
        name: str,
        *,
        on_records_restored: RecordsRestoredObserver | None = None,
        wall_clock: WallClock = time.time,
    ) -> None:
        self._name = name
        self._tasks = TaskOwner(name)
        self._owned: dict[ServiceKey, ServiceMetadata] = {}
        self._lock = asyncio.Lock()
        self._state = "new"
        self._observer = on_records_restored
        self._wall_clock = wall_clock
        self._restorations = 0
        self._malformed = 0

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and start keeping records alive; idempotent."""
        if self._state == "open":
            return
        if self._state == "closed":
            raise ServiceDiscoveryClosed(f"{self._name} was closed")
        await self._backend_open()
        await self._tasks.start()
        self._state = "open"
        self._start_background()

    async def aclose(self) -> None:
        """Stop keep-alives and delete the records of this instance; idempotent."""
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        try:
            await self._tasks.stop()
            async with self._lock:
                if self._owned:
                    await self._release_owned()
                self._owned.clear()
        finally:
            await self._backend_close()

    async def abort(self) -> None:
        """Stop without cleanup (records expire by TTL), as a crashed process would."""
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        try:
            await self._tasks.stop()
            await self._abandon_owned()
        finally:
            self._owned.clear()
            await self._backend_close()

    def _check_open(self) -> None:
        if self._state != "open":
            raise ServiceDiscoveryClosed(f"{self._name} is not open (state: {self._state})")

    # -- public operations -----------------------------------------------------------

    async def register(self, service_meta: ServiceMetadata) -> None:
        """Write a record and keep it alive while this instance is open."""
        self._check_open()
        async with self._lock:
            await self._write(service_meta)
            self._owned[service_meta.key] = service_meta

    async def deregister(self, service_group: str, service_id: uuid.UUID) -> None:
        """Delete a record; a missing one is not an error."""
        self._check_open()
        key = (service_group, service_id)
        if group_name_problem(service_group) is not None:
            return  # no record can have that group: nothing to delete
        async with self._lock:
            await self._delete(key)
            self._owned.pop(key, None)
            self._forget(key)

    async def heartbeat(self, service_meta: ServiceMetadata) -> ServiceMetadata:
        """Set ``last_heartbeat`` to now and write the record."""
        updated = service_meta.with_heartbeat(self._wall_clock())
        await self.register(updated)
        return updated

    async def discover(self) -> list[ServiceMetadata]:
        """Every record, sorted by group then id."""
        self._check_open()
        return sort_records(await self._read_all())

    async def get_service_group(self, service_group: str) -> list[ServiceMetadata]:
        """The records of one group, sorted by id; ``[]`` when empty."""
        self._check_open()
        if group_name_problem(service_group) is not None:
            return []  # no record can have that group (it is refused on registration)
        return sort_records(await self._read_group(service_group))

    async def get_service(self, service_group: str, service_id: uuid.UUID) -> ServiceMetadata:
        """One record; ``ServiceNotFound`` when it does not exist."""
        self._check_open()
        record = None
        if group_name_problem(service_group) is None:
            record = await self._read_one((service_group, service_id))
        if record is None:
            raise ServiceNotFound(
                f"no service {service_id} in group {service_group!r}",
                data={"service_group": service_group, "service_id": str(service_id)},
            )
        return record

    def statistics(self) -> ServiceDiscoveryStatistics:
        """Owned records, restorations and malformed records skipped."""
        return ServiceDiscoveryStatistics(
            owned=len(self._owned),
            restorations=self._restorations,
            malformed=self._malformed,
        )

    # -- helpers for backends --------------------------------------------------------

    def _parse(self, data: object) -> ServiceMetadata | None:
        try:
            return ServiceMetadata.model_validate(data)
        except ValidationError:
            self._malformed += 1
            return None

    def _restored(self, keys: Iterable[ServiceKey], reason: str) -> None:
        self._restorations += 1
        if self._observer is not None:
            self._observer(RecordsRestored(tuple(keys), reason))

    def _forget(self, key: ServiceKey) -> None:
        """Drop backend bookkeeping of an owned record (default: nothing)."""

    # -- backend hooks ---------------------------------------------------------------

    async def _backend_open(self) -> None:
        """Connect (default: nothing)."""

    async def _backend_close(self) -> None:
        """Disconnect (default: nothing)."""

    @abc.abstractmethod
    def _start_background(self) -> None:
        """Spawn the keep-alive loop(s) with ``self._tasks.spawn``."""

    @abc.abstractmethod
    async def _write(self, record: ServiceMetadata) -> None:
        """Store one record under this instance's keep-alive."""

    @abc.abstractmethod
    async def _delete(self, key: ServiceKey) -> None:
        """Delete one record."""

    @abc.abstractmethod
    async def _read_all(self) -> list[ServiceMetadata]:
        """Every valid record."""

    @abc.abstractmethod
    async def _read_group(self, service_group: str) -> list[ServiceMetadata]:
        """Every valid record of a group."""

    @abc.abstractmethod
    async def _read_one(self, key: ServiceKey) -> ServiceMetadata | None:
        """One record, or None."""

    @abc.abstractmethod
    async def _release_owned(self) -> None:
        """Delete every owned record (graceful close)."""

    async def _abandon_owned(self) -> None:
        """Stop keeping owned records alive without deleting them (default: nothing)."""
