"""Fixtures of the etcd client tests: one ``etcd_env`` per backend, and its first client ``etcd``.

``etcd_env`` plays the shared server: every client it opens talks to the same store, as several
processes talk to one etcd. ``etcd_env.pass_time(seconds)`` lets lease time pass (the memory
backend steps its manual clock, the real one waits), ``etcd_env.compact(revision)`` compacts
history. Suite tests use only these and the interface, never the backend's name.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import aetcd
import pytest

from ai.backend.common.clients.etcd import (
    AsyncEtcd,
    ConfigScopes,
    EtcdClient,
    EtcdWatch,
    ManualClock,
    MemoryEtcd,
    MemoryEtcdServer,
    WatchEvent,
    make_scope_prefix_map,
)
from tests._etcd import manual_pass_time, real_pass_time
from tests._etcd import private_etcd as private_etcd
from tests._helpers import mark_slow_on_real_backends

SCOPES = make_scope_prefix_map(scaling_group="sg-a", node_kind="agents", node_id="i-01")
"""Scope prefixes of the clients the suite opens (global, scaling group, node)."""


class EtcdEnv:
    """Opens clients of one shared backend and closes them all at the end."""

    def __init__(
        self,
        make: Callable[[str, Mapping[ConfigScopes, str]], AsyncEtcd],
        pass_time: Callable[[float], Awaitable[None]],
        compact: Callable[[int], Awaitable[None]],
    ) -> None:
        self.namespace = f"test-{uuid.uuid4().hex[:8]}"
        self._make = make
        self._pass_time = pass_time
        self._compact = compact
        self._clients: list[AsyncEtcd] = []

    async def open(
        self, namespace: str | None = None, scopes: Mapping[ConfigScopes, str] = SCOPES
    ) -> AsyncEtcd:
        """A new opened client of the shared store (same namespace unless given)."""
        client = self._make(namespace or self.namespace, scopes)
        self._clients.append(client)
        await client.open()
        return client

    async def pass_time(self, seconds: float) -> None:
        """Let ``seconds`` of lease time pass, in small steps so keep-alives get their turn."""
        await self._pass_time(seconds)

    async def compact(self, revision: int) -> None:
        """Compact the store's history below ``revision``."""
        await self._compact(revision)

    async def aclose(self) -> None:
        """Close every client opened here."""
        for client in reversed(self._clients):
            await client.aclose()


def _memory_env() -> EtcdEnv:
    clock = ManualClock()
    server = MemoryEtcdServer(clock=clock)

    async def compact(revision: int) -> None:
        server.compact(revision)

    return EtcdEnv(
        lambda ns, scopes: MemoryEtcd(ns, scopes, server=server),
        manual_pass_time(clock, turns=5),
        compact,
    )


def _real_env(endpoint: str) -> EtcdEnv:
    async def compact(revision: int) -> None:
        host, _, port = endpoint.rpartition(":")
        async with aetcd.Client(host=host, port=int(port)) as raw:
            await raw.compact(revision, physical=True)

    def make(ns: str, scopes: Mapping[ConfigScopes, str]) -> AsyncEtcd:
        return EtcdClient([endpoint], ns, scopes, request_timeout=5.0, failover_timeout=5.0)

    return EtcdEnv(make, real_pass_time, compact)


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
async def etcd_env(request: pytest.FixtureRequest) -> AsyncIterator[EtcdEnv]:
    """A shared store: in-memory, or the session's real etcd (emptied first)."""
    if request.param == "memory":
        env = _memory_env()
    else:
        env = _real_env(request.getfixturevalue("etcd_endpoint"))
    try:
        yield env
    finally:
        await env.aclose()


@pytest.fixture
async def etcd(etcd_env: EtcdEnv) -> AsyncEtcd:
    """The first opened client of ``etcd_env``."""
    return await etcd_env.open()


async def next_events(watch: EtcdWatch, n: int, within: float = 10.0) -> list[WatchEvent]:
    """The next ``n`` events of a watch, within ``within`` seconds."""
    events: list[WatchEvent] = []
    async with asyncio.timeout(within):
        while len(events) < n:
            events.append(await watch.__anext__())
    return events


_SLOW_ON_REAL = frozenset(
    {
        "test_keepalive_keeps_lease_past_ttl",
        "test_lease_expiry_deletes_keys_and_notifies_watch",
    }
)
_REAL = frozenset(
    {
        "etcd",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Real-TTL waits of the suite are slow on real backends (the in-memory runs are fast)."""
    mark_slow_on_real_backends(
        items, "tests/clients/etcd/test_etcd_conformance.py", "etcd_env", _SLOW_ON_REAL, _REAL
    )
