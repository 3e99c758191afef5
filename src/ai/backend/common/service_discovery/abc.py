"""The service-discovery interface, :class:`AbstractServiceDiscovery`.

Backends: :class:`~.etcd.EtcdServiceDiscovery` (records under an etcd lease),
:class:`~.redis.RedisServiceDiscovery` (hashes with a TTL) and
:class:`~.memory.MemoryServiceDiscovery`; :class:`~.cache.CachedServiceDiscovery` serves reads
of the etcd backend from a watch-fed local copy. All pass
``tests/service_discovery/test_discovery_conformance.py``.
"""

from __future__ import annotations

import abc
import uuid

from ..aio import AsyncResource
from .types import ServiceDiscoveryStatistics, ServiceMetadata

__all__ = ("AbstractServiceDiscovery",)


class AbstractServiceDiscovery(AsyncResource):
    """Where services register themselves and find each other.

    A record registered through an instance stays while that instance is open (the instance
    keeps it alive: etcd lease keep-alive, Redis/memory TTL refresh) and disappears within the
    TTL once the instance stops without cleanup (its process crashed); ``aclose()`` removes the
    records it registered at once. If a record of the instance is found gone while it is open
    (lease lost, key expired during a stall), it is written again and ``on_records_restored``
    is called. Lookups of an empty group give ``[]``; a missing record raises
    :class:`~.exceptions.ServiceNotFound`. Errors are
    :class:`~.exceptions.ServiceDiscoveryError` subclasses.
    """

    @abc.abstractmethod
    async def open(self) -> None:
        """Start keeping records alive; idempotent."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop, and delete the records registered through this instance; idempotent."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Stop as a crashed process would: no cleanup, records expire by their TTL."""

    @abc.abstractmethod
    async def register(self, service_meta: ServiceMetadata) -> None:
        """Write (or overwrite) a record and keep it alive while this instance is open.

        If cancelled, the record may or may not have been written.
        """

    @abc.abstractmethod
    async def deregister(self, service_group: str, service_id: uuid.UUID) -> None:
        """Delete a record (a missing one is not an error) and stop keeping it alive."""

    async def unregister(self, service_group: str, service_id: uuid.UUID) -> None:
        """Upstream's name of :meth:`deregister`."""
        await self.deregister(service_group, service_id)

    @abc.abstractmethod
    async def heartbeat(self, service_meta: ServiceMetadata) -> ServiceMetadata:
        """Set ``last_heartbeat`` to now and write the record (registering it if absent).

        Returns the record as written.
        """

    @abc.abstractmethod
    async def discover(self) -> list[ServiceMetadata]:
        """Every record, sorted by group then id (``[]`` when there is none)."""

    @abc.abstractmethod
    async def get_service_group(self, service_group: str) -> list[ServiceMetadata]:
        """The records of one group, sorted by id (``[]`` for an empty group)."""

    @abc.abstractmethod
    async def get_service(self, service_group: str, service_id: uuid.UUID) -> ServiceMetadata:
        """One record; raises ``ServiceNotFound`` when it does not exist."""

    @abc.abstractmethod
    def statistics(self) -> ServiceDiscoveryStatistics:
        """A snapshot of this instance."""
