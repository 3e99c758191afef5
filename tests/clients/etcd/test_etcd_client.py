"""Behaviour only the real etcd backend has: upstream key layout, failover, kills and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import aetcd
import pytest

from ai.backend.common.clients.etcd import (
    ConfigScopes,
    EtcdClient,
    EtcdError,
    EtcdUnavailable,
)
from tests._harness.etcd import EtcdCluster, EtcdServer
from tests._harness.ports import free_port
from tests._helpers import until

from .conftest import SCOPES, next_events


def _host_port(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


@pytest.fixture
async def raw(etcd_endpoint: str) -> AsyncIterator[aetcd.Client]:
    """A bare aetcd client on the session etcd, to see the keys as upstream does."""
    host, port = _host_port(etcd_endpoint)
    async with aetcd.Client(host=host, port=port) as client:
        yield client


async def test_key_layout_matches_upstream(etcd_endpoint: str, raw: aetcd.Client) -> None:
    ns = f"layout-{uuid.uuid4().hex[:6]}"
    async with EtcdClient(etcd_endpoint, ns, SCOPES) as etcd:
        await etcd.put_prefix("obj", {"with/slash": "1", "n": {"a b": "2"}})
        await etcd.put("k", "sg", scope=ConfigScopes.SGROUP)
        await etcd.put("k", "node", scope=ConfigScopes.NODE)
    result = await raw.get_prefix(f"/sorna/{ns}/".encode())
    assert {kv.key.decode(): kv.value.decode() for kv in result} == {
        f"/sorna/{ns}/obj/with%2Fslash": "1",
        f"/sorna/{ns}/obj/n/a%20b": "2",
        f"/sorna/{ns}/sgroup/sg-a/k": "sg",
        f"/sorna/{ns}/nodes/agents/i-01/k": "node",
    }


async def test_reads_keys_written_in_upstream_layout(etcd_endpoint: str, raw: aetcd.Client) -> None:
    ns = f"upstream-{uuid.uuid4().hex[:6]}"
    base = f"/sorna/{ns}/config/redis"
    await raw.put(f"{base}/addr".encode(), b"127.0.0.1:6379")
    await raw.put(f"{base}/sentinel%2Fname".encode(), b"mymaster")
    await raw.put(f"/sorna/{ns}/sgroup/sg-a/config/redis/addr".encode(), b"10.0.0.1:6379")
    async with EtcdClient(etcd_endpoint, ns, SCOPES) as etcd:
        assert await etcd.get_prefix("config/redis") == {
            "addr": "10.0.0.1:6379",
            "sentinel/name": "mymaster",
        }
        assert await etcd.get("config/redis/addr", scope=ConfigScopes.GLOBAL) == "127.0.0.1:6379"


async def test_unreachable_raises_etcd_unavailable() -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with EtcdClient([dead], "nowhere", request_timeout=1.0, failover_timeout=0.3) as etcd:
        for call in (etcd.put("k", "v"), etcd.get_prefix("k"), etcd.grant_lease(5)):
            with pytest.raises(EtcdUnavailable) as info:
                await call
            assert not isinstance(info.value, aetcd.ClientError)
            assert isinstance(info.value.__cause__, aetcd.ClientError)
        with pytest.raises(EtcdError):
            async with etcd.watch_prefix("k"):
                pass


async def test_fails_over_to_a_live_endpoint(etcd_endpoint: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with EtcdClient([dead, etcd_endpoint], "failover", failover_timeout=5.0) as etcd:
        await etcd.put("k", "v")
        assert await etcd.get("k") == "v"
        stats = etcd.statistics()
    assert stats.failovers >= 1
    assert stats.endpoint == etcd_endpoint


async def test_watch_survives_server_restart(private_etcd: EtcdServer) -> None:
    endpoint = private_etcd.endpoint
    async with (
        EtcdClient(endpoint, "restart", failover_timeout=20.0) as etcd,
        etcd.watch_prefix("r/") as watch,
    ):
        lease = await etcd.grant_lease(10)
        first = await etcd.put("r/a", "1", lease=lease)
        assert (await next_events(watch, 1))[0].revision == first
        await asyncio.to_thread(private_etcd.kill)
        await asyncio.to_thread(private_etcd.start)
        # written after the restart, possibly before the watch is back: none may be missed
        revs = [await etcd.put(f"r/{k}", k) for k in "bcd"]
        events = await next_events(watch, 3, within=20.0)
        assert [(e.key, e.revision) for e in events] == list(
            zip(["r/b", "r/c", "r/d"], revs, strict=True)
        )
        assert etcd.statistics().watch_reconnects >= 1
        assert await etcd.get("r/a") == "1"  # the lease was kept alive across the restart
        await etcd.revoke_lease(lease)


@pytest.mark.slow
async def test_cluster_member_kill_keeps_serving(etcd_cluster: EtcdCluster) -> None:
    leader = await asyncio.to_thread(etcd_cluster.leader)
    others = [m for m in etcd_cluster.members if m is not leader]
    # The client starts on the leader, so killing it forces both a failover and an election.
    endpoints = [leader.endpoint, *(m.endpoint for m in others)]
    async with (
        EtcdClient(endpoints, "cluster", failover_timeout=20.0) as etcd,
        EtcdClient(others[0].endpoint, "cluster", failover_timeout=20.0) as writer,
        etcd.watch_prefix("c/") as watch,
    ):
        assert etcd.statistics().endpoint == leader.endpoint
        lease = await etcd.grant_lease(3)
        await etcd.put("c/leased", "x", lease=lease)
        r0 = await writer.put("c/0", "0")
        assert [e.revision for e in await next_events(watch, 2)][-1] == r0

        await asyncio.to_thread(etcd_cluster.kill, leader)
        # Written through the surviving members while the watch's stream is broken.
        revs = [await writer.put(f"c/{i}", str(i)) for i in range(1, 6)]
        events = await next_events(watch, 5, within=20.0)
        assert [e.revision for e in events] == revs
        assert [e.value for e in events] == [str(i) for i in range(1, 6)]

        # Reads and writes go on through the client that was on the dead leader.
        await etcd.put("c/after", "ok")
        assert await etcd.get("c/after") == "ok"
        assert etcd.statistics().endpoint != leader.endpoint
        assert etcd.statistics().failovers >= 1

        # The lease is kept alive through the survivors, past its TTL.
        async def lease_outlived_ttl() -> bool:
            return await etcd.get("c/leased") == "x" and etcd.statistics().watch_reconnects >= 1

        await until(lease_outlived_ttl, what="the watch to reconnect")
        await asyncio.sleep(lease.ttl + 1)  # let the TTL run out if keep-alives had stopped
        assert await etcd.get("c/leased") == "x"
        assert not lease.lost


async def test_a_cancellation_lost_inside_aetcd_is_raised(etcd_endpoint: str) -> None:
    # aetcd creates a watch under asyncio.wait_for, which on Python 3.11 can swallow a
    # cancellation that arrives as the watch is created; emulate that swallowing.
    async def swallowing(client: aetcd.Client) -> str:
        with contextlib.suppress(asyncio.CancelledError):  # the bug being emulated
            await asyncio.sleep(10)
        return "a watch"

    released: list[str] = []

    async def discard(result: str) -> None:
        released.append(result)

    async with EtcdClient(etcd_endpoint, "lost-cancel") as etcd:
        task = asyncio.create_task(etcd._call("watch('x')", swallowing, discard=discard))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.wait((task,), timeout=5)
        assert task.done()
        assert task.cancelled()
        assert released == ["a watch"]  # what the swallowed call produced was released
