"""Fixtures of the agent RPC tests: a private metrics registry, a server and a pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from ai.backend.common.clients.agent import AgentRPCMetrics, AgentRPCPool, AgentRPCServer
from ai.backend.common.contexts import current_request_id, current_traceparent, current_user


@pytest.fixture
def metrics() -> AgentRPCMetrics:
    """Metrics on a private registry, so pools of different tests never collide."""
    return AgentRPCMetrics(CollectorRegistry())


def echo_handlers(server: AgentRPCServer) -> None:
    """Register the handlers the tests call: echo, fail, context, sleep."""

    @server.register("echo")
    async def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"args": list(args), "kwargs": kwargs}

    @server.register("fail")
    async def fail(message: str) -> None:
        raise ValueError(message)

    @server.register("context")
    async def context() -> dict[str, Any]:
        user = current_user()
        return {
            "request_id": current_request_id(),
            "traceparent": current_traceparent(),
            "user": None if user is None else str(user.user_id),
        }


@pytest.fixture
async def server() -> AsyncIterator[AgentRPCServer]:
    """An AgentRPCServer on a free loopback port with the echo handlers."""
    srv = AgentRPCServer("tcp://127.0.0.1:0")
    echo_handlers(srv)
    async with srv:
        yield srv


@pytest.fixture
async def pool(metrics: AgentRPCMetrics) -> AsyncIterator[AgentRPCPool]:
    """A pool with short timeouts."""
    async with AgentRPCPool(call_timeout=10.0, connect_timeout=5.0, metrics=metrics) as p:
        yield p
