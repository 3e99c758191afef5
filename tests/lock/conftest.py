"""Fixtures of the lock tests: ``lock_env.make(name, ...)`` makes a new holder on one shared
backend (file, etcd in memory, real etcd, real Redis).

``lock_env.slow_replies(seconds)`` makes the backend answer late (the request takes effect at
once, its reply arrives ``seconds`` later), and ``lock_env.footprint()`` counts what locks leave
behind (lock keys in etcd or Redis, open file descriptors for files), so suite tests can check
that a failed acquire leaves nothing, using only these and the interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ai.backend.common.clients.etcd import (
    AsyncEtcd,
    ConfigScopes,
    EtcdClient,
    MemoryEtcd,
    MemoryEtcdServer,
)
from ai.backend.common.clients.valkey import ValkeyClient, ValkeyTarget
from ai.backend.common.lock import (
    DEFAULT_ETCD_LOCK_PREFIX,
    DEFAULT_REDIS_LOCK_PREFIX,
    AbstractDistributedLock,
    EtcdLock,
    FileLock,
    RedisLock,
)
from tests._helpers import mark_slow_on_real_backends


class DelayProxy:
    """A loopback TCP proxy whose server-to-client bytes are held back ``delay`` seconds.

    Requests reach the server at once; replies come late, as from a loaded server or across a
    failover. Its connection tasks run in one TaskGroup, ended by :meth:`aclose`.
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.delay = 0.0
        self._server: asyncio.Server | None = None
        self._runner: asyncio.Task[None] | None = None
        self._conns: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:<port>`` of the proxy."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def start(self) -> None:
        """Listen on a free loopback port."""

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._conns.put((reader, writer))

        self._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self._runner = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            while True:
                reader, writer = await self._conns.get()
                tg.create_task(self._serve(reader, writer))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pipe(reader, up_writer, delayed=False))
                tg.create_task(self._pipe(up_reader, writer, delayed=True))
        except* (ConnectionError, OSError):
            pass  # one side closed: this connection is over, the proxy serves on
        finally:
            for w in (writer, up_writer):
                w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delayed: bool
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if delayed and self.delay > 0:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        # The peer closed its side: end the whole connection.
        raise ConnectionResetError("proxied connection closed")

    async def aclose(self) -> None:
        """Stop listening and cut every connection."""
        if self._server is not None:
            self._server.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.wait((runner,))


class _LateFileLock(FileLock):
    """A FileLock whose win is reported ``env.delay`` seconds late (a slow file system)."""

    def __init__(self, path: Path, env: LockEnv, **kw: Any) -> None:
        super().__init__(path, **kw)
        self._env = env

    async def _acquire(self) -> float:
        won_at = await super()._acquire()
        if self._env.reply_delay > 0:
            await asyncio.sleep(self._env.reply_delay)
        return won_at


class LockEnv:
    """Makes lock objects (holders) of one shared backend."""

    def __init__(self, short: float) -> None:
        self.make_lock: Callable[..., AbstractDistributedLock]
        self.set_delay: Callable[[float], None] = lambda seconds: None
        self.count_leftovers: Callable[[], Awaitable[int]]
        self.short_lifetime = short
        """A lifetime the backend honours exactly (etcd leases last at least about 2 s)."""
        self.prefix = uuid.uuid4().hex[:8]
        self.reply_delay = 0.0
        self.cleanups: list[Callable[[], Awaitable[None]]] = []
        self._locks: list[AbstractDistributedLock] = []

    def make(
        self, name: str = "job", *, lifetime: float = 30.0, timeout: float | None = 5.0
    ) -> AbstractDistributedLock:
        """A new holder of the lock ``name``."""
        lock = self.make_lock(f"{self.prefix}-{name}", lifetime=lifetime, timeout=timeout)
        self._locks.append(lock)
        return lock

    @contextlib.asynccontextmanager
    async def slow_replies(self, seconds: float) -> AsyncIterator[None]:
        """Within the block, the backend applies requests at once but answers ``seconds`` late."""
        self.reply_delay = seconds
        self.set_delay(seconds)
        try:
            yield
        finally:
            self.reply_delay = 0.0
            self.set_delay(0.0)

    async def footprint(self) -> int:
        """What locks of this env hold now: lock keys, or open file descriptors."""
        return await self.count_leftovers()

    async def aclose(self) -> None:
        for lock in self._locks:
            await lock.release()
        for fn in reversed(self.cleanups):
            await fn()


