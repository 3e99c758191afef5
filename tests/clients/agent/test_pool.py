"""AgentRPCPool: leak-free failed connects, reuse and eviction, bounds, deadlines, contexts."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from ai.backend.common.clients.agent import (
    AgentCallCancelled,
    AgentCallTimeout,
    AgentCircuitOpen,
    AgentConnectionLost,
    AgentInvalidArgument,
    AgentPoolClosed,
    AgentRemoteError,
    AgentRPCMetrics,
    AgentRPCPool,
    AgentRPCServer,
    AgentUnreachable,
    agent_policy,
)
from ai.backend.common.contexts import bind_request_id, bind_traceparent, bind_user
from ai.backend.common.data.user import UserData
from ai.backend.common.resilience import FakeClock, Retry
from tests._harness.ports import free_port
from tests._helpers import until


def _resources() -> tuple[int, int, int]:
    return (
        threading.active_count(),
        len(os.listdir("/proc/self/task")),
        len(os.listdir("/proc/self/fd")),
    )


async def test_failed_connects_do_not_leak(metrics: AgentRPCMetrics) -> None:
    dead = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    async with AgentRPCPool(policy_factory=None, connect_timeout=10.0, metrics=metrics) as pool:
        peer = pool.peer(dead)
        for _ in range(50):  # warm up lazily allocated resources (zmq I/O thread, reaper)
            with pytest.raises(AgentUnreachable):
                await peer.call.ping()
        before = _resources()
        for _ in range(10_000):
            with pytest.raises(AgentUnreachable):
                await peer.call.ping()
        after = _resources()
        stats = pool.statistics()
    assert stats.connect_failures == 10_050
    assert stats.connections == 0
    assert after[0] == before[0], f"Python threads {before[0]} -> {after[0]}"
    assert after[1] <= before[1] + 1, f"OS threads {before[1]} -> {after[1]}"
    assert after[2] <= before[2] + 4, f"open fds {before[2]} -> {after[2]}"


async def test_connection_reused_and_evicted(server: AgentRPCServer) -> None:
    clock = FakeClock()
    registry = CollectorRegistry()
    async with AgentRPCPool(
        idle_timeout=60.0,
        idle_check_interval=3600.0,
        clock=clock.monotonic,
        metrics=AgentRPCMetrics(registry),
    ) as pool:
        peer = pool.peer(server.address)
        for i in range(5):
            assert await peer.call.echo(i) == {"args": (i,), "kwargs": {}}
        await asyncio.gather(*(peer.call.echo(i) for i in range(20)))
        assert pool.statistics().connects == 1
        clock.advance(30.0)
        assert pool.evict_idle() == 0
        clock.advance(31.0)
        assert pool.evict_idle() == 1
        stats = pool.statistics()
        assert (stats.connections, stats.evictions) == (0, 1)
        assert await peer.call.echo() == {"args": (), "kwargs": {}}
        assert pool.statistics().connects == 2
    count = registry.get_sample_value(
        "backendai_agent_rpc_call_duration_seconds_count", {"method": "echo", "outcome": "ok"}
    )
    assert count == 26


async def test_in_flight_bounded(metrics: AgentRPCMetrics) -> None:
    release = asyncio.Event()
    running = 0
    peak = 0

    async def block() -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await release.wait()
        finally:
            running -= 1
        return "done"

    async with (
        AgentRPCServer("tcp://127.0.0.1:0", handlers={"block": block}) as srv,
        AgentRPCPool(max_in_flight=2, metrics=metrics) as pool,
    ):
        peer = pool.peer(srv.address)
        calls = [asyncio.create_task(peer.call.block()) for _ in range(5)]
        await until(lambda: pool.statistics().waiting == 3 and running == 2)
        assert pool.statistics().in_flight == 2
        release.set()
        assert await asyncio.gather(*calls) == ["done"] * 5
    assert peak == 2


def _hang_server() -> tuple[AgentRPCServer, asyncio.Event, list[str]]:
    cancelled = asyncio.Event()
    started: list[str] = []
    srv = AgentRPCServer("tcp://127.0.0.1:0")

    @srv.register("hang")
    async def hang(tag: str) -> None:
        started.append(tag)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    return srv, cancelled, started


async def test_deadline_cancels_remote_handler(pool: AgentRPCPool) -> None:
    srv, cancelled, started = _hang_server()
    async with srv:
        with pytest.raises(AgentCallTimeout) as info:
            await pool.peer(srv.address).invoke("hang", ["t"], timeout=0.2)
        assert info.value.data["method"] == "hang"
        async with asyncio.timeout(30):
            await cancelled.wait()
        await until(lambda: srv.statistics().in_flight == 0)
        assert srv.statistics().cancelled == 1
        assert started == ["t"]
    assert pool.statistics().in_flight == 0


async def test_caller_cancel_propagates(pool: AgentRPCPool) -> None:
    srv, cancelled, started = _hang_server()
    async with srv:
        # No deadline at all: only the cancel message can stop the remote handler.
        call = asyncio.create_task(pool.peer(srv.address).invoke("hang", ["c"], timeout=None))
        await until(lambda: started == ["c"])
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        async with asyncio.timeout(30):
            await cancelled.wait()
        assert pool.statistics().in_flight == 0


async def test_context_bundle_reaches_handler(server: AgentRPCServer, pool: AgentRPCPool) -> None:
    user = UserData(user_id=uuid.uuid4())
    traceparent = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    peer = pool.peer(server.address)
    with bind_request_id("req-ctx"), bind_user(user), bind_traceparent(traceparent):
        got = await peer.call.context()
    assert got == {"request_id": "req-ctx", "traceparent": traceparent, "user": str(user.user_id)}
    assert await peer.call.context() == {"request_id": None, "traceparent": None, "user": None}


async def test_server_shutdown_cancels_call(metrics: AgentRPCMetrics) -> None:
    started: list[int] = []

    async def slow() -> None:
        started.append(1)
        await asyncio.Event().wait()

    srv = AgentRPCServer("tcp://127.0.0.1:0", handlers={"slow": slow})
    await srv.open()
    try:
        async with AgentRPCPool(metrics=metrics) as pool:
            call = asyncio.create_task(pool.peer(srv.address).invoke("slow", timeout=60.0))
            await until(lambda: started == [1])
            await srv.aclose()
            async with asyncio.timeout(30):
                with pytest.raises(AgentCallCancelled):
                    await call
    finally:
        await srv.aclose()
    assert started == [1]


def test_connection_lost_not_retried() -> None:
    retry = cast(Retry, agent_policy("tcp://127.0.0.1:1").policies[0])
    assert retry.is_retryable(AgentUnreachable("refused"))
    assert not retry.is_retryable(AgentConnectionLost("dropped mid-call"))
    assert not retry.is_retryable(AgentCallTimeout("late"))
    assert not retry.is_retryable(AgentCircuitOpen("open"))
    assert not retry.is_retryable(AgentRemoteError("raised"))


async def test_invalid_arguments(pool: AgentRPCPool) -> None:
    with pytest.raises(AgentInvalidArgument):
        pool.peer("127.0.0.1:1")
    with pytest.raises(AgentInvalidArgument):
        pool.peer("tcp://127.0.0.1:1", public_key="x" * 40)
    with pytest.raises(AgentInvalidArgument):
        AgentRPCPool(call_timeout=0)
    with pytest.raises(AgentInvalidArgument):
        await pool.peer("tcp://127.0.0.1:1").invoke("x", [object()])


async def test_closed_pool_rejects_calls(server: AgentRPCServer, metrics: AgentRPCMetrics) -> None:
    pool = AgentRPCPool(metrics=metrics)
    with pytest.raises(AgentPoolClosed):
        await pool.invoke(server.address, "echo")
    async with pool:
        assert await pool.invoke(server.address, "echo", [1]) == {"args": (1,), "kwargs": {}}
    await pool.aclose()  # idempotent
    with pytest.raises(AgentPoolClosed):
        await pool.invoke(server.address, "echo")
