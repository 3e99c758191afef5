"""ValkeyClient: one connection pool to a single server, a Sentinel-managed master or a Cluster.

Every call goes through the client's :class:`~.hooks.CallHook`, under ``asyncio.timeout``
(the target's ``request_timeout``; redis-py's own socket timeout is off, because it wraps every
command in ``asyncio.wait_for``: about 20 % slower, and on Python 3.11 a ``task.cancel()``
during a command can be lost), with redis errors mapped to :mod:`.exceptions`.

Guarantees:
- no ``redis.*`` error leaves a public call; each maps to a ``ValkeyError`` chained ``from``
  the original [tests/clients/valkey/test_client.py::test_errors_are_mapped];
- a request that outlives ``request_timeout`` raises ``ValkeyTimeout`` and leaves the pool
  usable [tests/clients/valkey/test_client.py::test_request_timeout];
- at most ``max_connections`` calls use a connection at once (single, Sentinel and Cluster
  alike); a call beyond waits for a free one instead of failing, and when its time limit
  runs out while waiting it raises ``ValkeyPoolExhausted`` naming the pool size
  [tests/clients/valkey/test_client.py::test_pool_waits_for_a_free_connection]
  [tests/clients/valkey/test_client.py::test_pool_wait_timeout_names_the_pool];
- after the server restarts, the next calls reconnect by themselves
  [tests/clients/valkey/test_client.py::test_reconnects_after_server_restart];
- Sentinel: after a failover the client follows the new master, and a connection is only used
  once the server's ``ROLE`` says ``master`` (a demoted master that answers PING is refused)
  [tests/clients/valkey/test_client.py::test_sentinel_follows_failover]
  [tests/clients/valkey/test_client.py::test_role_check_refuses_a_replica].

Limits: the pub/sub subscription loses messages published while it is reconnecting (that is
pub/sub) [tests/clients/valkey/test_client.py::test_subscription_survives_restart].
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar, cast

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from ...aio import AsyncResource
from .exceptions import (
    ValkeyAuthenticationError,
    ValkeyClosed,
    ValkeyConfigError,
    ValkeyConnectionError,
    ValkeyError,
    ValkeyNoGroup,
    ValkeyPoolExhausted,
    ValkeyReadOnly,
    ValkeyResponseError,
    ValkeyTimeout,
)
from .hooks import CallHook, passthrough
from .types import ValkeyClientStatistics, ValkeyMode, ValkeyTarget

__all__ = (
    "DEFAULT",
    "RAW_REPLY_COMMANDS",
    "ValkeyClient",
    "ValkeySubscription",
    "map_redis_error",
    "pack_command",
)

T = TypeVar("T")

log = logging.getLogger(__name__)


class _Default:
    pass


DEFAULT: Final = _Default()
"""Marker: use the target's ``request_timeout``."""

TimeLimit = float | None | _Default

_UNBOUNDED_POOL: Final = 2**31 - 1
"""redis-py's own pool bound: never reached, since the client's gate bounds the calls
(redis-py's default of 100 fails the 101st concurrent call at once with "Too many
connections" instead of waiting)."""


def pack_command(args: Sequence[bytes | str | int | float]) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, (int, float)) and not isinstance(arg, bool):
            data = repr(arg).encode()
        else:
            raise ValkeyConfigError(f"command argument {arg!r} is not bytes, str or a number")
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def map_redis_error(exc: BaseException, where: str) -> ValkeyError:
    """The ``ValkeyError`` for a redis-py (or socket) error raised while talking to ``where``."""
    text = f"{where}: {exc}"
    if isinstance(exc, (rexc.AuthenticationError, rexc.AuthorizationError)):
        return ValkeyAuthenticationError(text)
    if isinstance(exc, rexc.NoPermissionError):
        return ValkeyAuthenticationError(text)
    if isinstance(exc, rexc.ReadOnlyError):
        return ValkeyReadOnly(text)
    if isinstance(exc, (rexc.TimeoutError, TimeoutError)):
        return ValkeyTimeout(text)
    if isinstance(exc, (rexc.ClusterDownError, rexc.TryAgainError)):
        return ValkeyConnectionError(text)
    if isinstance(exc, rexc.ResponseError):
        message = str(exc)
        if message.startswith("NOGROUP"):
            return ValkeyNoGroup(text)
        if message.startswith(("LOADING", "MASTERDOWN")):
            return ValkeyConnectionError(text)
        return ValkeyResponseError(text)
    if isinstance(exc, (rexc.ConnectionError, rexc.ClusterError, OSError)):
        return ValkeyConnectionError(text)
    if isinstance(exc, rexc.DataError):
        return ValkeyConfigError(text)
    if isinstance(exc, rexc.SlotNotCoveredError):
        return ValkeyConnectionError(text)
    if isinstance(exc, rexc.RedisClusterException):  # e.g. a command no node can be chosen for
        return ValkeyConfigError(text)
    return ValkeyError(text)