BACKENDS = [
    "file",
    "etcd-memory",
    pytest.param("etcd", marks=pytest.mark.etcd),
    pytest.param("redis", marks=pytest.mark.redis),
]


async def _file_env(env: LockEnv, tmp_path: Path) -> None:
    def make(name: str, **kw: Any) -> AbstractDistributedLock:
        return _LateFileLock(tmp_path / f"{name}.lock", env, **kw)

    async def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    env.make_lock, env.count_leftovers = make, open_fds


async def _etcd_env(env: LockEnv, request: pytest.FixtureRequest, real: bool) -> None:
    etcd: AsyncEtcd
    if real:
        host, _, port = str(request.getfixturevalue("etcd_endpoint")).rpartition(":")
        proxy = DelayProxy(host, int(port))
        await proxy.start()
        env.cleanups.append(proxy.aclose)
        etcd = EtcdClient(proxy.endpoint, "locks")
        observer: AsyncEtcd = EtcdClient(f"{host}:{port}", "locks")

        def set_delay(seconds: float) -> None:
            proxy.delay = seconds

    else:
        server = MemoryEtcdServer()
        memory = MemoryEtcd("locks", server=server)
        etcd, observer = memory, MemoryEtcd("locks", server=server)
        set_delay = memory.delay_replies
    for client in (etcd, observer):
        await client.open()
        env.cleanups.append(client.aclose)

    def make(name: str, **kw: Any) -> AbstractDistributedLock:
        return EtcdLock(etcd, name, **kw)

    async def lock_keys() -> int:
        snap = await observer.get_prefix_flat(
            DEFAULT_ETCD_LOCK_PREFIX + env.prefix, scope=ConfigScopes.GLOBAL
        )
        return len(snap.items)

    env.make_lock, env.set_delay, env.count_leftovers = make, set_delay, lock_keys


async def _redis_env(env: LockEnv, request: pytest.FixtureRequest) -> None:
    target = ValkeyTarget.from_url(request.getfixturevalue("redis_url"))
    proxy = DelayProxy(target.host, target.port)
    await proxy.start()
    env.cleanups.append(proxy.aclose)
    host, _, port = proxy.endpoint.rpartition(":")
    client = ValkeyClient(ValkeyTarget.from_url(f"redis://{host}:{port}"))
    observer = ValkeyClient(target)
    for c in (client, observer):
        await c.open()
        env.cleanups.append(c.aclose)

    def make(name: str, **kw: Any) -> AbstractDistributedLock:
        return RedisLock(client, name, **kw)

    def set_delay(seconds: float) -> None:
        proxy.delay = seconds

    async def lock_keys() -> int:
        keys = await observer.execute("KEYS", f"{DEFAULT_REDIS_LOCK_PREFIX}{env.prefix}*")
        return len(keys)

    env.make_lock, env.set_delay, env.count_leftovers = make, set_delay, lock_keys


@pytest.fixture(params=BACKENDS)
async def lock_env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LockEnv]:
    """One shared lock backend."""
    short = {"file": 0.5, "redis": 0.5, "etcd-memory": 1.0, "etcd": 2.0}[request.param]
    env = LockEnv(short)
    try:
        if request.param == "file":
            await _file_env(env, tmp_path)
        elif request.param in ("etcd-memory", "etcd"):
            await _etcd_env(env, request, real=request.param == "etcd")
        else:
            await _redis_env(env, request)
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
