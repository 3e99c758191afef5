"""Behaviour only the in-memory etcd has: simulated disconnects and a manual lease clock."""

from __future__ import annotations

import pytest

from ai.backend.common.clients.etcd import (
    EtcdLeaseNotFound,
    ManualClock,
    MemoryEtcd,
    MemoryEtcdServer,
    WatchEventType,
)

from .conftest import next_events


async def test_watch_resumes_without_gap_after_disconnect() -> None:
    async with MemoryEtcd() as etcd, etcd.watch_prefix("w/") as watch:
        r1 = await etcd.put("w/a", "1")
        assert (await next_events(watch, 1))[0].revision == r1
        assert etcd.simulate_disconnect() == 1
        # written while the stream is broken, before the watch reconnects
        r2 = await etcd.put("w/b", "2")
        r3 = await etcd.delete("w/a")
        assert r3 == 1
        events = await next_events(watch, 2)
        assert [(e.key, e.event, e.revision) for e in events] == [
            ("w/b", WatchEventType.PUT, r2),
            ("w/a", WatchEventType.DELETE, r2 + 1),
        ]
        assert etcd.statistics().watch_reconnects == 1


async def test_lease_expiry_follows_the_manual_clock() -> None:
    clock = ManualClock()
    async with MemoryEtcd(clock=clock) as etcd:
        lease = await etcd.grant_lease(10, keepalive=False)
        await etcd.put("k", "v", lease=lease)
        clock.advance(9.9)
        assert await etcd.get("k") == "v"
        assert await etcd.lease_time_to_live(lease) == 0
        clock.advance(0.1)
        assert await etcd.get("k") is None
        with pytest.raises(EtcdLeaseNotFound):
            await etcd.lease_time_to_live(lease)


async def test_clients_of_one_server_share_state() -> None:
    server = MemoryEtcdServer()
    async with MemoryEtcd("ns", server=server) as a, MemoryEtcd("ns", server=server) as b:
        rev = await a.put("k", "v")
        assert await b.get("k") == "v"
        assert server.revision == rev


async def test_statistics_name_the_memory_endpoint() -> None:
    async with MemoryEtcd() as etcd:
        assert etcd.statistics().endpoint == "memory"
        assert etcd.statistics().failovers == 0
