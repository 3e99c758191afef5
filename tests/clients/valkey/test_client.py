"""ValkeyClient against real servers: errors, timeouts, cancellation, reconnects, Sentinel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis.exceptions as rexc

from ai.backend.common.clients.valkey import (
    ValkeyAuthenticationError,
    ValkeyClient,
    ValkeyClosed,
    ValkeyConfigError,
    ValkeyConnectionError,
    ValkeyError,
    ValkeyNoGroup,
    ValkeyPoolExhausted,
    ValkeyResponseError,
    ValkeyTarget,
    ValkeyTimeout,
)
from ai.backend.common.clients.valkey.client import map_redis_error, pack_command
from tests._harness.plugin import RedisServerFactory
from tests._harness.redis import RedisServer
from tests._harness.sentinel import RedisSentinelSet

T = TypeVar("T")


async def eventually(call: Callable[[], Awaitable[T]], *, within: float = 20.0) -> T:
    """The first result of ``call`` that does not raise a ValkeyError (deadline ``within``)."""
    async with asyncio.timeout(within):
        while True:
            try:
                return await call()
            except ValkeyError:
                await asyncio.sleep(0.05)


async def test_errors_are_mapped(redis_url: str) -> None:
    async with ValkeyClient(ValkeyTarget.from_url(redis_url)) as client:
        await client.execute("SET", "text", "x")
        with pytest.raises(ValkeyResponseError) as wrong_type:
            await client.execute("LPUSH", "text", "y")
        assert isinstance(wrong_type.value.__cause__, rexc.ResponseError)
        assert "WRONGTYPE" in str(wrong_type.value)
        with pytest.raises(ValkeyNoGroup):
            await client.execute("XREADGROUP", "GROUP", "nope", "c", "STREAMS", "s", ">")
        results = await client.pipeline(
            [["SET", "a", "1"], ["LPUSH", "text", "y"]], raise_on_error=False
        )
        assert results[0] is True
        assert isinstance(results[1], ValkeyResponseError)
        assert client.statistics().failures == 2


async def test_connection_refused_is_mapped(redis_server_factory: RedisServerFactory) -> None:
    server = redis_server_factory()
    server.stop()
    client = ValkeyClient(ValkeyTarget.single(server.host, server.port, connect_timeout=1))
    with pytest.raises(ValkeyConnectionError) as caught:
        await client.open()
    assert isinstance(caught.value.__cause__, (rexc.ConnectionError, OSError))
    with pytest.raises(ValkeyClosed):
        await client.execute("PING")  # a failed open leaves nothing open
    await client.aclose()


async def test_wrong_password_is_an_authentication_error(redis_url: str) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    async with ValkeyClient(ValkeyTarget.from_url(redis_url)) as admin:
        await admin.execute("ACL", "SETUSER", user, "on", ">right", "~*", "+@all")
        try:
            bad = ValkeyClient(ValkeyTarget.from_url(redis_url, username=user, password="wrong"))
            with pytest.raises(ValkeyAuthenticationError):
                await bad.open()
            await bad.aclose()
            good = ValkeyTarget.from_url(redis_url, username=user, password="right")
            async with ValkeyClient(good) as client:
                assert await client.ping()
        finally:
            await admin.execute("ACL", "DELUSER", user)


async def test_request_timeout(redis_url: str) -> None:
    target = ValkeyTarget.from_url(redis_url, request_timeout=0.2)
    async with ValkeyClient(target) as client:
        # no socket timeout: deadlines are ours, without wait_for around each command
        pool_options = client.raw.connection_pool.connection_kwargs  # type: ignore[union-attr]
        assert pool_options["socket_timeout"] is None
        with pytest.raises(ValkeyTimeout) as caught:
            await client.execute("BLPOP", "never", 5)
        assert isinstance(caught.value, TimeoutError)
        assert await client.ping()  # the pool is still usable
        # a longer limit for one call (blocking reads pass their block time on top)
        assert await client.execute("BLPOP", "never", 1, time_limit=3.0) is None
        stats = client.statistics()
        assert (stats.timeouts, stats.failures) == (1, 1)


async def test_cancel_during_a_command_is_not_lost(redis_url: str) -> None:
    async with ValkeyClient(ValkeyTarget.from_url(redis_url, request_timeout=None)) as client:
        started = asyncio.Event()

        async def block() -> Any:
            started.set()
            return await client.execute("BLPOP", "never", 0)

        task = asyncio.create_task(block())
        await started.wait()
        await asyncio.sleep(0.05)  # let BLPOP reach the server
        task.cancel()
        async with asyncio.timeout(5):
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await client.ping()


async def test_hook_sees_every_call(redis_url: str) -> None:
    seen: list[tuple[str, str]] = []

    async def hook(operation: str, call: Callable[[], Awaitable[T]], /) -> T:
        try:
            result = await call()
        except ValkeyError as exc:
            seen.append((operation, type(exc).__name__))
            raise
        seen.append((operation, "ok"))
        return result

    async with ValkeyClient(ValkeyTarget.from_url(redis_url), hook=hook) as client:
        await client.execute("SET", "k", "v")
        await client.pipeline([["GET", "k"], ["DEL", "k"]], operation="cleanup")
        with pytest.raises(ValkeyResponseError):
            await client.execute("NOSUCHCOMMAND")
    assert seen == [
        ("ping", "ok"),
        ("set", "ok"),
        ("cleanup", "ok"),
        ("nosuchcommand", "ValkeyResponseError"),
    ]


async def test_reconnects_after_server_restart(redis_server_factory: RedisServerFactory) -> None:
    server = redis_server_factory()
    target = ValkeyTarget.single(server.host, server.port, connect_timeout=1)
    async with ValkeyClient(target) as client:
        await client.execute("SET", "k", "before")
        created = client.statistics().connections_created
        await asyncio.to_thread(server.stop)
        with pytest.raises(ValkeyConnectionError):
            await client.execute("GET", "k")
        await asyncio.to_thread(server.start)
        await eventually(lambda: client.execute("SET", "k", "after"))
        assert await client.execute("GET", "k") == b"after"
        assert client.statistics().connections_created > created


async def test_subscription_survives_restart(redis_server_factory: RedisServerFactory) -> None:
    server: RedisServer = redis_server_factory()
    target = ValkeyTarget.single(server.host, server.port, connect_timeout=1)
    async with ValkeyClient(target) as client, client.subscription("chan") as sub:
        await client.execute("PUBLISH", "chan", "one")
        assert await sub.get(5) == ("chan", b"one")
        await asyncio.to_thread(server.stop)
        with pytest.raises(ValkeyConnectionError):
            await sub.get(1)
        await asyncio.to_thread(server.start)

        async def publish_until_received() -> tuple[str, bytes] | None:
            await client.execute("PUBLISH", "chan", "two")
            return await sub.get(0.2)

        got = None
        async with asyncio.timeout(20):
            while got is None:
                try:
                    got = await publish_until_received()
                except ValkeyError:
                    await asyncio.sleep(0.05)
        assert got == ("chan", b"two")


@pytest.mark.slow
async def test_blocking_read_beyond_five_seconds(redis_url: str) -> None:
    """redis-py's default 5 s socket timeout would cut this read; ours returns empty."""
    async with ValkeyClient(ValkeyTarget.from_url(redis_url, request_timeout=1.0)) as client:
        await client.execute("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
        reply = await client.execute(
            "XREADGROUP", "GROUP", "g", "c", "BLOCK", 5500, "STREAMS", "s", ">", time_limit=7.0
        )
        assert reply is None


async def test_role_check_refuses_a_replica(redis_sentinel: RedisSentinelSet) -> None:
    await asyncio.to_thread(redis_sentinel.wait_quorum)
    target = ValkeyTarget.sentinel(
        redis_sentinel.sentinels, redis_sentinel.service_name, connect_timeout=1, retries=0
    )
    async with ValkeyClient(target) as client:
        assert await client.role() == "master"
    # Demote the master behind the sentinels' back: they still name it for a while, and it
    # still answers PING, but its ROLE is now "slave".
    master, replica = redis_sentinel.master, redis_sentinel.replica
    await asyncio.to_thread(master.command, "REPLICAOF", replica.host, replica.port)
    assert await asyncio.to_thread(master.ping)
    client = ValkeyClient(target)
    with pytest.raises(ValkeyConnectionError, match="not master"):
        await client.open()
    await client.aclose()


@pytest.mark.slow
async def test_sentinel_follows_failover(redis_sentinel: RedisSentinelSet) -> None:
    target = ValkeyTarget.sentinel(
        redis_sentinel.sentinels, redis_sentinel.service_name, connect_timeout=1
    )
    async with ValkeyClient(target) as client:
        await client.execute("SET", "k", "before")
        old_master = redis_sentinel.master.address
        new_master = await asyncio.to_thread(redis_sentinel.failover)
        assert new_master.address != old_master
        # Writes may still reach the old master until it is reconfigured or the client's
        # watcher sees the move (the window WAIT closes); then they land on the new one.
        async with asyncio.timeout(20):
            for attempt in range(10_000):
                try:
                    await client.execute("SET", "k", f"after-{attempt}")
                except ValkeyError:
                    await asyncio.sleep(0.05)
                    continue
                seen = await asyncio.to_thread(new_master.command, "GET", "k")
                if seen == f"after-{attempt}":
                    break
                await asyncio.sleep(0.05)
        assert await client.role() == "master"
        assert client.statistics().master_changes >= 1


def test_pack_command_matches_the_protocol() -> None:
    from redis.asyncio.connection import Connection

    args: list[bytes | str | int | float] = ["SET", "ключ", b"\xff\x00", 12, 2.5]
    assert pack_command(args) == b"".join(Connection().pack_command(*args))
    with pytest.raises(ValkeyConfigError, match="None"):
        pack_command(["SET", "k", None])  # type: ignore[list-item]


async def test_execute_many_one_round_trip(redis_url: str) -> None:
    async with ValkeyClient(ValkeyTarget.from_url(redis_url)) as client:
        replies = await client.execute_many(
            [["SET", "a", "1"], pack_command(["INCR", "a"]), ["GET", "a"]]
        )
        assert replies == [b"OK", 2, b"2"]
        with pytest.raises(ValkeyResponseError, match="WRONGTYPE"):
            await client.execute_many([["LPUSH", "a", "x"], ["GET", "a"]])
        assert await client.execute_many([["GET", "a"]]) == [b"2"]  # the pool is still fine


def test_every_native_error_has_a_mapping() -> None:
    where = "127.0.0.1:6379/0"
    cases: list[tuple[BaseException, type[ValkeyError]]] = [
        (rexc.ConnectionError("x"), ValkeyConnectionError),
        (rexc.TimeoutError("x"), ValkeyTimeout),
        (rexc.AuthenticationError("x"), ValkeyAuthenticationError),
        (rexc.ReadOnlyError("x"), ValkeyConnectionError),
        (rexc.ResponseError("NOGROUP no such group"), ValkeyNoGroup),
        (rexc.ResponseError("LOADING dataset"), ValkeyConnectionError),
        (rexc.ResponseError("WRONGTYPE"), ValkeyResponseError),
        (rexc.ClusterDownError("x"), ValkeyConnectionError),
        (rexc.SlotNotCoveredError("x"), ValkeyConnectionError),
        (rexc.RedisClusterException("no node for command"), ValkeyConfigError),
        (rexc.DataError("x"), ValkeyConfigError),
        (ConnectionResetError("x"), ValkeyConnectionError),
    ]
    for native, expected in cases:
        mapped = map_redis_error(native, where)
        assert type(mapped) is expected or isinstance(mapped, expected), (native, mapped)
        assert where in str(mapped)


def _pool_target(kind: str, request: pytest.FixtureRequest, **options: Any) -> ValkeyTarget:
    if kind == "sentinel":
        sentinel_set: RedisSentinelSet = request.getfixturevalue("redis_sentinel")
        sentinel_set.wait_quorum()
        return ValkeyTarget.sentinel(
            sentinel_set.sentinels, sentinel_set.service_name, connect_timeout=1, **options
        )
    return ValkeyTarget.from_url(request.getfixturevalue("redis_url"), **options)


@pytest.mark.parametrize("kind", ["single", pytest.param("sentinel", marks=pytest.mark.sentinel)])
async def test_pool_waits_for_a_free_connection(kind: str, request: pytest.FixtureRequest) -> None:
    """200 concurrent calls on 4 connections: the 5th and later wait instead of failing."""
    target = _pool_target(kind, request, max_connections=4)
    async with ValkeyClient(target) as client:

        async def one(i: int) -> Any:
            if i % 3 == 0:
                return await client.execute("INCR", "n")
            if i % 3 == 1:
                return (await client.pipeline([["INCR", "n"], ["GET", "n"]]))[0]
            return (await client.execute_many([["INCR", "n"]]))[0]

        results = await asyncio.gather(*(one(i) for i in range(200)))
        assert sorted(results) == list(range(1, 201))
        stats = client.statistics()
        assert stats.max_connections == 4
        assert stats.connections_created <= 4
        assert stats.pool_waits > 0
        assert (stats.failures, stats.waiting, stats.connections_in_use) == (0, 0, 0)


async def test_pool_wait_timeout_names_the_pool(redis_url: str) -> None:
    target = ValkeyTarget.from_url(redis_url, max_connections=1, request_timeout=None)
    async with (
        ValkeyClient(target) as client,
        ValkeyClient(ValkeyTarget.from_url(redis_url)) as other,
    ):
        started = asyncio.Event()

        async def hold() -> Any:
            started.set()
            return await client.execute("BLPOP", "wake", 0)

        holder = asyncio.create_task(hold())
        await started.wait()
        async with asyncio.timeout(10):
            while client.statistics().connections_in_use < 1:  # noqa: ASYNC110 (a poll with a deadline)
                await asyncio.sleep(0.01)
        with pytest.raises(ValkeyPoolExhausted) as caught:
            await client.execute("PING", time_limit=0.05)
        assert isinstance(caught.value, ValkeyTimeout)
        assert isinstance(caught.value, TimeoutError)
        assert "max_connections=1" in str(caught.value)
        assert "ping" in str(caught.value)
        assert client.statistics().waiting == 0
        await other.execute("LPUSH", "wake", "x")
        async with asyncio.timeout(10):
            assert list(await holder) == [b"wake", b"x"]
        assert await client.ping()  # the slot came back


def test_max_connections_must_be_positive() -> None:
    with pytest.raises(ValkeyConfigError, match="max_connections"):
        ValkeyTarget.single(max_connections=0)
