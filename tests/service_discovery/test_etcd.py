"""EtcdServiceDiscovery only: restoring records after the lease is lost during an outage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from ai.backend.common.clients.etcd import EtcdClient, ManualClock, MemoryEtcd, MemoryEtcdServer
from ai.backend.common.service_discovery import (
    EtcdServiceDiscovery,
    RecordsRestored,
    ServiceDiscoveryUnavailable,
    ServiceMetadata,
)
from tests._harness.etcd import EtcdServer
from tests._helpers import until

from .conftest import make_record

TTL = 3


@dataclass
class Setup:
    """One instance on a MemoryEtcd whose lease time is a manual clock."""

    clock: ManualClock
    etcd: MemoryEtcd
    sd: EtcdServiceDiscovery
    restored: list[RecordsRestored]

    async def pass_time(self, seconds: float, step: float = 0.05) -> None:
        """Advance lease time in small steps, letting keep-alives and the supervisor run."""
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            for _ in range(5):
                await asyncio.sleep(0)

    async def stored(self) -> set[str]:
        """Display names of the records in etcd (read by another client)."""
        async with MemoryEtcd(self.etcd.namespace, server=self.etcd.server) as other:
            tree = await other.get_prefix(self.sd.prefix)
        return {
            str(record["display_name"])
            for group in tree.values()
            if isinstance(group, dict)
            for record in group.values()
            if isinstance(record, dict)
        }


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    clock = ManualClock()
    restored: list[RecordsRestored] = []
    async with (
        MemoryEtcd("sd", server=MemoryEtcdServer(clock=clock)) as etcd,
        EtcdServiceDiscovery(
            etcd, ttl=TTL, on_records_restored=restored.append, restore_retry_interval=0.02
        ) as sd,
    ):
        yield Setup(clock, etcd, sd, restored)


def _named(name: str, group: str = "agent") -> ServiceMetadata:
    return make_record(group).model_copy(update={"display_name": name})


async def test_every_owned_record_comes_back_after_an_outage(setup: Setup) -> None:
    sd, etcd = setup.sd, setup.etcd
    a, b, c = _named("a"), _named("b"), _named("c", "manager")
    await sd.register(a)
    await sd.register(b)
    assert sd.lease is not None
    first_lease = sd.lease
    # A heartbeat is in flight (its reply is slow) and a registration waits behind it ...
    etcd.delay_replies(0.3)
    beat = asyncio.create_task(sd.heartbeat(a))
    await asyncio.sleep(0.05)
    etcd.delay_replies(0)
    late = asyncio.create_task(sd.register(c))
    await asyncio.sleep(0)
    # ... when etcd becomes unreachable for longer than the TTL: the lease expires.
    etcd.simulate_outage()
    await setup.pass_time(TTL + 0.5)
    assert first_lease.lost
    await beat  # it was applied before the outage
    with pytest.raises(ServiceDiscoveryUnavailable):
        await late  # it ran during the outage and saw the lease lost first
    assert await setup.stored() == set()  # etcd dropped the lost lease's records
    etcd.end_outage()

    async def restored() -> bool:
        return await setup.stored() == {"a", "b"} and bool(setup.restored)

    await until(restored, within=10, what="every owned record to come back")
    assert set(setup.restored[-1].services) == {a.key, b.key}
    assert "was lost" in setup.restored[-1].reason
    assert sd.statistics().owned == 2
    assert sd.lease is not None
    assert not sd.lease.lost
    await setup.pass_time(TTL + 1)  # and the new lease is kept alive
    assert await setup.stored() == {"a", "b"}


async def test_a_failed_write_is_written_again(setup: Setup) -> None:
    sd, etcd = setup.sd, setup.etcd
    a = _named("a")
    await sd.register(a)
    etcd.simulate_outage()
    with pytest.raises(ServiceDiscoveryUnavailable):
        await sd.heartbeat(a)  # its outcome is unknown to the instance
    etcd.end_outage()
    await until(lambda: bool(setup.restored), within=10, what="the record to be written again")
    assert setup.restored[-1].services == (a.key,)
    assert await setup.stored() == {"a"}


async def test_calls_fail_fast_while_records_are_restored(setup: Setup) -> None:
    sd, etcd = setup.sd, setup.etcd
    a = _named("a")
    await sd.register(a)
    assert sd.lease is not None
    lease = sd.lease
    etcd.simulate_outage()
    await setup.pass_time(TTL + 0.5)
    assert lease.lost  # the supervisor is now trying to restore, and etcd is still down
    await asyncio.sleep(0.1)
    async with asyncio.timeout(5):  # they used to wait for the restoration, i.e. for ever
        with pytest.raises(ServiceDiscoveryUnavailable):
            await sd.register(_named("b"))
        with pytest.raises(ServiceDiscoveryUnavailable):
            await sd.heartbeat(a)
        with pytest.raises(ServiceDiscoveryUnavailable):
            await sd.deregister("agent", a.id)
    etcd.end_outage()
    await until(lambda: bool(setup.restored), within=10, what="the restoration")
    assert await setup.stored() == {"a"}


@pytest.mark.slow
async def test_calls_fail_fast_after_the_etcd_server_died(private_etcd: EtcdServer) -> None:
    failover = 1.0
    async with (
        EtcdClient(
            private_etcd.endpoint, "hang", request_timeout=1.0, failover_timeout=failover
        ) as etcd,
        EtcdServiceDiscovery(etcd, ttl=2, restore_retry_interval=0.5) as sd,
    ):
        await sd.register(_named("a"))
        assert sd.lease is not None
        lease = sd.lease
        await asyncio.to_thread(private_etcd.kill)
        async with asyncio.timeout(10):
            await lease.wait_lost()
        # One restore attempt may be holding the lock, then the call makes its own attempt.
        async with asyncio.timeout(2 * failover + 2):
            with pytest.raises(ServiceDiscoveryUnavailable):
                await sd.register(_named("b"))
            with pytest.raises(ServiceDiscoveryUnavailable):
                await sd.deregister("agent", _named("c").id)
        await sd.abort()
