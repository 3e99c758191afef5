"""A pool of ZeroMQ connections to agents, speaking callosum's RPC wire format (pyzmq directly).

Why not ``callosum.rpc.Peer``: each Peer's transport makes its own ``zmq.asyncio.Context``
(an I/O thread and a reaper thread each), and a Peer whose connect handshake fails raises from
``__aenter__`` without closing that transport, so its context, threads and sockets stay behind:
20 failed connects to a dead address leave 40 threads and 120 descriptors (measured, see the
report of issue #7). Here one context serves the whole pool; every socket is closed with
linger 0 the moment its connection fails or is evicted.

A connection is one DEALER socket per agent address plus a monitor socket. Opening it sends
callosum's ``PING`` and waits for ``PONG``; a refused TCP connect or a failed CurveZMQ handshake
(seen on the monitor) fails the open at once instead of waiting out the handshake timeout. When
the agent disconnects, every call in flight on that connection fails with
:class:`~.exceptions.AgentConnectionLost` and the connection is dropped; the next call reconnects.

Guarantees:
- 10,000 failed connects leave the process's threads and descriptors where they were
  [tests/clients/agent/test_pool.py::test_failed_connects_do_not_leak];
- calls to one agent share one connection; idle connections are evicted
  [tests/clients/agent/test_pool.py::test_connection_reused_and_evicted];
- at most ``max_in_flight`` calls per agent are in flight; more wait for a slot within their
  deadline [tests/clients/agent/test_pool.py::test_in_flight_bounded];
- a call past its deadline raises :class:`~.exceptions.AgentCallTimeout` and sends callosum's
  cancel message, which cancels the handler on the agent
  [tests/clients/agent/test_pool.py::test_deadline_cancels_remote_handler];
- cancelling the caller cancels the remote handler too and leaves nothing in flight
  [tests/clients/agent/test_pool.py::test_caller_cancel_propagates];
- the caller's context bundle and remaining deadline reach the handler
  [tests/clients/agent/test_pool.py::test_context_bundle_reaches_handler];
- an agent killed mid-call gives the caller a ``BackendAIError`` promptly, opens the breaker,
  and calls succeed after it restarts on the same address
  [tests/clients/agent/test_chaos.py::test_agent_killed_mid_call];
- a plain callosum peer serves our calls and calls our server
  [tests/clients/agent/test_interop.py].

Limits:
- a call in flight when the connection drops is not retried (it may have run on the agent)
  [tests/clients/agent/test_pool.py::test_connection_lost_not_retried];
- a call whose agent shuts down gracefully ends with :class:`~.exceptions.AgentCallCancelled`
  [tests/clients/agent/test_pool.py::test_server_shutdown_cancels_call].
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from ...aio import AsyncResource
from ...contexts import ContextBundle
from ...resilience import BreakerOpen, Policy
from . import _wire as wire
from .exceptions import (
    AgentAuthenticationFailed,
    AgentCallCancelled,
    AgentCallTimeout,
    AgentCircuitOpen,
    AgentConnectionLost,
    AgentInvalidArgument,
    AgentMethodNotFound,
    AgentPoolClosed,
    AgentProtocolError,
    AgentRemoteError,
    AgentRPCError,
    AgentUnreachable,
)
from .metrics import AgentRPCMetrics
from .policy import agent_policy
from .types import AgentPoolStatistics, CurveKeyPair, z85_key

__all__ = (
    "AgentPeer",
    "AgentRPCPool",
)

log = logging.getLogger(__name__)

_MONITOR_EVENTS: Final = (
    zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_HANDSHAKE_FAILED: Final = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_SEQ_MOD: Final = 2**32
_NO_TIMEOUT: Final = object()
_monitor_ids = itertools.count()


@dataclass(slots=True)
class _Slot:
    method: str
    future: asyncio.Future[tuple[dict[str, Any], bytes]]


class _Connection:
    """One DEALER socket to one agent, with its reader and monitor tasks."""

    def __init__(self, pool: AgentRPCPool, address: str, server_key: bytes | None) -> None:
        self.pool = pool
        self.address = address
        self.server_key = server_key
        self.sock: zmq.asyncio.Socket | None = None
        self.mon: zmq.asyncio.Socket | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.pending: dict[int, _Slot] = {}
        self.seq = 0
        self.slots = asyncio.Semaphore(pool._max_in_flight)
        self.waiting = 0
        self.last_used = pool._clock()
        self.nonce = secrets.token_bytes(8)
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False

    # -- opening ------------------------------------------------------------------------------

    async def open(self, handshake_timeout: float) -> None:
        """Connect and run callosum's PING/PONG handshake; on any failure release everything."""
        pool = self.pool
        ctx = pool._ctx
        assert ctx is not None
        assert pool._tg is not None
        try:
            sock = self.sock = ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.sndhwm = sock.rcvhwm = pool._hwm
            sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
            sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, pool._keepalive)
            sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, max(2, pool._keepalive // 3))
            sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)
            if self.server_key is not None:
                keys = pool._keypair
                assert keys is not None
                sock.curve_serverkey = self.server_key
                sock.curve_publickey = keys.public_key
                sock.curve_secretkey = keys.secret_key
                sock.zap_domain = pool._zap_domain.encode()
            mon_addr = f"inproc://agent-rpc-monitor-{next(_monitor_ids)}"
            sock.monitor(mon_addr, _MONITOR_EVENTS)
            mon = self.mon = ctx.socket(zmq.PAIR)
            mon.linger = 0
            mon.connect(mon_addr)
            self.tasks.append(pool._tg.create_task(self._read(sock)))
            self.tasks.append(pool._tg.create_task(self._watch(mon)))
            sock.connect(self.address)
            sock.send_multipart([wire.PING, self.nonce, b""], flags=zmq.DONTWAIT)
            async with asyncio.timeout(handshake_timeout):
                await self.ready
        except BaseException as exc:
            reason = self._open_error(exc, handshake_timeout)
            self.close(reason)
            if isinstance(exc, asyncio.CancelledError) or reason is exc:
                raise
            raise reason from exc

    def _open_error(self, exc: BaseException, timeout: float) -> AgentRPCError:
        if isinstance(exc, AgentRPCError):
            return exc
        if isinstance(exc, TimeoutError):
            return AgentUnreachable(
                f"agent at {self.address} did not answer the handshake within {timeout:.3g}s",
                data={"address": self.address},
            )
        if isinstance(exc, zmq.ZMQError):
            return AgentUnreachable(
                f"cannot connect to agent at {self.address}: {exc}",
                data={"address": self.address},
            )
        return AgentUnreachable(
            f"connect to agent at {self.address} aborted: {exc!r}",
            data={"address": self.address},
        )

    # -- background tasks ---------------------------------------------------------------------

    async def _read(self, sock: zmq.asyncio.Socket) -> None:
        try:
            while True:
                frames = await sock.recv_multipart()
                if len(frames) != 3:
                    continue
                kind = frames[0]
                if kind == wire.UPPER:
                    self._on_reply(frames[1], frames[2])
                    # Let the woken caller send its next request now, so that the agent is
                    # kept busy while we drain the rest (2x the throughput of draining first).
                    await asyncio.sleep(0)
                elif kind == wire.PONG and frames[1] == self.nonce and not self.ready.done():
                    self.ready.set_result(None)
        except zmq.ZMQError as exc:
            if not self.closed:
                self.close(AgentConnectionLost(f"socket to agent at {self.address} failed: {exc}"))

    def _on_reply(self, raw_header: bytes, raw_body: bytes) -> None:
        try:
            header = wire.decode_header(raw_header)
        except AgentProtocolError:
            log.warning("dropping a malformed reply from agent at %s", self.address)
            return
        slot = self.pending.get(header["seq"])
        if slot is None or slot.method != header.get("meth") or slot.future.done():
            return
        slot.future.set_result((header, raw_body))

    async def _watch(self, mon: zmq.asyncio.Socket) -> None:
        try:
            while True:
                event = parse_monitor_message(await mon.recv_multipart())["event"]
                if event & _HANDSHAKE_FAILED:
                    self.close(
                        AgentAuthenticationFailed(
                            f"handshake with agent at {self.address} failed "
                            f"({zmq.Event(event).name}); check the CurveZMQ keys",
                            data={"address": self.address},
                        )
                    )
                    return
                if event == zmq.EVENT_CONNECT_RETRIED and not self.ready.done():
                    self.close(
                        AgentUnreachable(
                            f"agent at {self.address} refused the connection",
                            data={"address": self.address},
                        )
                    )
                    return
                if event == zmq.EVENT_DISCONNECTED:
                    cls = AgentConnectionLost if self.ready.done() else AgentUnreachable
                    self.close(
                        cls(
                            f"agent at {self.address} disconnected",
                            data={"address": self.address},
                        )
                    )
                    return
        except zmq.ZMQError:
            return

    # -- closing ------------------------------------------------------------------------------

    def close(self, reason: AgentRPCError, kind: str = "lost") -> None:
        """Fail waiters with ``reason``, leave the pool, and close both sockets at once.

        ``kind`` (``lost``, ``evicted``, ``closed``) only feeds the pool's counters; a
        connection that never became ready always counts as a failed connect.
        """
        if self.closed:
            return
        self.closed = True
        self.pool._forget(self, kind if self.ready.done() else "failed")
        if not self.ready.done():
            self.ready.set_exception(reason)
            self.ready.exception()  # mark retrieved: nobody may be waiting
        if self.pending:
            # A sent call may have run on the agent: it is lost, never plainly unreachable.
            lost = (
                reason
                if isinstance(reason, AgentConnectionLost)
                else AgentConnectionLost(str(reason), data={"address": self.address})
            )
            for slot in self.pending.values():
                if not slot.future.done():
                    slot.future.set_exception(lost)
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        if self.sock is not None:
            with contextlib.suppress(zmq.ZMQError):
                self.sock.disable_monitor()
            self.sock.close(linger=0)
        if self.mon is not None:
            self.mon.close(linger=0)

    # -- calls --------------------------------------------------------------------------------

    async def call(
        self, method: str, okey: Any, payload: bytes, ctx: dict[str, Any] | None
    ) -> tuple[dict[str, Any], bytes]:
        """Send one request and wait for its reply (the caller holds the deadline)."""
        if self.slots.locked():
            self.waiting += 1
            try:
                await self.slots.acquire()
            finally:
                self.waiting -= 1
        else:
            await self.slots.acquire()
        try:
            if self.closed:
                raise AgentUnreachable(
                    f"connection to agent at {self.address} closed", data={"address": self.address}
                )
            seq = self.seq
            self.seq = (seq + 1) % _SEQ_MOD
            header = wire.encode_header(wire.MsgType.FUNCTION, method, okey, seq, ctx)
            body = wire.encode_body(wire.EMPTY_META, payload)
            future: asyncio.Future[tuple[dict[str, Any], bytes]] = (
                asyncio.get_running_loop().create_future()
            )
            self.pending[seq] = _Slot(method, future)
            sent = False
            try:
                assert self.sock is not None
                await self.sock.send_multipart([wire.UPPER, header, body])
                sent = True
                return await future
            except asyncio.CancelledError:
                if sent and not self.closed:
                    self._send_cancel(method, okey, seq)
                raise
            finally:
                del self.pending[seq]
                self.last_used = self.pool._clock()
        finally:
            self.slots.release()

    def _send_cancel(self, method: str, okey: Any, seq: int) -> None:
        # Best effort, without waiting: the caller is already leaving.
        assert self.sock is not None
        header = wire.encode_header(wire.MsgType.CANCEL, method, okey, seq)
        body = wire.encode_body(wire.CANCEL_META, None)
        fut = cast(
            "asyncio.Future[Any]",
            self.sock.send_multipart([wire.UPPER, header, body], flags=zmq.DONTWAIT),
        )
        if fut.done() and fut.exception() is not None:
            log.debug("could not send cancel of %s#%d to %s", method, seq, self.address)


