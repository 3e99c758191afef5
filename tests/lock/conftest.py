"""Fixtures of the lock tests: ``lock_env.make(name, ...)`` makes a new holder on one shared
backend (file, etcd in memory, real etcd, real Redis)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ai.backend.common.clients.valkey import ValkeyClient, ValkeyTarget
from ai.backend.common.lock import AbstractDistributedLock, EtcdLock, FileLock, RedisLock
from tests._etcd import etcd_client_factory
from tests._helpers import mark_slow_on_real_backends


class LockEnv:
    """Makes lock objects (holders) of one shared backend."""

    def __init__(self, make: Callable[..., AbstractDistributedLock], short: float) -> None:
        self._make = make
        self.short_lifetime = short
        """A lifetime the backend honours exactly (etcd leases last at least about 2 s)."""
        self.prefix = uuid.uuid4().hex[:8]
        self._cleanups: list[Callable[[], Awaitable[None]]] = []
        self._locks: list[AbstractDistributedLock] = []

    def make(
        self, name: str = "job", *, lifetime: float = 30.0, timeout: float | None = 5.0
    ) -> AbstractDistributedLock:
        """A new holder of the lock ``name``."""
        lock = self._make(f"{self.prefix}-{name}", lifetime=lifetime, timeout=timeout)
        self._locks.append(lock)
        return lock

    async def aclose(self) -> None:
        for lock in self._locks:
            await lock.release()
        for fn in reversed(self._cleanups):
            await fn()


BACKENDS = [
    "file",
    "etcd-memory",
    pytest.param("etcd", marks=pytest.mark.etcd),
    pytest.param("redis", marks=pytest.mark.redis),
]


@pytest.fixture(params=BACKENDS)
async def lock_env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LockEnv]:
    """One shared lock backend."""
    cleanups: list[Callable[[], Awaitable[None]]] = []
    if request.param == "file":

        def make(name: str, **kw: Any) -> AbstractDistributedLock:
            return FileLock(tmp_path / f"{name}.lock", **kw)

    elif request.param in ("etcd-memory", "etcd"):
        etcd = etcd_client_factory(request, request.param, "locks")()
        await etcd.open()
        cleanups.append(etcd.aclose)

        def make(name: str, **kw: Any) -> AbstractDistributedLock:
            return EtcdLock(etcd, name, **kw)

    else:
        client = ValkeyClient(ValkeyTarget.from_url(request.getfixturevalue("redis_url")))
        await client.open()
        cleanups.append(client.aclose)

        def make(name: str, **kw: Any) -> AbstractDistributedLock:
            return RedisLock(client, name, **kw)

    short = {"file": 0.5, "redis": 0.5, "etcd-memory": 1.0, "etcd": 2.0}[request.param]
    env = LockEnv(make, short)
    env._cleanups = cleanups
    try:
        yield env
    finally:
        await env.aclose()


_SLOW_ON_REAL = frozenset(
    {
        "test_expired_holder_cannot_free_next",
        "test_lifetime_frees_the_lock",
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
        items, "tests/lock/test_lock_conformance.py", "lock_env", _SLOW_ON_REAL, _REAL
    )