_MAPPED = (rexc.RedisError, rexc.RedisClusterException, OSError)

RAW_REPLY_COMMANDS: Final = (
    "XREAD",
    "XREADGROUP",
    "XRANGE",
    "XREVRANGE",
    "XCLAIM",
    "XAUTOCLAIM",
    "XPENDING",
    "XINFO STREAM",
    "XINFO GROUPS",
    "XINFO CONSUMERS",
)
"""Commands whose replies this client returns as the server sent them (flat lists), not
reshaped by redis-py's response callbacks: cheaper on the hot path, and one shape for all."""


class ValkeyClient(AsyncResource):
    """A pooled client of one :class:`~.types.ValkeyTarget`.

    ``async with ValkeyClient(target) as client`` connects (one PING) and ``aclose()``
    releases every connection; both are idempotent. Responses are raw (bytes) as redis-py
    returns them with ``decode_responses=False``.
    """

    def __init__(self, target: ValkeyTarget, *, hook: CallHook | None = None) -> None:
        self._target = target
        self._hook: CallHook = hook if hook is not None else passthrough
        self._redis: aioredis.Redis | RedisCluster | None = None
        self._sentinel: Sentinel | None = None
        self._closed = False
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._master: tuple[str, int] | None = None
        self._master_changes = 0
        self._calls = 0
        self._failures = 0
        self._timeouts = 0
        self._connections_created = 0
        self._gate = (
            asyncio.Semaphore(target.max_connections)
            if target.max_connections is not None
            else None
        )
        self._waiting = 0
        self._pool_waits = 0

    @property
    def target(self) -> ValkeyTarget:
        """Where this client connects."""
        return self._target

    # -- lifecycle --------------------------------------------------------------------

    async def open(self) -> None:
        """Build the pool and check the server answers (PING); idempotent.

        Raises ``ValkeyConnectionError`` if it does not; cancelling leaves nothing open.
        """
        if self._closed:
            raise ValkeyClosed(f"valkey client of {self._target.describe()} is closed")
        if self._redis is not None:
            return
        self._redis = self._build()
        try:
            await self.execute("PING")
        except BaseException:
            await self._release()
            raise
        if self._sentinel is not None:
            self._stopping = asyncio.Event()
            self._watcher = asyncio.create_task(self._watch_master(), name="valkey-sentinel")

    async def aclose(self) -> None:
        """Stop the Sentinel watcher and close every connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._release()

    async def _release(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            self._stopping.set()
            await watcher  # it only waits on the event or a sentinel query
        redis, sentinel = self._redis, self._sentinel
        self._redis = self._sentinel = None
        if redis is not None:
            await redis.aclose()
        if sentinel is not None:
            await sentinel.aclose()

    def _connection_options(self) -> dict[str, Any]:
        target = self._target
        options: dict[str, Any] = {
            "username": target.username,
            "password": target.password,
            "socket_timeout": None,  # deadlines come from asyncio.timeout in call()
            "socket_connect_timeout": target.connect_timeout,
            "socket_keepalive": True,
            "retry": Retry(NoBackoff(), target.retries),
            "decode_responses": False,
            "client_name": target.client_name,
            "health_check_interval": 0,
            "max_connections": _UNBOUNDED_POOL,  # bounded by self._gate, see _call()
        }
        if target.tls is not None:
            tls = target.tls
            options.update(
                ssl=True,
                ssl_ca_certs=tls.ca_file,
                ssl_certfile=tls.cert_file,
                ssl_keyfile=tls.key_file,
                ssl_cert_reqs=ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE,
                ssl_check_hostname=tls.check_hostname and tls.verify,
            )
        return options

    def _build(self) -> aioredis.Redis | RedisCluster:
        redis = self._build_client()
        callbacks = getattr(redis, "response_callbacks", None)
        if callbacks is not None:
            for command in RAW_REPLY_COMMANDS:
                callbacks.pop(command, None)
        return redis

    def _build_client(self) -> aioredis.Redis | RedisCluster:
        target = self._target
        options = self._connection_options()
        if target.mode is ValkeyMode.CLUSTER:
            options.pop("health_check_interval")
            return RedisCluster(
                startup_nodes=[ClusterNode(a.host, a.port) for a in target.nodes], **options
            )
        options["db"] = target.db
        options["redis_connect_func"] = self._on_connect
        if target.mode is ValkeyMode.SENTINEL:
            sentinel_options = {
                "password": target.sentinel_password,
                "socket_timeout": target.connect_timeout,
                "socket_connect_timeout": target.connect_timeout,
                "decode_responses": False,
            }
            if target.tls is not None:
                sentinel_options.update({k: v for k, v in options.items() if k.startswith("ssl")})
            self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
                [(a.host, a.port) for a in target.sentinels],
                min_other_sentinels=0,
                sentinel_kwargs=sentinel_options,
                **options,
            )
            return cast(
                aioredis.Redis,
                self._sentinel.master_for(
                    cast(str, target.service_name), redis_class=aioredis.Redis
                ),
            )
        return aioredis.Redis(host=target.host, port=target.port, **options)

    async def _on_connect(self, connection: Connection) -> None:
        """Handshake of every new connection; in Sentinel mode, refuse a non-master."""
        await connection.on_connect_check_health(check_health=True)
        self._connections_created += 1
        if self._target.mode is ValkeyMode.SENTINEL:
            await connection.send_command("ROLE")
            reply = await connection.read_response()
            role = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            if role != "master":
                raise rexc.ConnectionError(
                    f"{connection.host}:{connection.port} has role {role!r}, not master "
                    f"(service {self._target.service_name!r} is failing over)"
                )

    async def _watch_master(self) -> None:
        """Sentinel mode: ask the sentinels for the master every ``sentinel_check_interval``;
        when it moved, drop every connection (in-use ones too) so no command keeps going to
        the demoted server; new connections check ROLE before use."""
        sentinel, service = self._sentinel, self._target.service_name
        pool = getattr(self._redis, "connection_pool", None)
        assert sentinel is not None
        assert service is not None
        assert pool is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._target.sentinel_check_interval):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            try:
                host, port = await sentinel.discover_master(service)
            except (rexc.RedisError, OSError) as exc:
                log.warning("asking the sentinels for %s failed: %s", service, exc)
                continue
            address = (str(host), int(port))
            if self._master is not None and address != self._master:
                log.warning("master of %s moved from %s to %s", service, self._master, address)
                self._master_changes += 1
                await pool.disconnect(inuse_connections=True)
            self._master = address

    def _require_open(self) -> aioredis.Redis | RedisCluster:
        if self._redis is None:
            state = "closed" if self._closed else "not open (use `async with`)"
            raise ValkeyClosed(f"valkey client of {self._target.describe()} is {state}")
        return self._redis

    @property
    def raw(self) -> aioredis.Redis | RedisCluster:
        """The redis-py client, for what this class does not wrap. Calls made on it bypass
        the hook, the request timeout and the error mapping, and the commands of
        ``RAW_REPLY_COMMANDS`` return raw replies."""
        return self._require_open()

    # -- calls --------------------------------------------------------------------

    async def call(
        self,
        operation: str,
        factory: Callable[[Any], Awaitable[T]],
        *,
        time_limit: TimeLimit = DEFAULT,
    ) -> T:
        """Run ``factory(redis)`` through the hook, under the request timeout, errors mapped.

        ``time_limit`` overrides the target's ``request_timeout`` (blocking reads pass their
        block time plus it); it also bounds the wait for a free connection when
        ``max_connections`` are busy (``ValkeyPoolExhausted``). ``factory`` must use at most
        one connection per server for the duration of the call. Cancelling drops the
        connection the call was using and frees its slot.
        """
        return await self._call(operation, factory, time_limit, gated=True)

    async def _call(
        self,
        operation: str,
        factory: Callable[[Any], Awaitable[T]],
        time_limit: TimeLimit,
        *,
        gated: bool,
        hooked: bool = True,
    ) -> T:
        """``call()``; ``gated=False`` for calls on a connection that is not the pool's for
        the call's duration (a subscription's own), which take no slot; ``hooked=False`` for
        calls the hook must not see (the breaker state store's, see ``breaker_store``)."""
        redis = self._require_open()
        limit = self._target.request_timeout if isinstance(time_limit, _Default) else time_limit
        gate = self._gate if gated else None

        async def guarded() -> T:
            self._calls += 1
            holding = False
            try:
                async with asyncio.timeout(limit):
                    if gate is not None:
                        if gate.locked():
                            await self._wait_for_slot(gate)
                        else:
                            await gate.acquire()  # free: returns without suspending
                        holding = True
                    return await factory(redis)
            except TimeoutError as exc:
                self._failures += 1
                self._timeouts += 1
                if gate is not None and not holding:
                    raise ValkeyPoolExhausted(
                        f"{self._target.describe()}: {operation} waited {limit} s for a free "
                        f"connection; all max_connections={self._target.max_connections} "
                        "were in use"
                    ) from exc
                raise ValkeyTimeout(
                    f"{self._target.describe()}: {operation} took longer than {limit} s"
                ) from exc
            except _MAPPED as exc:
                self._failures += 1
                error = map_redis_error(exc, self._target.describe())
                if isinstance(error, ValkeyTimeout):
                    self._timeouts += 1
                raise error from exc
            finally:
                if holding:
                    assert gate is not None
                    gate.release()

        if not hooked:
            return await guarded()
        return await self._hook(operation, guarded)

    async def _wait_for_slot(self, gate: asyncio.Semaphore) -> None:
        self._pool_waits += 1
        self._waiting += 1
        try:
            await gate.acquire()
        finally:
            self._waiting -= 1

    async def execute(self, *args: Any, time_limit: TimeLimit = DEFAULT) -> Any:
        """Run one command (``await client.execute("SET", "k", "v")``)."""
        name = str(args[0]).lower() if args else "command"
        return await self.call(name, lambda r: r.execute_command(*args), time_limit=time_limit)

    async def pipeline(
        self,
        commands: Sequence[Sequence[Any]],
        *,
        transaction: bool = False,
        operation: str = "pipeline",
        raise_on_error: bool = True,
        time_limit: TimeLimit = DEFAULT,
    ) -> list[Any]:
        """Run several commands in one round trip (``MULTI``/``EXEC`` when ``transaction``);
        results in order. With ``raise_on_error=False`` failed commands yield their mapped
        ``ValkeyError`` in place of a result."""

        async def run(redis: Any) -> list[Any]:
            pipe = redis.pipeline(transaction=transaction)
            for command in commands:
                pipe.execute_command(*command)
            return cast(list[Any], await pipe.execute(raise_on_error=raise_on_error))

        results = await self.call(operation, run, time_limit=time_limit)
        if raise_on_error:
            return results
        where = self._target.describe()
        return [map_redis_error(r, where) if isinstance(r, rexc.RedisError) else r for r in results]

    async def execute_many(
        self,
        commands: Sequence[Sequence[bytes | str | int | float] | bytes],
        *,
        operation: str = "pipeline",
        time_limit: TimeLimit = DEFAULT,
    ) -> list[Any]:
        """Several commands in one round trip, encoded here (several times faster than
        redis-py's generic packer; a ``bytes`` item is taken as an already encoded command)
        and answered with the server's raw replies (RESP3 shapes), no response callbacks.

        The first error reply raises (the rest of the batch was still executed). A connection
        that broke before any reply was read is retried once, like redis-py's own retry. On a
        cluster target the commands go through redis-py's cluster pipeline (routed per key,
        replies shaped by its callbacks) and pre-encoded ``bytes`` items are refused."""
        redis = self._require_open()
        if isinstance(redis, RedisCluster):
            return await self._execute_many_on_cluster(commands, operation, time_limit)
        payload = b"".join(c if isinstance(c, bytes) else pack_command(c) for c in commands)
        count = len(commands)
        pool = redis.connection_pool

        async def run(_: Any) -> list[Any]:
            for attempt in (0, 1):
                connection = await pool.get_connection()  # type: ignore[no-untyped-call]
                replies: list[Any] = []
                try:
                    await connection.send_packed_command(payload, check_health=False)
                    for _ in range(count):
                        replies.append(await connection.read_response())
                    return replies
                except (rexc.ConnectionError, OSError):
                    await connection.disconnect()
                    if attempt or replies or self._target.retries == 0:
                        raise
                except BaseException:
                    await connection.disconnect()  # replies may be left unread
                    raise
                finally:
                    await pool.release(connection)
            raise AssertionError("unreachable")

        return await self.call(operation, run, time_limit=time_limit)

    async def _execute_many_on_cluster(
        self,
        commands: Sequence[Sequence[bytes | str | int | float] | bytes],
        operation: str,
        time_limit: TimeLimit,
    ) -> list[Any]:
        listed = []
        for command in commands:
            if isinstance(command, bytes):
                raise ValkeyConfigError(f"{operation}: pre-encoded commands need a single node")
            listed.append(command)
        if len(listed) == 1:
            return [await self.execute(*listed[0], time_limit=time_limit)]
        return await self.pipeline(listed, operation=operation, time_limit=time_limit)

    async def ping(self) -> bool:
        """True when the server answers."""
        return bool(await self.execute("PING"))

    async def role(self) -> str:
        """The server's replication role: ``master``, ``slave`` or ``sentinel``."""
        reply = await self.execute("ROLE")
        first = reply[0]
        return first.decode() if isinstance(first, bytes) else str(first)

    def subscription(self, *channels: str) -> ValkeySubscription:
        """A pub/sub subscription to ``channels`` (open it with ``async with``)."""
        return ValkeySubscription(self, channels)

    def statistics(self) -> ValkeyClientStatistics:
        """A snapshot of this client's counters."""
        in_use = 0
        pool = getattr(self._redis, "connection_pool", None)
        if pool is not None:
            in_use = len(getattr(pool, "_in_use_connections", ()))
        return ValkeyClientStatistics(
            calls=self._calls,
            failures=self._failures,
            timeouts=self._timeouts,
            connections_created=self._connections_created,
            connections_in_use=in_use,
            master_changes=self._master_changes,
            max_connections=self._target.max_connections,
            waiting=self._waiting,
            pool_waits=self._pool_waits,
        )


class ValkeySubscription(AsyncResource):
    """One pub/sub connection subscribed to fixed channels; it resubscribes after a reconnect.

    ``async with client.subscription("events_all") as sub`` subscribes and waits until the
    server confirmed every channel, so nothing published afterwards is missed.
    """

    def __init__(self, client: ValkeyClient, channels: Sequence[str]) -> None:
        if not channels:
            raise ValkeyConfigError("subscription: no channel given")
        self._client = client
        self._channels = tuple(channels)
        self._pubsub: PubSub | None = None

    async def open(self) -> None:
        """Subscribe and wait for the server's confirmation of every channel."""
        if self._pubsub is not None:
            return
        redis = self._client._require_open()
        pubsub = self._pubsub = redis.pubsub()
        try:
            await self._client._call(
                "subscribe", lambda _: pubsub.subscribe(*self._channels), DEFAULT, gated=False
            )
            pending = set(self._channels)
            while pending:
                message = await self._client._call(
                    "subscribe", lambda _: pubsub.get_message(timeout=1.0), DEFAULT, gated=False
                )
                if message is not None and message["type"] == "subscribe":
                    channel = message["channel"]
                    pending.discard(channel.decode() if isinstance(channel, bytes) else channel)
        except BaseException:
            await self.aclose()
            raise

    async def get(self, max_wait: float | None) -> tuple[str, bytes] | None:
        """The next message as ``(channel, data)``, or ``None`` after ``max_wait`` seconds.

        A broken connection raises ``ValkeyConnectionError``; the next ``get`` reconnects and
        resubscribes.
        """
        pubsub = self._pubsub
        if pubsub is None:
            raise ValkeyClosed("subscription is not open")
        request_timeout = self._client.target.request_timeout
        limit = None if max_wait is None or request_timeout is None else max_wait + request_timeout
        message = await self._client._call(
            "pubsub.get",
            lambda _: pubsub.get_message(ignore_subscribe_messages=True, timeout=max_wait),
            limit,
            gated=False,  # the subscription's own connection, not a pool slot
        )
        if message is None or message["type"] != "message":
            return None
        channel = message["channel"]
        return (channel.decode() if isinstance(channel, bytes) else channel), message["data"]

    async def aclose(self) -> None:
        """Unsubscribe and release the connection; idempotent."""
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
