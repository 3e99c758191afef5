"""LeaderCron / run_on_leader: periodic tasks on the leader only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ai.backend.common.clients.etcd import MemoryEtcd, MemoryEtcdServer
from ai.backend.common.leader import EtcdLeaderElection, LeaderCron, run_on_leader
from tests._helpers import until


async def test_runs_only_on_the_leader() -> None:
    server = MemoryEtcdServer()
    runs = {"a": 0, "b": 0}

    def counter(name: str) -> Callable[[], Awaitable[None]]:
        async def tick() -> None:
            runs[name] += 1

        return tick

    async with (
        MemoryEtcd("cron", server=server) as etcd_a,
        MemoryEtcd("cron", server=server) as etcd_b,
    ):
        a = EtcdLeaderElection(etcd_a, "a", name="sweeper", ttl=1.0)
        b = EtcdLeaderElection(etcd_b, "b", name="sweeper", ttl=1.0)
        await a.open()
        await until(lambda: a.is_leader)
        await b.open()
        async with run_on_leader(a, 0.01, counter("a")), run_on_leader(b, 0.01, counter("b")):
            await until(lambda: runs["a"] >= 5)
            assert runs["b"] == 0  # b is not leader: its task never ran
            await a.abort()  # the leader dies; b takes over within a lease
            frozen = runs["a"]
            await until(lambda: runs["b"] >= 5)
            assert runs["a"] == frozen
        await b.aclose()


async def test_errors_are_reported_and_the_schedule_goes_on() -> None:
    errors: list[tuple[str, Exception]] = []
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise RuntimeError(f"call {calls} failed")

    async with (
        MemoryEtcd("cron") as etcd,
        EtcdLeaderElection(etcd, "solo", ttl=1.0) as election,
    ):
        cron = LeaderCron(election, on_error=lambda name, exc: errors.append((name, exc)))
        cron.add("flaky", 0.01, flaky)
        async with cron:
            await until(lambda: calls >= 6)
        stats = cron.statistics()
    assert stats.failures["flaky"] >= 3
    assert stats.runs["flaky"] >= 2
    assert errors[0][0] == "flaky"
    assert isinstance(errors[0][1], RuntimeError)
