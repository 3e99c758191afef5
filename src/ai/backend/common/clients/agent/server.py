"""A small callosum-compatible RPC server: dispatch method names to async handlers.

It binds a ROUTER socket, answers callosum's ``PING`` handshake, runs each call as a task
(``handler(*args, **kwargs)`` from the ``{"args", "kwargs"}`` body, as upstream's agent registry
does), applies the caller's context bundle and deadline around it, and answers with a result, a
failure (``[type name, repr, traceback]``) or a cancellation. Both our pool and a plain
``callosum.rpc.Peer`` can call it.

Guarantees:
- a handler's exception reaches the caller as :class:`~.exceptions.AgentRemoteError` with the
  remote type name and repr, and the error code of a ``BackendAIError``
  [tests/clients/agent/test_server.py::test_remote_error_carried];
- an unknown method is answered (``AgentMethodNotFound``), never ignored
  [tests/clients/agent/test_server.py::test_unknown_method];
- at most ``max_concurrency`` handlers run at once; further requests wait in ZeroMQ's queues
  [tests/clients/agent/test_server.py::test_concurrency_bounded];
- replies use ``ROUTER_MANDATORY``: a reply to a caller that has gone is counted in
  ``statistics().dropped_replies``, never silently lost
  [tests/clients/agent/test_server.py::test_reply_to_gone_caller_counted];
- with ``allowed_client_keys``, a CurveZMQ client whose key is not listed cannot call
  [tests/clients/agent/test_server.py::test_curve_rejects_unknown_client].

Limits:
- a reply to a caller whose disconnect ZeroMQ has not yet noticed is discarded with the dead
  connection, uncounted [tests/clients/agent/test_server.py::test_reply_to_gone_caller_counted];
- while ``max_concurrency`` handlers run, cancel messages wait in the queue too; each handler is
  still bounded by the deadline its caller sent
  [tests/clients/agent/test_pool.py::test_deadline_cancels_remote_handler].
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final, TypeVar, cast, overload

import zmq
import zmq.asyncio
from zmq.utils import z85

from ...aio import AsyncResource
from ...contexts import ContextBundle
from ...exception import BackendAIError
from . import _wire as wire
from .exceptions import AgentInvalidArgument, AgentProtocolError
from .types import AgentServerStatistics, CurveKeyPair, z85_key

__all__ = (
    "AgentRPCServer",
    "RPCHandler",
)

log = logging.getLogger(__name__)

RPCHandler = Callable[..., Awaitable[Any]]
"""An RPC handler: ``async def handler(*args, **kwargs) -> result``."""

H = TypeVar("H", bound=RPCHandler)

_ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"


class AgentRPCServer(AsyncResource):
    """Serve RPC handlers on ``address`` (``tcp://host:port``; port ``*`` or ``0`` picks one).

    ``keypair`` turns on CurveZMQ (this server's keys); ``allowed_client_keys`` then limits
    callers to those public keys (``None`` accepts any CURVE client).
    """

    def __init__(
        self,
        address: str,
        *,
        handlers: Mapping[str, RPCHandler] | None = None,
        keypair: CurveKeyPair | None = None,
        allowed_client_keys: Collection[bytes | str] | None = None,
        zap_domain: str = "local",
        max_concurrency: int = 100,
    ) -> None:
        if max_concurrency < 1:
            raise AgentInvalidArgument(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        if allowed_client_keys is not None and keypair is None:
            raise AgentInvalidArgument("allowed_client_keys needs a server keypair (CurveZMQ)")
        if address.startswith("tcp://") and address.endswith(":0"):
            address = address[:-2] + ":*"
        self._bind_address = address
        self._address: str | None = None
        self._handlers: dict[str, RPCHandler] = dict(handlers or {})
        self._keypair = keypair
        self._allowed = (
            None
            if allowed_client_keys is None
            else frozenset(z85_key(k, field="allowed_client_keys") for k in allowed_client_keys)
        )
        self._zap_domain = zap_domain
        self._max_concurrency = max_concurrency
        self._ctx: zmq.asyncio.Context | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self._zap: zmq.asyncio.Socket | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._calls: dict[tuple[bytes, int], asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(max_concurrency)
        self._state = "new"
        self._handled = self._failed = self._cancelled = self._dropped = 0

    # -- handlers -----------------------------------------------------------------------------

    @overload
    def register(self, name: str) -> Callable[[H], H]: ...

    @overload
    def register(self, name: str, handler: H) -> H: ...

    def register(self, name: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Register ``handler`` for method ``name``; without a handler, return a decorator."""
        if handler is None:

            def decorate(fn: H) -> H:
                self._handlers[name] = fn
                return fn

            return decorate
        self._handlers[name] = handler
        return handler

    @property
    def address(self) -> str:
        """The bound endpoint (with the real port when a wildcard was given)."""
        if self._address is None:
            raise AgentInvalidArgument("AgentRPCServer is not bound yet")
        return self._address

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Bind the socket and start serving; idempotent."""
        if self._state == "open":
            return
        if self._state == "closed":
            raise AgentInvalidArgument("this AgentRPCServer was closed; make a new one")
        ctx = self._ctx = zmq.asyncio.Context()
        try:
            if self._keypair is not None:
                zap = self._zap = ctx.socket(zmq.REP)
                zap.linger = 0
                zap.bind(_ZAP_ENDPOINT)
            sock = self._sock = ctx.socket(zmq.ROUTER)
            sock.linger = 0
            sock.router_mandatory = 1
            sock.sndhwm = sock.rcvhwm = max(1000, 2 * self._max_concurrency)
            if self._keypair is not None:
                sock.curve_server = 1
                sock.curve_secretkey = self._keypair.secret_key
                sock.curve_publickey = self._keypair.public_key
                sock.zap_domain = self._zap_domain.encode()
            sock.bind(self._bind_address)
            self._address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            self._release()
            raise AgentInvalidArgument(
                f"cannot bind agent RPC server to {self._bind_address}: {exc}",
                data={"address": self._bind_address},
            ) from exc
        ready = asyncio.Event()
        self._runner = asyncio.create_task(
            self._run(ready), name=f"agent-rpc-server-{self._address}"
        )
        await ready.wait()
        self._state = "open"

    async def _run(self, ready: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            loops = [tg.create_task(self._recv_loop(tg))]
            if self._zap is not None:
                loops.append(tg.create_task(self._zap_loop(self._zap)))
            ready.set()
            await self._stop.wait()
            # Stop intake first, then cancel the calls still running (each answers CANCELLED).
            for task in loops:
                task.cancel()
            for task in list(self._calls.values()):
                task.cancel()

    async def aclose(self) -> None:
        """Stop reading, cancel running handlers (their callers get a cancellation), unbind."""
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        self._stop.set()
        try:
            if self._runner is not None:
                await asyncio.wait([self._runner])
                if not self._runner.cancelled() and self._runner.exception() is not None:
                    raise self._runner.exception()  # type: ignore[misc]
        finally:
            self._runner = None
            self._release()

    def _release(self) -> None:
        for sock in (self._sock, self._zap):
            if sock is not None:
                sock.close(linger=0)
        self._sock = self._zap = None
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    def statistics(self) -> AgentServerStatistics:
        """Handlers running and counters of answered, failed, cancelled calls and lost replies."""
        return AgentServerStatistics(
            in_flight=len(self._calls),
            handled=self._handled,
            failed=self._failed,
            cancelled=self._cancelled,
            dropped_replies=self._dropped,
        )

    # -- serving ------------------------------------------------------------------------------

    async def _recv_loop(self, tg: asyncio.TaskGroup) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            await self._slots.acquire()
            try:
                frames = await sock.recv_multipart()
            except BaseException:
                self._slots.release()
                raise
            if not self._dispatch(tg, frames):
                self._slots.release()

    def _dispatch(self, tg: asyncio.TaskGroup, frames: list[bytes]) -> bool:
        """Handle one message; True when a call task took over the slot."""
        if len(frames) != 4:
            return False
        peer, kind, raw_header, raw_body = frames
        if kind == wire.PING:
            self._send([peer, wire.PONG, raw_header, raw_body])
            return False
        if kind != wire.UPPER:
            return False
        try:
            header = wire.decode_header(raw_header)
        except AgentProtocolError:
            log.warning("dropping a malformed RPC message")
            return False
        msgtype = header.get("type")
        key = (peer, header["seq"])
        if msgtype == wire.MsgType.FUNCTION:
            if key in self._calls:
                return False  # a duplicate of a running call
            self._calls[key] = tg.create_task(self._serve(peer, header, raw_body))
            return True
        if msgtype == wire.MsgType.CANCEL:
            task = self._calls.get(key)
            if task is not None:
                task.cancel()
        return False

    async def _serve(self, peer: bytes, header: dict[str, Any], raw_body: bytes) -> None:
        key = (peer, header["seq"])
        method = str(header.get("meth"))
        try:
            reply = await self._execute(method, header, raw_body)
        except asyncio.CancelledError:
            self._cancelled += 1
            self._reply(peer, header, wire.MsgType.CANCELLED, wire.CANCEL_META, None)
            raise
        finally:
            self._calls.pop(key, None)
            self._slots.release()
        self._handled += 1
        self._reply(peer, header, *reply)

    async def _execute(
        self, method: str, header: dict[str, Any], raw_body: bytes
    ) -> tuple[wire.MsgType, bytes, bytes | None]:
        handler = self._handlers.get(method)
        if handler is None:
            self._failed += 1
            return (
                wire.MsgType.ERROR,
                wire.encode_error_meta(
                    "AgentMethodNotFound", f"AgentMethodNotFound({method!r})", ""
                ),
                None,
            )
        try:
            _meta, body = wire.decode_body(raw_body)
            payload = None if body is None else wire.unpack_payload(body)
            args, kwargs = _split_payload(method, payload)
            raw_ctx = header.get("ctx")
            bundle = ContextBundle.from_dict(raw_ctx) if isinstance(raw_ctx, dict) else None
            deadline = raw_ctx.get("deadline") if isinstance(raw_ctx, dict) else None
            if deadline is not None and not isinstance(deadline, int | float):
                deadline = None
        except BackendAIError as exc:
            self._failed += 1
            return _failure(wire.MsgType.ERROR, exc)
        try:
            async with asyncio.timeout(deadline):
                if bundle is None:
                    result = await handler(*args, **kwargs)
                else:
                    with bundle.applied():
                        result = await handler(*args, **kwargs)
            return wire.MsgType.RESULT, wire.RESULT_META, wire.pack_payload(result)
        except TimeoutError as exc:
            if deadline is None:
                self._failed += 1
                return _failure(wire.MsgType.FAILURE, exc)
            self._cancelled += 1
            return wire.MsgType.CANCELLED, wire.CANCEL_META, None
        except Exception as exc:
            self._failed += 1
            return _failure(wire.MsgType.FAILURE, exc)

    def _reply(
        self,
        peer: bytes,
        request: dict[str, Any],
        msgtype: wire.MsgType,
        meta: bytes,
        body: bytes | None,
    ) -> None:
        header = wire.encode_header(msgtype, request["meth"], request.get("okey"), request["seq"])
        self._send([peer, wire.UPPER, header, wire.encode_body(meta, body)])

    def _send(self, frames: list[bytes]) -> None:
        sock = self._sock
        if sock is None or sock.closed:
            self._dropped += 1
            return
        # Never block: ROUTER_MANDATORY turns an unroutable or full peer into an error here
        # (and the in-flight bound keeps a live caller's queue below the high-water mark).
        fut = cast("asyncio.Future[Any]", sock.send_multipart(frames, flags=zmq.DONTWAIT))
        if fut.done() and fut.exception() is not None:
            self._dropped += 1
            log.debug("dropped an RPC reply: %s", fut.exception())

    async def _zap_loop(self, zap: zmq.asyncio.Socket) -> None:
        # ZAP (RFC 27): version, request id, domain, address, identity, mechanism, credentials.
        while True:
            frames = await zap.recv_multipart()
            if len(frames) < 6:
                continue
            version, request_id, _domain, _addr, _identity, mechanism = frames[:6]
            ok = mechanism == b"CURVE" and len(frames) == 7
            user = b""
            if ok and self._allowed is not None:
                client_key = z85.encode(frames[6])
                ok = client_key in self._allowed
                user = client_key
            status, text = (b"200", b"OK") if ok else (b"400", b"client key not allowed")
            await zap.send_multipart([version, request_id, status, text, user, b""])


def _split_payload(method: str, payload: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if payload is None:
        return (), {}
    if not isinstance(payload, dict):
        raise AgentProtocolError(f"body of {method} is not an args/kwargs map")
    args = payload.get("args", ())
    kwargs = payload.get("kwargs", {})
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        raise AgentProtocolError(f"body of {method} has malformed args or kwargs")
    return tuple(args), {str(k): v for k, v in kwargs.items()}


def _failure(msgtype: wire.MsgType, exc: BaseException) -> tuple[wire.MsgType, bytes, bytes | None]:
    tb = "".join(traceback.format_exception(exc))
    meta = wire.encode_error_meta(type(exc).__name__, repr(exc), tb)
    extra = None
    if isinstance(exc, BackendAIError):
        extra = wire.pack_payload({"error_code": str(exc.error_code()), "msg": str(exc)})
    return msgtype, meta, extra
