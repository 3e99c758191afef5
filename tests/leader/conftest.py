"""Fixtures of the leader-election tests: one ``election_env`` per backend.

``election_env.open(server_id)`` opens a new candidate (with its own client, as another process
would), ``election_env.lose()`` deletes the lease key behind the leader's back, and
``election_env.current_leader()`` reads who holds the key.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ai.backend.common.clients.etcd import AsyncEtcd
from ai.backend.common.clients.valkey import ValkeyClient, ValkeyTarget
from ai.backend.common.leader import (
    AbstractLeaderElection,
    EtcdLeaderElection,
    RedisLeaderElection,
)
from tests._etcd import etcd_client_factory
from tests._helpers import mark_slow_on_real_backends


class ElectionEnv:
    """Candidates of one role on one shared backend."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.name = f"role-{uuid.uuid4().hex[:8]}"
        self.make: Callable[[str], Awaitable[AbstractLeaderElection]]
        self.lose: Callable[[], Awaitable[None]]
        self.current_leader: Callable[[], Awaitable[str | None]]
        self._opened: list[AbstractLeaderElection] = []
        self.cleanups: list[Callable[[], Awaitable[None]]] = []

    async def open(self, server_id: str) -> AbstractLeaderElection:
        """A new campaigning candidate."""
        election = await self.make(server_id)
        self._opened.append(election)
        await election.open()
        return election

    async def aclose(self) -> None:
        for election in reversed(self._opened):
            await election.aclose()
        for fn in reversed(self.cleanups):
            await fn()


def _etcd_env(new_client: Callable[[], AsyncEtcd], ttl: float) -> ElectionEnv:
    env = ElectionEnv(ttl)

    async def client() -> AsyncEtcd:
        etcd = new_client()
        await etcd.open()
        env.cleanups.append(etcd.aclose)
        return etcd

    async def make(server_id: str) -> AbstractLeaderElection:
        return EtcdLeaderElection(await client(), server_id, name=env.name, ttl=ttl)

    key = f"ai/backend/leader/{env.name}"

    async def lose() -> None:
        await (await client()).delete(key)

    async def current_leader() -> str | None:
        return await (await client()).get(key)

    env.make, env.lose, env.current_leader = make, lose, current_leader
    return env


def _redis_env(url: str, ttl: float) -> ElectionEnv:
    env = ElectionEnv(ttl)

    async def client() -> ValkeyClient:
        c = ValkeyClient(ValkeyTarget.from_url(url))
        await c.open()
        env.cleanups.append(c.aclose)
        return c

    async def make(server_id: str) -> AbstractLeaderElection:
        return RedisLeaderElection(await client(), server_id, name=env.name, ttl=ttl)

    key = f"leader:{env.name}"

    async def lose() -> None:
        await (await client()).execute("DEL", key)

    async def current_leader() -> str | None:
        value: Any = await (await client()).execute("GET", key)
        return None if value is None else value.decode()

    env.make, env.lose, env.current_leader = make, lose, current_leader
    return env


@pytest.fixture(
    params=[
        "etcd-memory",
        pytest.param("etcd", marks=pytest.mark.etcd),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
async def election_env(request: pytest.FixtureRequest) -> AsyncIterator[ElectionEnv]:
    """A shared election backend."""
    if request.param == "redis":
        env = _redis_env(request.getfixturevalue("redis_url"), ttl=1.0)
    else:  # etcd leases last at least about 2 s on a real server
        ttl = 2.0 if request.param == "etcd" else 1.0
        env = _etcd_env(etcd_client_factory(request, request.param, "leader"), ttl=ttl)
    try:
        yield env
    finally:
        await env.aclose()


_SLOW_ON_REAL = frozenset(
    {
        "test_exactly_one_leader_among_candidates",
        "test_crash_hands_over_within_one_lease",
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
        items, "tests/leader/test_election_conformance.py", "election_env", _SLOW_ON_REAL, _REAL
    )
