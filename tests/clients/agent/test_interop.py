"""Interop with callosum 1.x: a callosum server serves our pool, a callosum client calls our server.

The callosum side is configured as upstream Backend.AI configures it (``ZeroMQRPCTransport``,
msgpack serializer, ``{"args", "kwargs"}`` bodies, handlers taking the ``RPCMessage``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from callosum.auth import (
    AbstractClientAuthenticator,
    AbstractServerAuthenticator,
    AuthResult,
    Credential,
    Identity,
)
from callosum.lower.zeromq import ZeroMQAddress, ZeroMQRPCTransport
from callosum.rpc import Peer, RPCMessage, RPCUserError

from ai.backend.common.clients.agent import (
    AgentRemoteError,
    AgentRPCMetrics,
    AgentRPCPool,
    AgentRPCServer,
    CurveKeyPair,
    generate_keypair,
)
from ai.backend.common.contexts import bind_request_id, bind_traceparent, current_request_id
from tests._harness.ports import free_port

from .conftest import echo_handlers


def _packb(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=False)


class _ServerAuth(AbstractServerAuthenticator):
    def __init__(self, keys: CurveKeyPair, allowed: bytes) -> None:
        self.keys, self.allowed = keys, allowed

    async def server_identity(self) -> Identity:
        return Identity("local", self.keys.secret_key)

    async def check_client(self, creds: Credential) -> AuthResult:
        return AuthResult(creds.public_key == self.allowed, "manager")

    async def server_public_key(self) -> bytes:
        return self.keys.public_key


class _ClientAuth(AbstractClientAuthenticator):
    def __init__(self, keys: CurveKeyPair, server_public: bytes) -> None:
        self.keys, self.server_public = keys, server_public

    async def server_public_key(self) -> bytes:
        return self.server_public

    async def client_identity(self) -> Identity:
        return Identity("local", self.keys.secret_key)

    async def client_public_key(self) -> bytes:
        return self.keys.public_key


async def _echo(request: RPCMessage) -> Any:
    body: Any = request.body
    return {"args": list(body["args"]), "kwargs": dict(body["kwargs"])}


async def _fail(request: RPCMessage) -> Any:
    body: Any = request.body
    raise KeyError(body["args"][0])


@pytest.fixture
async def callosum_server() -> AsyncIterator[str]:
    """A plain callosum Peer bound on a free port, serving echo and fail like an agent."""
    address = f"tcp://127.0.0.1:{free_port()}"
    peer = Peer(
        bind=ZeroMQAddress(address),
        transport=ZeroMQRPCTransport,
        serializer=_packb,
        deserializer=_unpackb,
    )
    peer.handle_function("echo", _echo)
    peer.handle_function("fail", _fail)
    async with peer:
        yield address


async def test_our_pool_calls_callosum_server(callosum_server: str, pool: AgentRPCPool) -> None:
    peer = pool.peer(callosum_server)
    kernel = uuid.uuid4()
    with (
        bind_request_id("req-interop"),
        bind_traceparent("00-" + "a" * 32 + "-" + "b" * 16 + "-01"),
    ):
        # The context bundle rides in the header and must not disturb a callosum agent.
        result = await peer.call.echo("k1", 2, kernel_id=str(kernel), opts={"x": [1, 2]})
    assert result == {
        "args": ("k1", 2),
        "kwargs": {"kernel_id": str(kernel), "opts": {"x": (1, 2)}},
    }
    with pytest.raises(AgentRemoteError) as info:
        await peer.invoke("fail", ["missing-key"])
    assert info.value.remote_type == "KeyError"
    assert "missing-key" in info.value.remote_repr
    assert "Traceback" in info.value.remote_traceback
    assert pool.statistics().connects == 1


async def test_callosum_client_calls_our_server(server: AgentRPCServer) -> None:
    peer = Peer(
        connect=ZeroMQAddress(server.address),
        transport=ZeroMQRPCTransport,
        serializer=_packb,
        deserializer=_unpackb,
        invoke_timeout=10.0,
    )
    async with peer:
        result = await peer.invoke("echo", {"args": (1, "two"), "kwargs": {"three": 3}})
        assert result == {"args": (1, "two"), "kwargs": {"three": 3}}
        # upstream's order key is "" (str); callosum's default is b"": both are echoed back
        result = await peer.invoke("echo", {"args": (), "kwargs": {}}, order_key="")
        assert result == {"args": (), "kwargs": {}}
        with pytest.raises(RPCUserError) as info:
            await peer.invoke("fail", {"args": ("oops",), "kwargs": {}})
        assert info.value.name == "ValueError"
        assert "oops" in info.value.repr
        # A newer-upstream body with request_id at its root is accepted too.
        srv_rid = await peer.invoke("context", {"args": (), "kwargs": {}, "request_id": "r-1"})
        assert srv_rid["request_id"] is None  # only the ctx header binds the context
    assert server.statistics().handled == 4


async def test_curve_both_directions(metrics: AgentRPCMetrics) -> None:
    manager, agent = generate_keypair(), generate_keypair()
    # callosum agent with CURVE, our pool with the manager's keys
    address = f"tcp://127.0.0.1:{free_port()}"
    cpeer = Peer(
        bind=ZeroMQAddress(address),
        transport=ZeroMQRPCTransport,
        authenticator=_ServerAuth(agent, manager.public_key),
        serializer=_packb,
        deserializer=_unpackb,
    )
    cpeer.handle_function("echo", _echo)
    async with cpeer, AgentRPCPool(keypair=manager, metrics=metrics) as pool:
        peer = pool.peer(address, public_key=agent.public_key)
        assert await peer.call.echo(1) == {"args": (1,), "kwargs": {}}
    # callosum manager with CURVE, our server with the agent's keys and an allow-list
    srv = AgentRPCServer(
        "tcp://127.0.0.1:0", keypair=agent, allowed_client_keys=[manager.public_key]
    )
    echo_handlers(srv)
    async with srv:
        client = Peer(
            connect=ZeroMQAddress(srv.address),
            transport=ZeroMQRPCTransport,
            authenticator=_ClientAuth(manager, agent.public_key),
            serializer=_packb,
            deserializer=_unpackb,
            invoke_timeout=10.0,
        )
        async with client:
            result = await client.invoke("echo", {"args": ("curve",), "kwargs": {}})
        assert result == {"args": ("curve",), "kwargs": {}}


async def test_request_id_in_body_root(callosum_server: str, pool: AgentRPCPool) -> None:
    # upstream's newer agents read request_id from the body root; ours puts it there.
    seen: list[Any] = []
    address = f"tcp://127.0.0.1:{free_port()}"

    async def capture(request: RPCMessage) -> Any:
        seen.append(request.body)
        return None

    peer = Peer(
        bind=ZeroMQAddress(address),
        transport=ZeroMQRPCTransport,
        serializer=_packb,
        deserializer=_unpackb,
    )
    peer.handle_function("capture", capture)
    async with peer:
        with bind_request_id("req-body"):
            assert await pool.peer(address).call.capture(7) is None
    assert seen == [{"args": (7,), "kwargs": {}, "request_id": "req-body"}]
    assert current_request_id() is None
