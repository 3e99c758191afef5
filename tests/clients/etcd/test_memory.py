"""Behaviour only the in-memory etcd has: simulated disconnects and a manual lease clock."""

from __future__ import annotations

import asyncio

import pytest

from ai.backend.common.aio import TaskOwnerStopped
from ai.backend.common.clients.etcd import (
    EtcdClosed,
    EtcdError,
    EtcdInvalidArgument,
    EtcdLeaseNotFound,
    EtcdUnavailable,
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


async def _pass(clock: ManualClock, seconds: float, step: float = 0.05) -> None:
    """Advance ``clock`` in small steps, letting keep-alives and the sweeper run in between."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        for _ in range(5):
            await asyncio.sleep(0)


async def test_outage_fails_requests_and_lets_leases_expire() -> None:
    clock = ManualClock()
    server = MemoryEtcdServer(clock=clock)
    async with MemoryEtcd("ns", server=server) as etcd, MemoryEtcd("ns", server=server) as other:
        lease = await etcd.grant_lease(3)
        await etcd.put("k", "v", lease=lease)
        etcd.simulate_outage()
        assert etcd.in_outage
        for call in (etcd.put("x", "1"), etcd.get("k"), etcd.grant_lease(3)):
            with pytest.raises(EtcdUnavailable):
                await call
        await _pass(clock, 3.5)  # no keep-alive got through for a whole TTL
        assert lease.lost
        assert await other.get("k") is None  # the server expired it meanwhile
        etcd.end_outage()
        assert not etcd.in_outage
        assert await etcd.get("k") is None
        await etcd.put("x", "1")


async def test_failed_and_slow_requests() -> None:
    async with MemoryEtcd() as etcd:
        etcd.fail_requests(EtcdError("etcdserver: too many requests"), count=2, kinds={"txn"})
        assert await etcd.get("k") is None  # another kind goes through
        for _ in range(2):
            with pytest.raises(EtcdError, match="too many requests"):
                await etcd.put("k", "v")
        await etcd.put("k", "v")
        with pytest.raises(EtcdInvalidArgument):
            etcd.fail_requests(EtcdError("x"), kinds={"nope"})
        etcd.delay_replies(10.0)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await etcd.put("k", "late")  # applied, but the answer never came in time
        etcd.delay_replies(0)
        assert await etcd.get("k") == "late"


async def test_refused_keepalive_is_a_failed_attempt_not_a_crash() -> None:
    clock = ManualClock()
    async with MemoryEtcd(clock=clock) as etcd:
        first, second = await etcd.grant_lease(3), await etcd.grant_lease(3)
        await etcd.put("a", "1", lease=first)
        await etcd.put("b", "2", lease=second)
        # gRPC RESOURCE_EXHAUSTED ("too many requests") reaches the client as a plain EtcdError
        etcd.fail_requests(EtcdError("etcdserver: too many requests"), kinds={"keepalive"})
        await _pass(clock, 10)
        assert not first.lost
        assert not second.lost
        assert etcd.statistics().leases_kept_alive == 2
        assert (await etcd.get("a"), await etcd.get("b")) == ("1", "2")
        assert (await etcd.grant_lease(3)).keepalive  # the background group is still running


async def test_keepalive_refused_for_a_whole_ttl_marks_the_lease_lost() -> None:
    clock = ManualClock()
    async with MemoryEtcd(clock=clock) as etcd:
        lease = await etcd.grant_lease(3)
        etcd.fail_requests(EtcdError("etcdserver: too many requests"), count=10**6)
        await _pass(clock, 3.5)
        assert lease.lost
        assert etcd.statistics().leases_lost == 1


async def test_a_crashed_keepalive_loop_marks_its_leases_lost() -> None:
    clock = ManualClock()
    etcd = MemoryEtcd(clock=clock)
    await etcd.open()
    first, second = await etcd.grant_lease(3), await etcd.grant_lease(3)
    etcd.fail_requests(RuntimeError("a bug in a keep-alive"), kinds={"keepalive"})
    async with asyncio.timeout(10):
        while not (first.lost and second.lost):  # the owner of every loop ended
            await _pass(clock, 0.5)
    with pytest.raises(EtcdClosed) as info:
        await etcd.grant_lease(3)  # never aio.TaskOwnerStopped
    assert isinstance(info.value.__cause__, TaskOwnerStopped)
    with pytest.raises(ExceptionGroup) as group:
        await etcd.aclose()  # the loop's failure reaches the owner
    assert group.group_contains(RuntimeError, match="a bug")


@pytest.mark.parametrize("call", ["revoke_lease", "stop_keepalive"])
async def test_cancelling_a_lease_call_propagates(call: str) -> None:
    async with MemoryEtcd() as etcd:
        lease = await etcd.grant_lease(30)
        etcd.delay_replies(10.0)  # revoke_lease waits for its reply; stop_keepalive does not
        started = asyncio.Event()

        async def run() -> None:
            started.set()
            await getattr(etcd, call)(lease)
            await asyncio.sleep(10)  # only reached if the cancellation was swallowed

        task = asyncio.create_task(run())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert etcd.statistics().leases_kept_alive == 0
        etcd.delay_replies(0)
