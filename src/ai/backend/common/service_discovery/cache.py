"""A watch-fed local copy of the etcd service records: lookups never touch etcd.

:class:`CachedServiceDiscovery` wraps an :class:`~.etcd.EtcdServiceDiscovery`: it reads every
record once, then follows a prefix watch from the revision after that read, so it misses no
change (the watch resumes at the last revision + 1 across reconnects, and re-reads everything
if that revision was compacted). Writes go to etcd and return once the cache has seen them.

Guarantees:
- lookups are served from memory
  [tests/service_discovery/test_cache.py::test_lookups_do_not_touch_etcd];
- the cache converges to etcd's records, whoever writes them, expiries included
  [tests/service_discovery/test_cache.py::test_cache_follows_other_writers_and_expiry];
- an instance reads its own writes: a write of ``inner`` is applied to the cache as soon as
  etcd took it, ahead of its watch events
  [tests/service_discovery/test_discovery_conformance.py::test_register_then_get]
  [tests/service_discovery/test_cache.py::test_cache_reads_its_own_writes_at_once];
- a compacted history makes the cache re-read everything
  [tests/service_discovery/test_cache.py::test_resync_after_compaction];
- a heartbeat (a change of ``last_heartbeat`` only) re-parses nothing: the record and its
  Prometheus target group are kept, and only its health is checked again; the SD output is
  the same as rendering the records
  [tests/service_discovery/test_cache.py::test_heartbeats_do_not_reparse]
  [tests/service_discovery/test_prometheus.py::test_cached_targets_match_rendered_records].

Limits: records written by others appear after the watch delivers them (eventual, typically
milliseconds); if the etcd client is closed, the cache stops following (``stale``); if another
instance writes the same record at the same moment, the cache may show the older write for
a moment, until the watch catches up.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..aio import TaskOwner
from ..clients.etcd import (
    ConfigScopes,
    EtcdTimeout,
    EtcdUnavailable,
    EtcdWatchCompacted,
    WatchEvent,
    WatchEventType,
    unflatten_pairs,
)
from ._base import sort_records
from ._targets import target_group
from .abc import AbstractServiceDiscovery
from .etcd import EtcdServiceDiscovery, map_etcd_errors
from .exceptions import ServiceDiscoveryClosed, ServiceDiscoveryUnavailable, ServiceNotFound
from .types import (
    DEFAULT_HEARTBEAT_TIMEOUT,
    ServiceDiscoveryStatistics,
    ServiceKey,
    ServiceMetadata,
)

__all__ = ("CacheStatistics", "CachedServiceDiscovery")

_HEARTBEAT_KEY = "health_status/last_heartbeat"
"""The one key a heartbeat changes (relative to the record's prefix)."""

_as_float = TypeAdapter(float).validate_python
"""Validates last_heartbeat text exactly as the record model does."""

_order = itemgetter(0)


@dataclass(frozen=True, slots=True)
class CacheStatistics:
    """A snapshot of the cache."""

    records: int
    """Records currently cached (valid or not)."""
    revision: int
    """The etcd revision the cache reflects."""
    events: int
    """Watch events applied."""
    resyncs: int
    """Full re-reads (the first read included)."""
    stale: bool
    """True once the watch ended (the etcd client was closed)."""
    parses: int = 0
    """Records parsed (validated) from their keys; a heartbeat does not make one re-parse."""


class CachedServiceDiscovery(AbstractServiceDiscovery):
    """Service discovery reading a local, watch-fed copy of ``inner``'s records.

    Opening and closing this object opens and closes ``inner``.
    """

    def __init__(self, inner: EtcdServiceDiscovery, *, write_sync_timeout: float = 10.0) -> None:
        self._inner = inner
        self._etcd = inner.etcd
        self._base = inner.prefix + "/"
        self._sync_timeout = write_sync_timeout
        self._tasks = TaskOwner("service-discovery-cache")
        self._raw: dict[ServiceKey, dict[str, str]] = {}
        self._parsed: dict[ServiceKey, ServiceMetadata | None] = {}
        # A heartbeat changes only last_heartbeat: the parsed record and its rendered SD target
        # group are kept, and the new value waits here until a lookup copies it in.
        self._beats: dict[ServiceKey, float] = {}
        self._skeys: dict[tuple[str, str], ServiceKey] = {}
        self._targets: dict[tuple[ServiceKey, bool], tuple[tuple[str, str], Any] | None] = {}
        self._groups: dict[str, set[uuid.UUID]] = {}
        self._revision = 0
        self._events = 0
        self._resyncs = 0
        self._parses = 0
        self._stale = False
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._state = "new"
        self._local_revision = 0
        inner._observe_writes(self._written_by_inner)

    @property
    def inner(self) -> EtcdServiceDiscovery:
        """The etcd backend behind the cache."""
        return self._inner

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Open ``inner``, read every record, then follow the watch; idempotent."""
        if self._state == "open":
            return
        if self._state == "closed":
            raise ServiceDiscoveryClosed("service discovery cache was closed")
        await self._inner.open()
        await self._resync()
        await self._tasks.start()
        self._state = "open"
        self._tasks.spawn(self._follow(), "watch")

    async def aclose(self) -> None:
        """Stop following, then close ``inner`` (deleting its records); idempotent."""
        await self._shut_down(graceful=True)

    async def abort(self) -> None:
        """Stop following and abort ``inner`` (its records expire by TTL)."""
        await self._shut_down(graceful=False)

    async def _shut_down(self, *, graceful: bool) -> None:
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        try:
            await self._tasks.stop()
        finally:
            self._fail_waiters()
            if graceful:
                await self._inner.aclose()
            else:
                await self._inner.abort()

    def _check_open(self) -> None:
        if self._state != "open":
            raise ServiceDiscoveryClosed(f"service discovery cache is not open ({self._state})")

    # -- following etcd --------------------------------------------------------------

    async def _resync(self) -> None:
        with map_etcd_errors("service discovery cache: initial read"):
            snapshot = await self._etcd.get_prefix_flat(self._base, scope=ConfigScopes.GLOBAL)
        self._raw.clear()
        self._skeys.clear()
        self._parsed.clear()
        self._beats.clear()
        self._targets.clear()
        self._groups.clear()
        for key, value in snapshot.items.items():
            self._put_raw(key, value)
        self._revision = snapshot.revision
        self._resyncs += 1
        self._wake(snapshot.revision)

    async def _follow(self) -> None:
        delay = 0.05
        while True:
            try:
                async with self._etcd.watch_prefix(
                    self._base, scope=ConfigScopes.GLOBAL, start_revision=self._revision + 1
                ) as watch:
                    delay = 0.05
                    async for event in watch:
                        self._apply(event)
                self._stale = True
                self._fail_waiters()
                return
            except EtcdWatchCompacted:
                await self._resync_retrying()
            except (EtcdUnavailable, EtcdTimeout):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _resync_retrying(self) -> None:
        while True:
            try:
                await self._resync()
                return
            except ServiceDiscoveryUnavailable:
                await asyncio.sleep(0.5)

    def _split(self, key: str) -> tuple[ServiceKey, str] | None:
        if not key.startswith(self._base):
            return None
        parts = key[len(self._base) :].split("/", 2)
        if len(parts) != 3 or not parts[0] or not parts[2]:
            return None
        # A record's dozen keys share one id: parse it once (every watch event needs it).
        head = (parts[0], parts[1])
        skey = self._skeys.get(head)
        if skey is None:
            try:
                skey = (parts[0], uuid.UUID(parts[1]))
            except ValueError:
                return None
            self._skeys[head] = skey
        return skey, parts[2]

    def _put_raw(self, key: str, value: str) -> None:
        split = self._split(key)
        if split is not None:
            self._put_field(split[0], split[1], value)

    def _put_field(self, skey: ServiceKey, sub: str, value: str) -> None:
        fields = self._raw.get(skey)
        if fields is None:
            fields = self._raw[skey] = {}
            self._groups.setdefault(skey[0], set()).add(skey[1])
        old = fields.get(sub)
        fields[sub] = value
        if old == value:
            return  # a record is rewritten whole on every heartbeat: most keys do not change
        if sub == _HEARTBEAT_KEY and self._parsed.get(skey) is not None:
            try:
                self._beats[skey] = _as_float(value)
                return
            except ValidationError:
                pass  # the full parse below will count the record malformed
        self._invalidate(skey)

    def _invalidate(self, skey: ServiceKey) -> None:
        self._parsed.pop(skey, None)
        self._beats.pop(skey, None)
        self._targets.pop((skey, True), None)
        self._targets.pop((skey, False), None)

    def _delete_raw(self, key: str) -> None:
        split = self._split(key)
        if split is None:
            return
        skey, sub = split
        fields = self._raw.get(skey)
        if fields is None:
            return
        fields.pop(sub, None)
        self._invalidate(skey)
        if not fields:
            del self._raw[skey]
            self._skeys.pop((skey[0], str(skey[1])), None)
            members = self._groups.get(skey[0])
            if members is not None:
                members.discard(skey[1])
                if not members:
                    del self._groups[skey[0]]

    def _apply(self, event: WatchEvent) -> None:
        if event.event is WatchEventType.PUT:
            self._put_raw(event.key, event.value)
        else:
            self._delete_raw(event.key)
        self._events += 1
        self._revision = max(self._revision, event.revision)
        self._wake(self._revision)

    def _written_by_inner(
        self, skey: ServiceKey, puts: dict[str, str] | None, deletes: set[str], revision: int
    ) -> None:
        """Apply a write of ``inner`` at once, ahead of its watch events.

        Only if the watch has not passed that revision yet; the events still come and apply
        the same values again (no change), while events of other writers between the watch's
        position and this revision apply after it, as they would have; either way the cache
        converges on etcd's state once the watch reaches the revision.
        """
        if revision <= self._revision or self._state != "open":
            return
        if puts is None:
            base = f"{self._base}{skey[0]}/{skey[1]}/"
            for sub in list(self._raw.get(skey, ())):
                self._delete_raw(base + sub)
        else:
            for key in deletes:
                self._delete_raw(key)
            strip = len(self._base) + len(skey[0]) + 38  # "<group>/<36-character id>/"
            for key, value in puts.items():
                self._put_field(skey, key[strip:], value)
        self._local_revision = max(self._local_revision, revision)

    def _wake(self, revision: int) -> None:
        if not self._waiters:
            return
        keep = []
        for rev, fut in self._waiters:
            if rev <= revision:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((rev, fut))
        self._waiters = keep

    def _fail_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for _, fut in waiters:
            if not fut.done():
                fut.set_exception(ServiceDiscoveryClosed("service discovery cache stopped"))

    async def wait_watched(self, revision: int | None = None) -> None:
        """Return once the watch has delivered ``revision`` (default: the last write of
        ``inner``); ``ServiceDiscoveryUnavailable`` if that takes ``write_sync_timeout``."""
        self._check_open()
        await self._seen(
            self._inner.last_write_revision if revision is None else revision, watched=True
        )

    async def _seen(self, revision: int, *, watched: bool = False) -> None:
        """Return once the cache reflects ``revision`` (at once for ``inner``'s own writes,
        applied when they took effect, unless ``watched``)."""
        if revision <= self._revision or (not watched and revision <= self._local_revision):
            return
        if self._stale:
            raise ServiceDiscoveryUnavailable("service discovery cache stopped following etcd")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, fut))
        try:
            async with asyncio.timeout(self._sync_timeout):
                await fut
        except TimeoutError:
            raise ServiceDiscoveryUnavailable(
                f"service discovery cache did not see revision {revision} within "
                f"{self._sync_timeout} s (at {self._revision})"
            ) from None

    # -- lookups (memory only) -------------------------------------------------------

    def lookup(self, service_group: str, service_id: uuid.UUID) -> ServiceMetadata | None:
        """The cached record, or None (no I/O, no await)."""
        key = (service_group, service_id)
        if key in self._parsed:
            record = self._parsed[key]
            if record is not None and key in self._beats:
                record = self._parsed[key] = record.with_heartbeat(self._beats.pop(key))
            return record
        fields = self._raw.get(key)
        if fields is None:
            return None
        record = self._inner._parse(unflatten_pairs("", fields.items()))
        self._parses += 1
        self._parsed[key] = record
        return record

    def prometheus_targets(
        self,
        service_group: str | None = None,
        *,
        heartbeat_timeout: float | None = DEFAULT_HEARTBEAT_TIMEOUT,
        now: float | None = None,
        meta_labels: bool = True,
    ) -> list[dict[str, Any]]:
        """Prometheus HTTP SD target groups of the cached records (of one group, if given),
        as :func:`~.prometheus.prometheus_sd_targets` renders them, from memory.

        Each record's target group is rendered once per version of the record and kept across
        heartbeats (they change only the health check). The groups returned are shared with
        the cache: encode them, do not change them.
        """
        self._check_open()
        current = time.time() if now is None else now
        if service_group is None:
            keys: list[ServiceKey] = list(self._raw)
        else:
            keys = [(service_group, i) for i in self._groups.get(service_group, ())]
        found: list[tuple[tuple[str, str], Any]] = []
        for key in keys:
            record = self._parsed[key] if key in self._parsed else self.lookup(*key)
            if record is None:
                continue
            if heartbeat_timeout is not None:
                beat = self._beats.get(key, record.health_status.last_heartbeat)
                if not current - beat < heartbeat_timeout:
                    continue
            memo = (key, meta_labels)
            if memo in self._targets:
                entry = self._targets[memo]
            else:
                group = target_group(record, meta_labels=meta_labels)
                order = (record.service_group, str(record.id))
                entry = self._targets[memo] = None if group is None else (order, group)
            if entry is not None:
                found.append(entry)
        found.sort(key=_order)
        return [group for _, group in found]

    def lookup_group(self, service_group: str) -> list[ServiceMetadata]:
        """The cached records of a group, sorted by id (no I/O)."""
        ids = self._groups.get(service_group, ())
        found = [self.lookup(service_group, i) for i in ids]
        return sort_records(r for r in found if r is not None)

    def snapshot(self) -> list[ServiceMetadata]:
        """Every cached record, sorted by group then id (no I/O)."""
        found = [self.lookup(*key) for key in list(self._raw)]
        return sort_records(r for r in found if r is not None)

    async def discover(self) -> list[ServiceMetadata]:
        """Every record, from the cache."""
        self._check_open()
        return self.snapshot()

    async def get_service_group(self, service_group: str) -> list[ServiceMetadata]:
        """The records of a group, from the cache; ``[]`` when empty."""
        self._check_open()
        return self.lookup_group(service_group)

    async def get_service(self, service_group: str, service_id: uuid.UUID) -> ServiceMetadata:
        """One record from the cache; ``ServiceNotFound`` when it is not there."""
        self._check_open()
        record = self.lookup(service_group, service_id)
        if record is None:
            raise ServiceNotFound(
                f"no service {service_id} in group {service_group!r}",
                data={"service_group": service_group, "service_id": str(service_id)},
            )
        return record

    # -- writes (through etcd) -------------------------------------------------------

    async def register(self, service_meta: ServiceMetadata) -> None:
        """Register through etcd; returns once the cache has the record."""
        self._check_open()
        await self._inner.register(service_meta)
        await self._seen(self._inner.last_write_revision)

    async def deregister(self, service_group: str, service_id: uuid.UUID) -> None:
        """Deregister through etcd; returns once the cache dropped the record."""
        self._check_open()
        await self._inner.deregister(service_group, service_id)
        await self._seen(self._inner.last_write_revision)

    async def heartbeat(self, service_meta: ServiceMetadata) -> ServiceMetadata:
        """Heartbeat through etcd; returns once the cache has the new record."""
        self._check_open()
        record = await self._inner.heartbeat(service_meta)
        await self._seen(self._inner.last_write_revision)
        return record

    def statistics(self) -> ServiceDiscoveryStatistics:
        """The statistics of ``inner`` (records owned, restorations, malformed)."""
        return self._inner.statistics()

    def cache_statistics(self) -> CacheStatistics:
        """Records, revision, events, resyncs and staleness of the cache."""
        return CacheStatistics(
            records=len(self._raw),
            revision=self._revision,
            events=self._events,
            resyncs=self._resyncs,
            stale=self._stale,
            parses=self._parses,
        )
