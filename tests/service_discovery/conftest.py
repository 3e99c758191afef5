"""Fixtures of the service-discovery tests: one ``sd_env`` per backend.

``sd_env.open()`` opens a new instance on the shared backend (as another process would),
``sd_env.pass_time(s)`` lets TTL time pass (manual clocks step, real backends wait), and
``sd_env.lose(instance)`` makes the backend forget the instance's records behind its back (lease
revoked, keys deleted). Suite tests use only these and the interface.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from ai.backend.common.clients.etcd import (
    AsyncEtcd,
    ManualClock,
)
from ai.backend.common.service_discovery import (
    AbstractServiceDiscovery,
    CachedServiceDiscovery,
    EtcdServiceDiscovery,
    MemoryServiceDiscovery,
    MemoryServiceRegistry,
    RecordsRestoredObserver,
    RedisServiceDiscovery,
    ServiceEndpoint,
    ServiceMetadata,
    WallClock,
)
from tests._etcd import etcd_client_factory, manual_pass_time, real_pass_time
from tests._etcd import private_etcd as private_etcd
from tests._helpers import mark_slow_on_real_backends

TTL = 2
"""Record TTL of every backend in the suite (seconds; etcd's minimum lease is about 2 s)."""


def make_record(
    group: str = "manager", *, port: int = 8080, labels: dict[str, str] | None = None
) -> ServiceMetadata:
    """A record with a fresh id."""
    return ServiceMetadata(
        id=uuid.uuid4(),
        display_name=f"{group}-{port}",
        service_group=group,
        version="26.1.0",
        endpoint=ServiceEndpoint(
            address="10.0.0.1",
            port=port,
            protocol="http",
            prometheus_address=f"10.0.0.1:{port + 1}",
        ),
        labels=labels or {},
    )


class SDEnv:
    """Opens service-discovery instances of one shared backend; closes them all at the end."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.make: Callable[[RecordsRestoredObserver | None, WallClock], Awaitable[Any]]
        self.pass_time: Callable[[float], Awaitable[None]]
        self.lose: Callable[[AbstractServiceDiscovery], Awaitable[None]]
        self._opened: list[AbstractServiceDiscovery] = []
        self._cleanups: list[Callable[[], Awaitable[None]]] = []

    async def open(
        self,
        *,
        on_records_restored: RecordsRestoredObserver | None = None,
        wall_clock: WallClock = time.time,
    ) -> AbstractServiceDiscovery:
        """A new opened instance on the shared backend."""
        sd: AbstractServiceDiscovery = await self.make(on_records_restored, wall_clock)
        self._opened.append(sd)
        await sd.open()
        return sd

    def on_cleanup(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` when the environment closes (after the instances)."""
        self._cleanups.append(fn)

    async def aclose(self) -> None:
        """Close every instance, then the backend clients."""
        for sd in reversed(self._opened):
            await sd.aclose()
        for fn in reversed(self._cleanups):
            await fn()


def _memory_env() -> SDEnv:
    env = SDEnv("memory")
    clock = ManualClock()
    registry = MemoryServiceRegistry(clock=clock)

    async def make(observer: RecordsRestoredObserver | None, wall: WallClock) -> Any:
        return MemoryServiceDiscovery(
            registry, ttl=TTL, on_records_restored=observer, wall_clock=wall
        )

    async def lose(sd: AbstractServiceDiscovery) -> None:
        for record in registry.all():
            registry.delete(record.key)

    env.make, env.pass_time, env.lose = make, manual_pass_time(clock), lose
    return env


def _etcd_env(name: str, new_client: Callable[[], AsyncEtcd], pass_time: Any) -> SDEnv:
    env = SDEnv(name)
    cached = name.startswith("cached")

    async def make(observer: RecordsRestoredObserver | None, wall: WallClock) -> Any:
        etcd = new_client()
        await etcd.open()
        env.on_cleanup(etcd.aclose)
        inner = EtcdServiceDiscovery(etcd, ttl=TTL, on_records_restored=observer, wall_clock=wall)
        return CachedServiceDiscovery(inner) if cached else inner

    async def lose(sd: AbstractServiceDiscovery) -> None:
        inner = sd.inner if isinstance(sd, CachedServiceDiscovery) else sd
        assert isinstance(inner, EtcdServiceDiscovery)
        assert inner.lease is not None
        other = new_client()
        async with other:
            await other.revoke_lease(inner.lease.id)

    env.make, env.pass_time, env.lose = make, pass_time, lose
    return env


def _redis_env(url: str) -> SDEnv:
    env = SDEnv("redis")

    async def make(observer: RecordsRestoredObserver | None, wall: WallClock) -> Any:
        return RedisServiceDiscovery(url, ttl=TTL, on_records_restored=observer, wall_clock=wall)

    async def lose(sd: AbstractServiceDiscovery) -> None:
        client = aioredis.Redis.from_url(url)
        try:
            keys = [k async for k in client.scan_iter(match="service_discovery.*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    env.make, env.pass_time, env.lose = make, real_pass_time, lose
    return env


BACKENDS = [
    "memory",
    "etcd-memory",
    pytest.param("etcd", marks=pytest.mark.etcd),
    pytest.param("cached-etcd", marks=pytest.mark.etcd),
    pytest.param("redis", marks=pytest.mark.redis),
]


@pytest.fixture(params=BACKENDS)
async def sd_env(request: pytest.FixtureRequest) -> AsyncIterator[SDEnv]:
    """A shared service-discovery backend (see the module docstring)."""
    ns = f"sd-{uuid.uuid4().hex[:8]}"
    if request.param == "memory":
        env = _memory_env()
    elif request.param == "etcd-memory":
        clock = ManualClock()
        clients = etcd_client_factory(request, "etcd-memory", ns, clock=clock)
        env = _etcd_env("etcd-memory", clients, manual_pass_time(clock))
    elif request.param in ("etcd", "cached-etcd"):
        clients = etcd_client_factory(request, "etcd", ns)
        env = _etcd_env(request.param, clients, real_pass_time)
    else:
        env = _redis_env(request.getfixturevalue("redis_url"))
    try:
        yield env
    finally:
        await env.aclose()


@pytest.fixture
async def sd(sd_env: SDEnv) -> AbstractServiceDiscovery:
    """The first instance of ``sd_env``."""
    return await sd_env.open()


_SLOW_ON_REAL = frozenset(
    {
        "test_records_stay_while_owner_is_open",
        "test_crashed_owner_records_expire",
    }
)
_REAL = frozenset(
    {
        "etcd",
        "cached-etcd",
        "redis",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Real-TTL waits of the suite are slow on real backends (the in-memory runs are fast)."""
    mark_slow_on_real_backends(
        items,
        "tests/service_discovery/test_discovery_conformance.py",
        "sd_env",
        _SLOW_ON_REAL,
        _REAL,
    )