class AgentRPCPool(AsyncResource):
    """Connections to many agents: one DEALER per address, one ``zmq`` context for all.

    ``async with AgentRPCPool(...) as pool`` opens it; :meth:`peer` gives a handle on one agent.
    ``call_timeout`` is the default deadline of a call (retries included), ``connect_timeout``
    bounds the handshake, ``idle_timeout`` evicts connections unused that long (checked every
    ``idle_check_interval`` seconds). ``keypair`` (the manager's) with a per-agent public key
    turns on CurveZMQ. ``policy_factory(address)`` returns the resilience policy applied to each
    call to that agent, built once per address and kept across reconnects (default
    :func:`~.policy.agent_policy`: retry unreachable connects, then a circuit breaker; ``None``
    for no policy).
    """

    def __init__(
        self,
        *,
        call_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        idle_timeout: float = 300.0,
        idle_check_interval: float | None = None,
        max_in_flight: int = 256,
        tcp_keepalive: int = 60,
        keypair: CurveKeyPair | None = None,
        zap_domain: str = "local",
        policy_factory: Callable[[str], Policy] | None = agent_policy,
        metrics: AgentRPCMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("call_timeout", call_timeout),
            ("connect_timeout", connect_timeout),
            ("idle_timeout", idle_timeout),
        ):
            if not value > 0:
                raise AgentInvalidArgument(f"{name} must be > 0, got {value!r}")
        if max_in_flight < 1:
            raise AgentInvalidArgument(f"max_in_flight must be >= 1, got {max_in_flight!r}")
        self._call_timeout = call_timeout
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._idle_check_interval = (
            idle_check_interval if idle_check_interval is not None else min(30.0, idle_timeout)
        )
        self._max_in_flight = max_in_flight
        self._hwm = max(1000, 2 * max_in_flight)
        self._keepalive = tcp_keepalive
        self._keypair = keypair
        self._zap_domain = zap_domain
        self._policy_factory = policy_factory
        self._policies: dict[str, Policy] = {}
        self._metrics = metrics if metrics is not None else AgentRPCMetrics.default()
        self._clock = clock
        self._conns: dict[str, _Connection] = {}
        self._opening: dict[str, asyncio.Future[_Connection]] = {}
        self._ctx: zmq.asyncio.Context | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._state = "new"
        self._connects = self._connect_failures = self._evictions = self._disconnects = 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the zmq context and start the idle-eviction loop; idempotent."""
        if self._state == "open":
            return
        if self._state == "closed":
            raise AgentInvalidArgument("this AgentRPCPool was closed; make a new one")
        self._ctx = zmq.asyncio.Context()
        ready = asyncio.Event()
        self._runner = asyncio.create_task(self._run(ready), name="agent-rpc-pool")
        await ready.wait()
        self._state = "open"

    async def _run(self, ready: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            evictor = tg.create_task(self._evict_loop())
            ready.set()
            await self._stop.wait()
            for conn in list(self._conns.values()):
                conn.close(AgentPoolClosed(f"pool closed (agent at {conn.address})"), "closed")
            evictor.cancel()

    async def aclose(self) -> None:
        """Fail calls in flight, close every socket and the context; idempotent.

        Cancelling ``aclose`` still leaves no socket open: the sockets are closed before the
        first ``await``.
        """
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        for conn in list(self._conns.values()):
            conn.close(AgentPoolClosed(f"pool closed (agent at {conn.address})"), "closed")
        self._stop.set()
        try:
            if self._runner is not None:
                await asyncio.wait([self._runner])
                if not self._runner.cancelled() and self._runner.exception() is not None:
                    raise self._runner.exception()  # type: ignore[misc]
        finally:
            self._runner = None
            self._tg = None
            if self._ctx is not None:
                self._ctx.destroy(linger=0)
                self._ctx = None

    def _check_open(self) -> None:
        if self._state != "open":
            raise AgentPoolClosed(f"AgentRPCPool is {self._state}, not open")

    # -- connections --------------------------------------------------------------------------

    async def _connection(self, address: str, server_key: bytes | None) -> _Connection:
        self._check_open()
        opening = self._opening.get(address)
        if opening is not None:
            return await asyncio.shield(opening)  # shared: one waiter's cancel must not abort it
        conn = self._conns.get(address)
        if conn is not None and not conn.closed:
            if conn.server_key == server_key:
                return conn
            conn.close(AgentUnreachable(f"agent at {address} changed its public key"), "closed")
        loop = asyncio.get_running_loop()
        shared: asyncio.Future[_Connection] = loop.create_future()
        self._opening[address] = shared
        conn = _Connection(self, address, server_key)
        self._conns[address] = conn
        try:
            await conn.open(self._connect_timeout)
        except BaseException as exc:
            if not shared.done():
                if isinstance(exc, asyncio.CancelledError):
                    shared.set_exception(
                        AgentUnreachable(f"connect to agent at {address} was cancelled")
                    )
                else:
                    shared.set_exception(exc)
                shared.exception()
            raise
        finally:
            if self._opening.get(address) is shared:
                del self._opening[address]
        self._connects += 1
        shared.set_result(conn)
        return conn

    def _forget(self, conn: _Connection, kind: str) -> None:
        if self._conns.get(conn.address) is conn:
            del self._conns[conn.address]
        if kind == "failed":
            self._connect_failures += 1
        elif kind == "lost":
            self._disconnects += 1
        elif kind == "evicted":
            self._evictions += 1

    def evict_idle(self) -> int:
        """Close connections idle for ``idle_timeout`` with no call in flight; return how many."""
        now = self._clock()
        count = 0
        for conn in list(self._conns.values()):
            if (
                conn.ready.done()
                and not conn.pending
                and not conn.waiting
                and now - conn.last_used >= self._idle_timeout
            ):
                reason = AgentUnreachable(f"connection to {conn.address} evicted as idle")
                conn.close(reason, "evicted")
                count += 1
        return count

    async def _evict_loop(self) -> None:
        while True:
            await asyncio.sleep(self._idle_check_interval)
            self.evict_idle()

    def statistics(self) -> AgentPoolStatistics:
        """A snapshot of connections, calls in flight and counters."""
        conns = list(self._conns.values())
        return AgentPoolStatistics(
            connections=sum(1 for c in conns if c.ready.done() and not c.closed),
            in_flight=sum(len(c.pending) for c in conns),
            waiting=sum(c.waiting for c in conns),
            connects=self._connects,
            connect_failures=self._connect_failures,
            evictions=self._evictions,
            disconnects=self._disconnects,
        )

    def policy(self, address: str) -> Policy | None:
        """The resilience policy guarding calls to ``address`` (``None`` without a factory)."""
        if self._policy_factory is None:
            return None
        policy = self._policies.get(address)
        if policy is None:
            policy = self._policies[address] = self._policy_factory(address)
        return policy

    # -- calls --------------------------------------------------------------------------------

    def peer(self, address: str, *, public_key: bytes | str | None = None) -> AgentPeer:
        """A handle on the agent at ``address`` (``tcp://host:port``); cheap, no I/O."""
        return AgentPeer(self, address, public_key=public_key)

    async def invoke(
        self,
        address: str,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        public_key: bytes | None = None,
        timeout: float | object | None = _NO_TIMEOUT,  # noqa: ASYNC109 (sent to the agent)
        order_key: str = "",
    ) -> Any:
        """Call ``method(*args, **kwargs)`` on the agent and return its result.

        Raises an :class:`~.exceptions.AgentRPCError`. Cancelling the caller sends callosum's
        cancel message to the agent and leaves no call in flight.
        """
        self._check_open()
        deadline = self._call_timeout if timeout is _NO_TIMEOUT else timeout
        if deadline is not None and not isinstance(deadline, int | float):
            raise AgentInvalidArgument(f"timeout must be seconds or None, got {deadline!r}")
        loop = asyncio.get_running_loop()
        when = None if deadline is None else loop.time() + deadline
        bundle = ContextBundle.capture()
        body: dict[str, Any] = {"args": tuple(args), "kwargs": dict(kwargs or {})}
        if bundle.request_id is not None:
            body["request_id"] = bundle.request_id
        payload = wire.pack_payload(body)
        policy = self.policy(address)
        clock = self._clock
        started = clock()
        outcome = "ok"
        try:
            if policy is None:
                return await self._attempt(
                    address, public_key, method, order_key, payload, bundle, when
                )
            return await policy.call(
                self._attempt, address, public_key, method, order_key, payload, bundle, when
            )
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except BaseException as exc:
            mapped = self._map_policy_error(address, exc)
            outcome = type(mapped).__name__
            if mapped is exc:
                raise
            raise mapped from exc
        finally:
            self._metrics.observe(method, outcome, clock() - started)

    def _map_policy_error(self, address: str, exc: BaseException) -> BaseException:
        if isinstance(exc, BreakerOpen):
            return AgentCircuitOpen(
                f"circuit breaker of agent at {address} is open: {exc}",
                data={"address": address},
                retry_after=exc.retry_after,
            )
        return exc

    async def _attempt(
        self,
        address: str,
        public_key: bytes | None,
        method: str,
        okey: str,
        payload: bytes,
        bundle: ContextBundle,
        when: float | None,
    ) -> Any:
        # The deadline is applied per attempt, inside the policy, so that the breaker counts a
        # timed-out call as a failure (an outer timeout would look like a cancellation to it).
        try:
            async with asyncio.timeout_at(when) as scope:
                conn = await self._connection(address, public_key)
                ctx = bundle.to_dict()
                if when is not None:
                    ctx["deadline"] = max(0.0, when - asyncio.get_running_loop().time())
                header, raw_body = await conn.call(method, okey, payload, ctx)
        except TimeoutError as exc:
            if isinstance(exc, AgentRPCError) or not scope.expired():
                raise
            raise AgentCallTimeout(
                f"{method} on agent at {address} got no answer within its deadline",
                data={"address": address, "method": method},
            ) from exc
        return _decode_reply(address, method, header, raw_body)


def _decode_reply(address: str, method: str, header: dict[str, Any], raw_body: bytes) -> Any:
    meta, body = wire.decode_body(raw_body)
    kind = header.get("type")
    if kind == wire.MsgType.RESULT:
        return None if body is None else wire.unpack_payload(body)
    if kind in (wire.MsgType.FAILURE, wire.MsgType.ERROR):
        name, rep, tb = wire.decode_error_meta(meta)
        data: dict[str, Any] = {
            "address": address,
            "method": method,
            "remote_type": name,
            "remote_repr": rep,
            "remote_traceback": tb,
            "internal": kind == wire.MsgType.ERROR,
        }
        if isinstance(body, bytes) and body:
            try:
                extra = wire.unpack_payload(body)
            except AgentProtocolError:
                extra = None
            if isinstance(extra, dict) and isinstance(extra.get("error_code"), str):
                data["remote_error_code"] = extra["error_code"]
        cls = AgentMethodNotFound if name == "AgentMethodNotFound" else AgentRemoteError
        return _raise(cls(f"{method} on agent at {address} raised {rep}", data=data))
    if kind == wire.MsgType.CANCELLED:
        raise AgentCallCancelled(
            f"agent at {address} cancelled {method}", data={"address": address, "method": method}
        )
    raise AgentProtocolError(f"unexpected reply type {kind!r} for {method} from {address}")


def _raise(exc: BaseException) -> Any:
    raise exc


class AgentPeer:
    """A handle on one agent: ``await peer.invoke("method", args, kwargs)`` or ``peer.call.x()``."""

    __slots__ = ("_pool", "address", "call", "public_key")

    def __init__(
        self, pool: AgentRPCPool, address: str, *, public_key: bytes | str | None = None
    ) -> None:
        if not address.startswith(("tcp://", "ipc://", "inproc://")):
            raise AgentInvalidArgument(
                f"agent address must look like tcp://host:port, got {address!r}",
                data={"field": "address"},
            )
        self._pool = pool
        self.address = address
        self.public_key = None if public_key is None else z85_key(public_key, field="public_key")
        if self.public_key is not None and pool._keypair is None:
            raise AgentInvalidArgument(
                "an agent public key needs the pool's keypair (CurveZMQ)", data={"field": "keypair"}
            )
        self.call = _CallStub(self)

    async def invoke(
        self,
        method: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        timeout: float | object | None = _NO_TIMEOUT,  # noqa: ASYNC109 (sent to the agent)
        order_key: str = "",
    ) -> Any:
        """Call ``method`` on this agent (see :meth:`AgentRPCPool.invoke`)."""
        return await self._pool.invoke(
            self.address,
            method,
            args,
            kwargs,
            public_key=self.public_key,
            timeout=timeout,
            order_key=order_key,
        )


class _CallStub:
    """``peer.call.method(*args, **kwargs)``, as upstream's ``PeerInvoker.call``."""

    __slots__ = ("_peer",)

    def __init__(self, peer: AgentPeer) -> None:
        self._peer = peer

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        peer = self._peer

        async def _invoke(*args: Any, **kwargs: Any) -> Any:
            return await peer.invoke(name, args, kwargs)

        return _invoke
