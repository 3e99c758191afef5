"""CachedServiceDiscovery: lookups from memory, convergence, resync after compaction."""

from __future__ import annotations

import asyncio

import pytest

from ai.backend.common.clients.etcd import (
    EtcdClient,
    EtcdUnavailable,
    ManualClock,
    MemoryEtcd,
    MemoryEtcdServer,
)
from ai.backend.common.service_discovery import (
    CachedServiceDiscovery,
    EtcdServiceDiscovery,
    ServiceDiscoveryUnavailable,
    ServiceNotFound,
)
from tests._harness.etcd import EtcdServer
from tests._helpers import until

from .conftest import make_record


@pytest.mark.etcd
async def test_lookups_do_not_touch_etcd(private_etcd: EtcdServer) -> None:
    async with (
        EtcdClient(private_etcd.endpoint, "cache", failover_timeout=1.0) as etcd,
        CachedServiceDiscovery(EtcdServiceDiscovery(etcd, ttl=5)) as cache,
    ):
        records = [make_record("agent", port=p) for p in range(5)]
        for record in records:
            await cache.register(record)
        await asyncio.to_thread(private_etcd.kill)
        # etcd is gone: every lookup below is answered from the cache
        assert await cache.get_service("agent", records[0].id) == records[0]
        assert len(await cache.get_service_group("agent")) == 5
        assert len(await cache.discover()) == 5
        assert cache.lookup("agent", records[1].id) == records[1]
        with pytest.raises(ServiceNotFound):
            await cache.get_service("manager", records[0].id)
        await cache.abort()  # the lease cannot be revoked without etcd
        await asyncio.to_thread(private_etcd.start)


async def test_cache_follows_other_writers_and_expiry() -> None:
    clock = ManualClock()
    server = MemoryEtcdServer(clock=clock)
    async with (
        MemoryEtcd("c", server=server) as etcd_a,
        MemoryEtcd("c", server=server) as etcd_b,
        CachedServiceDiscovery(EtcdServiceDiscovery(etcd_a, ttl=5)) as cache,
        EtcdServiceDiscovery(etcd_b, ttl=5) as writer,
    ):
        first, second = make_record("agent", port=1), make_record("agent", port=2)
        await writer.register(first)
        await writer.register(second)
        await until(lambda: len(cache.lookup_group("agent")) == 2, what="two records")
        changed = first.model_copy(update={"labels": {"zone": "b"}})
        await writer.register(changed)
        await until(lambda: cache.lookup("agent", first.id) == changed, what="the update")
        await writer.deregister("agent", second.id)
        await until(lambda: cache.lookup("agent", second.id) is None, what="the deletion")
        await writer.abort()  # its lease is no longer kept alive

        def expired() -> bool:
            clock.advance(1.0)
            return cache.lookup("agent", first.id) is None

        await until(expired, what="the expiry of the crashed writer's record")
        assert cache.snapshot() == []
        stats = cache.cache_statistics()
        assert stats.records == 0
        assert stats.events > 0
        assert not stats.stale


async def test_resync_after_compaction() -> None:
    server = MemoryEtcdServer()
    async with (
        MemoryEtcd("c", server=server) as etcd_a,
        MemoryEtcd("c", server=server) as etcd_b,
        CachedServiceDiscovery(EtcdServiceDiscovery(etcd_a, ttl=30)) as cache,
        EtcdServiceDiscovery(etcd_b, ttl=30) as writer,
    ):
        before = make_record("agent", port=1)
        await writer.register(before)
        await until(lambda: cache.lookup("agent", before.id) is not None, what="a record")
        # The cache's stream breaks; while it is away, records change and history is compacted,
        # so it cannot resume where it stopped.
        assert etcd_a.simulate_disconnect() == 1
        after = make_record("agent", port=2)
        await writer.register(after)
        await writer.deregister("agent", before.id)
        server.compact(server.revision)

        def resynced() -> bool:
            return (
                cache.lookup("agent", after.id) == after
                and cache.lookup("agent", before.id) is None
            )

        await until(resynced, what="the cache to re-read everything")
        assert cache.cache_statistics().resyncs == 2


