"""etcd backend of service discovery: upstream's key layout, records under a lease.

Each record is upstream's flattened layout (``put_prefix`` of the record dict) at
``/sorna/<namespace>/ai/backend/service_discovery/<group>/<id>/...``, so upstream components
read ours and we read theirs. Unlike upstream, every record of an instance is attached to one
etcd lease that the etcd client keeps alive: when the process dies, its records vanish within
the TTL instead of waiting for a sweep.

Guarantees:
- the keys and values are upstream's, key by key, and records upstream wrote are read
  [tests/service_discovery/test_layout.py::test_etcd_keys_match_upstream]
  [tests/service_discovery/test_layout.py::test_reads_records_written_the_upstream_way];
- a record of a process killed with SIGKILL is gone within its TTL
  [tests/service_discovery/test_proof.py::test_killed_process_record_disappears];
- if the lease is lost while the instance is open (expired during a partition, revoked), a new
  lease is granted, every owned record is written again and ``on_records_restored`` is called
  [tests/service_discovery/test_discovery_conformance.py::test_lost_records_are_restored],
  also when other calls noticed the loss first and failed during the outage
  [tests/service_discovery/test_etcd.py::test_every_owned_record_comes_back_after_an_outage];
- an owned record whose write failed (its state in etcd unknown) is written again once etcd
  answers [tests/service_discovery/test_etcd.py::test_a_failed_write_is_written_again];
- registration, discovery and the lease survive the loss of the etcd leader member
  [tests/service_discovery/test_proof.py::test_etcd_leader_kill_keeps_discovery_working];
- while the records are being restored and etcd is still unreachable, ``register``,
  ``heartbeat`` and ``deregister`` make one attempt of their own and raise
  ``ServiceDiscoveryUnavailable`` (after at most the etcd client's failover timeout, plus one
  restore attempt in progress), never waiting for the restoration
  [tests/service_discovery/test_etcd.py::test_calls_fail_fast_while_records_are_restored]
  [tests/service_discovery/test_etcd.py::test_calls_fail_fast_after_the_etcd_server_died].

Limits: one lease per instance, so every record of an instance shares its TTL; values are text
in etcd (types come back through validation, as upstream).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

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

WriteObserver = Callable[[ServiceKey, "dict[str, str] | None", set[str], int], None]
"""``(record key, keys put (None: record deleted), keys deleted, revision)`` after a write."""


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
        self._unconfirmed: set[ServiceKey] = set()
        self._trouble = asyncio.Event()
        self._lease_changed = asyncio.Event()
        self._lost_leases: list[int] = []
        self._written: dict[ServiceKey, set[str]] = {}
        self._write_observers: list[WriteObserver] = []
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

    def _observe_writes(self, observer: WriteObserver) -> None:
        """Call ``observer`` after each write of this instance took effect (for the cache)."""
        self._write_observers.append(observer)

    # -- keep-alive ----------------------------------------------------------------
    #
    # ``_unconfirmed`` holds the owned records not known to be written under the current live
    # lease: all of them when the lease is lost, and each one whose write failed (its state in
    # etcd is unknown). Any call may add to it and wake the supervisor (``_trouble``); only the
    # supervisor empties it, by writing those records again, so no restoration is ever dropped
    # because another call noticed the trouble first.

    def _start_background(self) -> None:
        self._tasks.spawn(self._supervise(), "lease")

    def _check_lease(self) -> EtcdLease | None:
        """The current lease if it is live; after a loss, mark every owned record."""
        lease = self._lease
        if lease is not None and lease.lost:
            self._lease = None
            self._lost_leases.append(lease.id)
            self._mark_unconfirmed(self._owned)
            return None
        return lease

    def _mark_unconfirmed(self, keys: Iterable[ServiceKey]) -> None:
        self._unconfirmed.update(k for k in keys if k in self._owned)
        if self._unconfirmed:
            self._trouble.set()

    async def _live_lease(self) -> EtcdLease:
        lease = self._check_lease()
        if lease is None:
            lease = self._lease = await self._etcd.grant_lease(self._ttl)
            self._lease_changed.set()  # the supervisor watches the new lease from now on
        return lease

    async def _supervise(self) -> None:
        while True:
            lease = self._lease
            if not self._trouble.is_set() and not (lease is not None and lease.lost):
                self._lease_changed.clear()
                await _wait_any(self._trouble, self._lease_changed, lease)
                continue
            try:
                with map_etcd_errors("restore records"):
                    await self._repair()
            except ServiceDiscoveryError:
                # etcd unreachable (or the lease vanished under the write): try again later.
                # The lock is not held while waiting, so calls meanwhile fail fast instead of
                # queueing behind the recovery.
                await asyncio.sleep(self._retry)

    async def _repair(self) -> None:
        """One attempt to write every unconfirmed record again under a live lease.

        A new lease is granted before taking the lock: while etcd is down that is what fails,
        and it fails without holding up other calls.
        """
        spare: EtcdLease | None = None
        if self._check_lease() is None and self._unconfirmed:
            spare = await self._etcd.grant_lease(self._ttl)
        try:
            async with self._lock:
                if spare is not None and self._check_lease() is None:
                    self._lease, spare = spare, None
                    self._lease_changed.set()
                await self._rewrite_unconfirmed()
        finally:
            if spare is not None:
                # A call granted a lease meanwhile: this one is not needed. Short cleanup that
                # must run even while cancelled; if it fails the lease expires by its TTL.
                with contextlib.suppress(EtcdError):
                    await asyncio.shield(self._etcd.revoke_lease(spare))

    async def _rewrite_unconfirmed(self) -> None:
        """Write the unconfirmed records under the live lease (lock held)."""
        self._check_lease()
        keys = [k for k in self._unconfirmed if k in self._owned]
        if keys:
            lease = await self._live_lease()
            for key in keys:
                await self._put_record(self._owned[key], lease)
        self._unconfirmed.clear()
        self._trouble.clear()
        lost, self._lost_leases = self._lost_leases, []
        if keys:
            reason = (
                "etcd lease " + ", ".join(f"{i:#x}" for i in lost) + " was lost"
                if lost
                else "a write of the record failed"
            )
            self._restored(keys, reason)

    # -- storage -------------------------------------------------------------------

    async def _put_record(self, record: ServiceMetadata, lease: EtcdLease) -> None:
        key = record.key
        flat = flatten_dict(self.record_prefix(key), record.to_dict())
        stale = self._written.get(key, set()) - flat.keys()
        revision = self.last_write_revision = await self._etcd.put_dict(
            flat, scope=_GLOBAL, lease=lease, delete=stale
        )
        self._written[key] = set(flat)
        for observer in self._write_observers:
            observer(key, flat, stale, revision)

    async def _write(self, record: ServiceMetadata) -> None:
        with map_etcd_errors(f"register({record.service_group}/{record.id})"):
            try:
                await self._put_record(record, await self._live_lease())
            except BaseException:
                # Written or not, nobody knows: the supervisor writes the owned version again.
                self._mark_unconfirmed((record.key,))
                raise

    async def _delete(self, key: ServiceKey) -> None:
        with map_etcd_errors(f"deregister({key[0]}/{key[1]})"):
            deleted = await self._etcd.delete_prefix(self.record_prefix(key) + "/", scope=_GLOBAL)
            if deleted:
                revision = self.last_write_revision = await self._etcd.current_revision()
                for observer in self._write_observers:
                    observer(key, None, set(), revision)

    def _forget(self, key: ServiceKey) -> None:
        self._written.pop(key, None)
        self._unconfirmed.discard(key)

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
        self._unconfirmed.clear()
        if lease is not None:
            with map_etcd_errors("aclose()"):
                await self._etcd.revoke_lease(lease)

    async def _abandon_owned(self) -> None:
        lease, self._lease = self._lease, None
        self._written.clear()
        self._unconfirmed.clear()
        if lease is not None:
            await self._etcd.stop_keepalive(lease)


async def _wait_any(
    trouble: asyncio.Event, changed: asyncio.Event, lease: EtcdLease | None
) -> None:
    """Return once ``trouble`` or ``changed`` is set, or ``lease`` is lost."""
    waiters: set[asyncio.Future[Any]] = {
        asyncio.ensure_future(trouble.wait()),
        asyncio.ensure_future(changed.wait()),
    }
    if lease is not None:
        waiters.add(asyncio.ensure_future(lease.wait_lost()))
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        # Our own helper tasks, cancelled just above; their CancelledError is expected.
        await asyncio.gather(*waiters, return_exceptions=True)
