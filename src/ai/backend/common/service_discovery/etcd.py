"""etcd backend of service discovery: upstream's key layout, records under a lease.

Each record is upstream's flattened layout (``put_prefix`` of the record dict) at
``/sorna/<namespace>/ai/backend/service_discovery/<group>/<id>/...``, so upstream components
read ours and we read theirs. Unlike upstream, every record of an instance is attached to one
etcd lease that the etcd client keeps alive: when the process dies, its records vanish within
the TTL instead of waiting for a sweep.

Guarantees:
- a record of a process killed with SIGKILL is gone within its TTL
  [tests/service_discovery/test_proof.py::test_killed_process_record_disappears];
- if the lease is lost while the instance is open (expired during a partition, revoked), a new
  lease is granted, every owned record is written again and ``on_records_restored`` is called
  [tests/service_discovery/test_discovery_conformance.py::test_lost_records_are_restored];
- registration, discovery and the lease survive the loss of the etcd leader member
  [tests/service_discovery/test_proof.py::test_etcd_leader_kill_keeps_discovery_working].

Limits: one lease per instance, so every record of an instance shares its TTL; values are text
in etcd (types come back through validation, as upstream).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Final

from ..aio import ErrorTable, map_errors
from ..clients.etcd import (
    AsyncEtcd,
    ConfigScopes,
    EtcdError,
    EtcdLease,
    EtcdTimeout,
    EtcdUnavailable,
    flatten_dict,
)
from ._base import RecordKeeper
from .exceptions import ServiceDiscoveryError, ServiceDiscoveryUnavailable
from .types import RecordsRestoredObserver, ServiceKey, ServiceMetadata, WallClock

__all__ = ("DEFAULT_ETCD_PREFIX", "EtcdServiceDiscovery")

DEFAULT_ETCD_PREFIX: Final = "ai/backend/service_discovery"
"""Upstream's key prefix of service records (inside the etcd namespace)."""

_GLOBAL = ConfigScopes.GLOBAL


_ETCD_ERRORS: ErrorTable = {
    (EtcdUnavailable, EtcdTimeout): ServiceDiscoveryUnavailable,
    EtcdError: ServiceDiscoveryError,
}


def map_etcd_errors(what: str) -> contextlib.AbstractContextManager[None]:
    """Turn etcd client errors into service-discovery errors (chained)."""
    return map_errors(what, _ETCD_ERRORS)