async def test_cache_reads_its_own_writes_at_once() -> None:
    async with (
        MemoryEtcd("c") as etcd,
        CachedServiceDiscovery(EtcdServiceDiscovery(etcd, ttl=30)) as cache,
    ):
        record = make_record("storage")
        await cache.register(record)
        assert cache.lookup("storage", record.id) == record
        await cache.deregister("storage", record.id)
        assert cache.lookup("storage", record.id) is None


async def test_heartbeats_do_not_reparse() -> None:
    now = [1_000.0]
    async with (
        MemoryEtcd("c") as etcd,
        CachedServiceDiscovery(
            EtcdServiceDiscovery(etcd, ttl=30, wall_clock=lambda: now[0])
        ) as cache,
    ):
        records = [make_record("agent", port=p) for p in range(20)]
        for record in records:
            await cache.heartbeat(record)
        assert len(cache.prometheus_targets(now=1_000.0)) == 20
        parsed = cache.cache_statistics().parses
        assert parsed == 20
        now[0] = 2_000.0
        for record in records[:5]:
            await cache.heartbeat(record)  # the other 15 are now 1,000 s old: unhealthy
        healthy = cache.prometheus_targets(heartbeat_timeout=300, now=2_000.0)
        assert sorted(g["labels"]["service_id"] for g in healthy) == sorted(
            str(r.id) for r in records[:5]
        )
        assert cache.cache_statistics().parses == parsed  # no record was parsed again
        # a lookup sees the new heartbeat, still without parsing
        beat = cache.lookup("agent", records[0].id)
        assert beat is not None
        assert beat.health_status.last_heartbeat == 2_000.0
        assert beat == records[0].with_heartbeat(2_000.0)
        assert cache.cache_statistics().parses == parsed
        # any other change is parsed again, for that record only
        await cache.register(beat.model_copy(update={"labels": {"zone": "b"}}))
        groups = cache.prometheus_targets(heartbeat_timeout=300, now=2_000.0)
        assert {g["labels"].get("zone") for g in groups} == {None, "b"}
        assert cache.cache_statistics().parses == parsed + 1


async def test_own_writes_do_not_wait_for_the_watch() -> None:
    async with (
        MemoryEtcd("c") as etcd,
        CachedServiceDiscovery(EtcdServiceDiscovery(etcd, ttl=30), write_sync_timeout=0.2) as cache,
    ):
        first = make_record("agent", port=1)
        await cache.register(first)
        await cache.wait_watched()
        # The watch is cut off and cannot come back for now ...
        etcd.fail_requests(EtcdUnavailable("watch refused"), count=10**6, kinds={"watch"})
        assert etcd.simulate_disconnect() == 1
        second = make_record("agent", port=2)
        await cache.register(second)  # ... yet an own write is visible at once
        assert cache.lookup("agent", second.id) == second
        await cache.deregister("agent", first.id)
        assert cache.lookup("agent", first.id) is None
        with pytest.raises(ServiceDiscoveryUnavailable):
            await cache.wait_watched()  # the watch itself has not delivered them
        etcd.clear_faults()
        await cache.wait_watched()  # it resumes, and its events change nothing
        assert cache.snapshot() == [second]


@pytest.mark.slow
async def test_closing_right_after_opening_never_hangs(etcd_endpoint: str) -> None:
    # Closing while the cache's watch is still being created used to lose the cancellation
    # (inside aetcd's asyncio.wait_for) and wait for ever: about one run in three of 40 cycles.
    for _ in range(120):
        async with asyncio.timeout(10), EtcdClient(etcd_endpoint, "open-close") as etcd:
            cache = CachedServiceDiscovery(EtcdServiceDiscovery(etcd, ttl=5))
            await cache.open()
            await cache.register(make_record("agent"))
            await cache.aclose()
