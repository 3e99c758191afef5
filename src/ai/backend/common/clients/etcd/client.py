"""The real etcd backend: etcd's v3 gRPC API through ``aetcd``, with failover between members.

The only module of this package that imports ``aetcd`` or ``grpc``; every error they raise is
mapped here (``ConnectionFailedError`` -> ``EtcdUnavailable``, ``ConnectionTimeoutError`` ->
``EtcdTimeout``, ...) and chained.

Guarantees:
- given several endpoints, a request that fails because its member is down, has no leader or
  times out is retried on the next member until ``failover_timeout``; a 3-member cluster keeps
  serving reads, writes, watches and lease keep-alives when any one member is killed
  [tests/clients/etcd/test_etcd_client.py::test_cluster_member_kill_keeps_serving];
- a watch whose member dies resumes on another member at the next revision, missing nothing
  [tests/clients/etcd/test_etcd_client.py::test_watch_survives_server_restart];
- no ``aetcd``/``grpc`` exception leaves a public call
  [tests/clients/etcd/test_etcd_client.py::test_unreachable_raises_etcd_unavailable];
- a cancellation is never lost inside aetcd (whose ``asyncio.wait_for`` drops one on Python
  3.11 when it arrives as a watch is created): it is raised, and the watch released
  [tests/clients/etcd/test_etcd_client.py::test_a_cancellation_lost_inside_aetcd_is_raised]
  [tests/service_discovery/test_cache.py::test_closing_right_after_opening_never_hangs].

Limits:
- a write retried after a lost reply may have been applied twice (puts are idempotent; a
  ``replace`` or ``put_if_absent`` then reports ``False``);
- the channel of each member is kept for the client's lifetime (closing a gRPC channel cancels
  the calls still using it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import aetcd
import aetcd.rpc
from aetcd import rtypes as _rtypes

from ._backend import (
    Compare,
    CompareTarget,
    Op,
    PutOp,
    RawEvent,
    RawKV,
    RawWatchStream,
    TxnResult,
)
from .abc import AsyncEtcd
from .exceptions import (
    EtcdClosed,
    EtcdError,
    EtcdInvalidArgument,
    EtcdLeaseNotFound,
    EtcdTimeout,
    EtcdUnavailable,
    EtcdWatchCompacted,
)
from .types import Clock, ConfigScopes, WatchEventType

__all__ = ("EtcdClient",)

T = TypeVar("T")

EndpointLike = str | tuple[str, int]

_CHANNEL_OPTIONS: dict[str, Any] = {
    # Come back quickly when a member restarts (gRPC defaults grow to 120 s).
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
    # Notice a dead peer under an idle watch stream (etcd allows pings every >= 5 s).
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
}

_RETRIABLE = (aetcd.ConnectionFailedError, aetcd.ConnectionTimeoutError)


def parse_endpoint(value: EndpointLike) -> tuple[str, int]:
    """``"host:port"``, ``"http://host:port"`` or ``(host, port)`` -> ``(host, port)``."""
    if isinstance(value, tuple):
        host, port = value[0], value[1]
    else:
        text = str(value).strip()
        for scheme in ("http://", "https://"):
            text = text.removeprefix(scheme)
        host, sep, port_text = text.rstrip("/").rpartition(":")
        if not sep or not port_text.isdigit():
            raise EtcdInvalidArgument(f"etcd endpoint {value!r} is not host:port")
        port = int(port_text)
    host = str(host).removeprefix("[").removesuffix("]")
    if not host or not isinstance(port, int) or not 0 < port < 65536:
        raise EtcdInvalidArgument(f"etcd endpoint {value!r} is not host:port")
    return host, port


def _map_error(exc: Exception, what: str) -> EtcdError:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, aetcd.ConnectionFailedError):
        return EtcdUnavailable(f"{what}: etcd unavailable ({detail})")
    if isinstance(exc, aetcd.ConnectionTimeoutError | aetcd.WatchTimeoutError):
        return EtcdTimeout(f"{what}: etcd request timed out ({detail})")
    if isinstance(exc, aetcd.RevisionCompactedError):
        return EtcdWatchCompacted(
            f"{what}: revision compacted below {exc.compacted_revision}",
            compact_revision=int(exc.compacted_revision),
        )
    if isinstance(exc, aetcd.InvalidArgumentError):
        return EtcdInvalidArgument(f"{what}: {detail}")
    if "lease not found" in detail:
        return EtcdLeaseNotFound(f"{what}: {detail}")
    if isinstance(exc, asyncio.TimeoutError):
        return EtcdTimeout(f"{what}: etcd request timed out")
    return EtcdError(f"{what}: {detail}")


class _GrpcWatchStream(RawWatchStream):
    """One aetcd watch, adapted to raw events and our errors."""

    def __init__(self, owner: EtcdClient, watch: Any, index: int, what: str) -> None:
        self._owner = owner
        self._watch = watch
        self._iter = watch.__aiter__()
        self._index = index
        self._what = what
        self._closed = False

    async def __anext__(self) -> RawEvent:
        if self._closed:
            raise StopAsyncIteration
        try:
            ev = await self._iter.__anext__()
        except StopAsyncIteration:
            raise
        except (aetcd.ClientError, aetcd.rpc.AioRpcError) as exc:
            self._owner._rotate(self._index)
            mapped = _map_error(_as_client_error(exc), self._what)
            if not isinstance(mapped, EtcdWatchCompacted):
                mapped = EtcdUnavailable(f"{self._what}: watch stream broke ({mapped})")
            raise mapped from exc
        kind = WatchEventType.PUT if ev.kind == _rtypes.EventKind.PUT else WatchEventType.DELETE
        kv = ev.kv
        return RawEvent(
            kv.key.decode(),
            kind,
            kv.value.decode() if kind is WatchEventType.PUT else "",
            kv.mod_revision,
        )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._watch.cancel()
        except (aetcd.ClientError, aetcd.rpc.AioRpcError):
            pass  # the stream is already gone
        finally:
            # cancel() ends the generator for a task iterating it right now; otherwise close it.
            if not self._iter.ag_running:
                await self._iter.aclose()


def _as_client_error(exc: Exception) -> Exception:
    if isinstance(exc, aetcd.rpc.AioRpcError):
        code = exc.code()
        details = str(exc.details())
        cls: type[Exception] = aetcd.ClientError
        if code == aetcd.rpc.StatusCode.UNAVAILABLE:
            cls = aetcd.ConnectionFailedError
        elif code == aetcd.rpc.StatusCode.DEADLINE_EXCEEDED:
            cls = aetcd.ConnectionTimeoutError
        return cls(details)
    return exc


class EtcdClient(AsyncEtcd):
    """:class:`~.abc.AsyncEtcd` on a real etcd (v3 API), failing over between ``endpoints``.

    ``request_timeout`` bounds each gRPC call; ``failover_timeout`` bounds the retries of one
    public call across members (then ``EtcdUnavailable`` / ``EtcdTimeout``).
    """

    def __init__(
        self,
        endpoints: EndpointLike | Sequence[EndpointLike],
        namespace: str,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
        *,
        credentials: Mapping[str, str] | None = None,
        request_timeout: float = 5.0,
        failover_timeout: float = 15.0,
        clock: Clock | None = None,
        watch_reconnect_interval: float = 0.1,
        watch_reconnect_max_interval: float = 2.0,
    ) -> None:
        super().__init__(
            namespace,
            scope_prefix_map,
            clock=clock,
            watch_reconnect_interval=watch_reconnect_interval,
            watch_reconnect_max_interval=watch_reconnect_max_interval,
        )
        if isinstance(endpoints, str) or (
            isinstance(endpoints, tuple) and len(endpoints) == 2 and isinstance(endpoints[1], int)
        ):
            endpoints = [endpoints]
        parsed = [parse_endpoint(e) for e in endpoints]
        if not parsed:
            raise EtcdInvalidArgument("EtcdClient needs at least one endpoint")
        if request_timeout <= 0 or failover_timeout <= 0:
            raise EtcdInvalidArgument(
                f"timeouts must be positive: request_timeout={request_timeout!r}, "
                f"failover_timeout={failover_timeout!r}"
            )
        self._endpoints = parsed
        self._credentials = dict(credentials) if credentials else None
        self._request_timeout = request_timeout
        self._failover_timeout = failover_timeout
        self._clients: dict[int, aetcd.Client] = {}
        self._tasks_at_open: set[asyncio.Task[Any]] = set()
        self._index = 0
        self._failovers = 0

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        """The members this client talks to, in failover order."""
        return list(self._endpoints)

    # -- connections -------------------------------------------------------------------

    async def _backend_open(self) -> None:
        # Channels are created lazily, per member, on first use.
        self._tasks_at_open = asyncio.all_tasks()

    async def _backend_close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            # Closing a broken channel may fail; there is nothing left to release then.
            with contextlib.suppress(TimeoutError, aetcd.ClientError, aetcd.rpc.AioRpcError):
                await client.close()
        await self._drain_grpc_tasks()

    async def _drain_grpc_tasks(self) -> None:
        """Wait briefly for gRPC's own per-call tasks to see their channel closed.

        gRPC finishes them on its poller's next tick; without this they outlive ``aclose()``.
        Calls of other open clients keep theirs, so the wait is bounded.
        """
        started = self._tasks_at_open
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.25
        while loop.time() < deadline:
            pending = [
                t for t in asyncio.all_tasks() - started if not t.done() and _is_grpc_task(t)
            ]
            if not pending:
                return
            await asyncio.sleep(0.002)

    def _client(self) -> tuple[aetcd.Client, int]:
        index = self._index
        client = self._clients.get(index)
        if client is None:
            host, port = self._endpoints[index]
            creds = self._credentials or {}
            client = aetcd.Client(
                host=host,
                port=port,
                username=creds.get("user"),
                password=creds.get("password"),
                timeout=self._request_timeout,
                options=_CHANNEL_OPTIONS,
            )
            self._clients[index] = client
        return client, index

    def _rotate(self, index: int) -> None:
        """Move to the next member, unless another caller already moved on from ``index``."""
        if len(self._endpoints) > 1 and self._index == index:
            self._index = (index + 1) % len(self._endpoints)
            self._failovers += 1

    def _endpoint_name(self) -> str:
        host, port = self._endpoints[self._index]
        return f"{host}:{port}"

    def _failover_count(self) -> int:
        return self._failovers

    async def _call(
        self,
        what: str,
        fn: Callable[[aetcd.Client], Awaitable[T]],
        *,
        retry: bool = True,
        discard: Callable[[T], Awaitable[None]] | None = None,
    ) -> T:
        """Run ``fn`` on the current member, failing over on transport errors.

        aetcd waits with ``asyncio.wait_for`` in places (creating a watch), which on Python 3.11
        loses a cancellation that arrives as the awaited operation completes: the caller would
        carry on as if never cancelled (a closing owner then waits for ever). A cancellation
        requested during the call is therefore raised here even if ``fn`` returned, after
        ``discard`` released its result.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._failover_timeout
        delay = 0.05
        tried = 0
        task = asyncio.current_task()
        requested = task.cancelling() if task is not None else 0
        while True:
            if self._closing:
                raise EtcdClosed(f"{what}: etcd client of namespace {self._ns!r} is closed")
            client, index = self._client()
            try:
                result = await fn(client)
                if task is not None and task.cancelling() > requested:
                    if discard is not None:
                        await discard(result)
                    raise asyncio.CancelledError(f"{what}: cancelled (cancellation was lost)")
                return result
            except _RETRIABLE as exc:
                self._rotate(index)
                tried += 1
                if not retry or loop.time() >= deadline:
                    raise _map_error(exc, what) from exc
                if tried % len(self._endpoints) == 0:
                    # Every member failed once: back off before the next round.
                    await asyncio.sleep(min(delay, max(deadline - loop.time(), 0.0)))
                    delay = min(delay * 2, 1.0)
            except aetcd.ClientError as exc:
                raise _map_error(exc, what) from exc
            except aetcd.rpc.AioRpcError as exc:
                mapped = _as_client_error(exc)
                if isinstance(mapped, _RETRIABLE):
                    self._rotate(index)
                raise _map_error(mapped, what) from exc

    # -- primitives --------------------------------------------------------------------

    async def _range(self, key: str, *, prefix: bool) -> tuple[list[RawKV], int]:
        raw = key.encode()
        end = aetcd.utils.prefix_range_end(raw) if prefix else raw + b"\x00"

        async def run(c: aetcd.Client) -> tuple[list[RawKV], int]:
            result = await c.get_range(raw, end, sort_order="ascend")
            kvs = [
                RawKV(
                    kv.key.decode(),
                    kv.value.decode(),
                    kv.create_revision,
                    kv.mod_revision,
                    kv.lease,
                )
                for kv in result.kvs
            ]
            return kvs, result.header.revision

        return await self._call(f"get({key!r})", run)

    async def _txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        what = f"txn({_describe(success)})"

        async def run(c: aetcd.Client) -> TxnResult:
            cmp = [_build_compare(c, x) for x in compares]
            ok_ops = [_build_op(c, op) for op in success]
            fail_ops = [_build_op(c, op) for op in failure]
            succeeded, responses = await c.transaction(cmp, ok_ops, fail_ops)
            revision = 0
            deleted = 0
            for response in responses:
                kind = response.WhichOneof("response")
                inner = getattr(response, kind)
                revision = max(revision, inner.header.revision)
                if kind == "response_delete_range":
                    deleted += inner.deleted
            if revision == 0:
                _, revision = await self._range_raw(c)
            return TxnResult(bool(succeeded), revision, deleted)

        return await self._call(what, run)

    async def _range_raw(self, c: aetcd.Client) -> tuple[None, int]:
        key = self._mangle("\x00").encode()
        result = await c.get_range(key, key + b"\x00")
        return None, result.header.revision

    async def _open_watch_stream(
        self, key: str, prefix: bool, start_revision: int
    ) -> RawWatchStream:
        raw = key.encode()
        what = f"watch({key!r})"

        async def run(c: aetcd.Client) -> RawWatchStream:
            if prefix:
                watch = await c.watch_prefix(raw, start_revision=start_revision)
            else:
                watch = await c.watch(raw, start_revision=start_revision)
            return _GrpcWatchStream(self, watch, self._index, what)

        async def discard(stream: RawWatchStream) -> None:
            await stream.aclose()

        return await self._call(what, run, discard=discard)

    async def _lease_grant(self, ttl: int) -> tuple[int, int]:
        async def run(c: aetcd.Client) -> tuple[int, int]:
            lease = await c.lease(ttl)
            return int(lease.id), int(lease.ttl)

        return await self._call(f"grant_lease(ttl={ttl})", run)

    async def _lease_keepalive_once(self, lease_id: int) -> int:
        async def run(c: aetcd.Client) -> int:
            reply = await c.refresh_lease(lease_id)
            return 0 if reply is None else int(reply.TTL)

        return await self._call(f"keepalive(lease={lease_id:#x})", run, retry=False)

    async def _lease_revoke(self, lease_id: int) -> None:
        async def run(c: aetcd.Client) -> None:
            await c.revoke_lease(lease_id)

        # A lease already expired or revoked is gone, which is what revoking wants.
        with contextlib.suppress(EtcdLeaseNotFound):
            await self._call(f"revoke_lease({lease_id:#x})", run)

    async def _lease_time_to_live(self, lease_id: int) -> int:
        async def run(c: aetcd.Client) -> int:
            info = await c.get_lease_info(lease_id, keys=False)
            return int(info.TTL)

        return await self._call(f"lease_time_to_live({lease_id:#x})", run)