class EtcdServiceDiscovery(RecordKeeper):
    """Service records in etcd under a lease of ``ttl`` seconds kept alive by ``etcd``.

    The etcd client is the caller's: this class never opens or closes it.
    """

    def __init__(
        self,
        etcd: AsyncEtcd,
        *,
        prefix: str = DEFAULT_ETCD_PREFIX,
        ttl: int = 30,
        on_records_restored: RecordsRestoredObserver | None = None,
        wall_clock: WallClock = time.time,
        restore_retry_interval: float = 0.5,
    ) -> None:
        super().__init__(
            "etcd-service-discovery",
            on_records_restored=on_records_restored,
            wall_clock=wall_clock,
        )
        self._etcd = etcd
        self._prefix = prefix.strip("/")
        self._ttl = ttl
        self._retry = restore_retry_interval
        self._lease: EtcdLease | None = None
        self._lease_ready = asyncio.Event()
        self._written: dict[ServiceKey, set[str]] = {}
        self.last_write_revision = 0
        """Revision of the last write of this instance that changed etcd (0 before any)."""

    @property
    def etcd(self) -> AsyncEtcd:
        """The etcd client records are written with."""
        return self._etcd

    @property
    def prefix(self) -> str:
        """Key prefix of every record (inside the etcd namespace, global scope)."""
        return self._prefix

    @property
    def lease(self) -> EtcdLease | None:
        """The lease owned records live under (granted at the first registration)."""
        return self._lease

    def record_prefix(self, key: ServiceKey) -> str:
        """``<prefix>/<group>/<id>``: where one record's keys live."""
        return f"{self._prefix}/{key[0]}/{key[1]}"

    # -- keep-alive ----------------------------------------------------------------

    def _start_background(self) -> None:
        self._tasks.spawn(self._supervise_lease(), "lease")

    async def _current_lease(self) -> EtcdLease:
        if self._lease is None:
            self._lease = await self._etcd.grant_lease(self._ttl)
            self._lease_ready.set()
        return self._lease

    async def _supervise_lease(self) -> None:
        while True:
            await self._lease_ready.wait()
            lease = self._lease
            if lease is None:
                self._lease_ready.clear()
                continue
            await lease.wait_lost()
            async with self._lock:
                if self._lease is lease:
                    await self._recover(lease)

    async def _recover(self, lost: EtcdLease, *, retry: bool = True) -> None:
        """Grant a new lease and write every owned record again (lock held); in the
        background (``retry``) keep trying while etcd is unreachable."""
        self._lease = None
        self._lease_ready.clear()
        while True:
            try:
                for record in list(self._owned.values()):
                    await self._put_record(record)
                break
            except (EtcdUnavailable, EtcdTimeout):
                if not retry:
                    raise
                await asyncio.sleep(self._retry)
        self._restored(list(self._owned), f"etcd lease {lost.id:#x} was lost")

    # -- storage -------------------------------------------------------------------

    async def _put_record(self, record: ServiceMetadata) -> None:
        lease = await self._current_lease()
        key = record.key
        flat = flatten_dict(self.record_prefix(key), record.to_dict())
        stale = self._written.get(key, set()) - flat.keys()
        self.last_write_revision = await self._etcd.put_dict(
            flat, scope=_GLOBAL, lease=lease, delete=stale
        )
        self._written[key] = set(flat)

    async def _write(self, record: ServiceMetadata) -> None:
        with map_etcd_errors(f"register({record.service_group}/{record.id})"):
            if self._lease is not None and self._lease.lost:
                await self._recover(self._lease, retry=False)
            await self._put_record(record)

    async def _delete(self, key: ServiceKey) -> None:
        with map_etcd_errors(f"deregister({key[0]}/{key[1]})"):
            deleted = await self._etcd.delete_prefix(self.record_prefix(key) + "/", scope=_GLOBAL)
            if deleted:
                self.last_write_revision = await self._etcd.current_revision()

    def _forget(self, key: ServiceKey) -> None:
        self._written.pop(key, None)

    async def _read_all(self) -> list[ServiceMetadata]:
        with map_etcd_errors("discover()"):
            tree = await self._etcd.get_prefix(self._prefix, scope=_GLOBAL)
        return [
            record
            for group in tree.values()
            if isinstance(group, dict)
            for raw in group.values()
            if (record := self._parse(raw)) is not None
        ]

    async def _read_group(self, service_group: str) -> list[ServiceMetadata]:
        with map_etcd_errors(f"get_service_group({service_group!r})"):
            tree = await self._etcd.get_prefix(f"{self._prefix}/{service_group}", scope=_GLOBAL)
        return [record for raw in tree.values() if (record := self._parse(raw)) is not None]

    async def _read_one(self, key: ServiceKey) -> ServiceMetadata | None:
        with map_etcd_errors(f"get_service({key[0]}/{key[1]})"):
            raw = await self._etcd.get_prefix(self.record_prefix(key), scope=_GLOBAL)
        return self._parse(raw) if raw else None

    async def _release_owned(self) -> None:
        lease, self._lease = self._lease, None
        self._written.clear()
        if lease is not None:
            with map_etcd_errors("aclose()"):
                await self._etcd.revoke_lease(lease)

    async def _abandon_owned(self) -> None:
        lease, self._lease = self._lease, None
        self._written.clear()
        if lease is not None:
            await self._etcd.stop_keepalive(lease)