def _is_grpc_task(task: asyncio.Task[Any]) -> bool:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", "")
    code = getattr(coro, "cr_code", None)
    filename = getattr(code, "co_filename", "") if code is not None else ""
    return name.startswith(("_AioCall.", "_StreamRequestMixin.")) or "/grpc/" in filename


def _build_compare(c: aetcd.Client, cmp: Compare) -> Any:
    key = cmp.key.encode()
    if cmp.target is CompareTarget.VALUE:
        return c.transactions.value(key) == str(cmp.operand).encode()
    if cmp.target is CompareTarget.CREATE_REVISION:
        return c.transactions.create(key) == int(cmp.operand)
    if cmp.target is CompareTarget.MOD_REVISION:
        return c.transactions.mod(key) == int(cmp.operand)
    return _LeaseCompare(key, int(cmp.operand))


class _LeaseCompare:
    """``lease(key) == id`` (aetcd has no helper for the LEASE compare target)."""

    def __init__(self, key: bytes, lease_id: int) -> None:
        self.key = key
        self.lease_id = lease_id

    def build_message(self) -> Any:
        msg = aetcd.rpc.Compare()
        msg.key = self.key
        msg.result = aetcd.rpc.Compare.EQUAL
        msg.target = aetcd.rpc.Compare.LEASE
        msg.lease = self.lease_id
        return msg


def _build_op(c: aetcd.Client, op: Op) -> Any:
    if isinstance(op, PutOp):
        return c.transactions.put(op.key.encode(), op.value.encode(), lease=op.lease or None)
    key = op.key.encode()
    if op.prefix:
        return c.transactions.delete(key, range_end=aetcd.utils.prefix_range_end(key))
    return c.transactions.delete(key)


def _describe(ops: Sequence[Op]) -> str:
    if not ops:
        return ""
    first = ops[0]
    kind = "put" if isinstance(first, PutOp) else "delete"
    more = f" +{len(ops) - 1}" if len(ops) > 1 else ""
    return f"{kind} {first.key!r}{more}"
