"""An agent process killed with SIGKILL in the middle of a call, then restarted on its address."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from ai.backend.common.clients.agent import (
    AgentCircuitOpen,
    AgentConnectionLost,
    AgentRPCMetrics,
    AgentRPCPool,
    AgentUnreachable,
    agent_policy,
)
from ai.backend.common.exception import BackendAIError
from ai.backend.common.resilience import BreakerStateName, CircuitBreaker, FakeClock, Pipeline
from tests._harness.ports import free_port
from tests._helpers import until

_MAIN = Path(__file__).with_name("_agent_main.py")
_REPO = Path(__file__).resolve().parents[3]


class _AgentProcess:
    def __init__(self, address: str) -> None:
        self.address = address
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": f"{_REPO / 'src'}{os.pathsep}{_REPO}"}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(_MAIN), self.address, stdout=asyncio.subprocess.PIPE, env=env
        )
        await self.expect("READY")

    async def expect(self, line: str) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            while True:
                got = await self.proc.stdout.readline()
                assert got, f"agent process exited before printing {line}"
                if got.decode().strip() == line:
                    return

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()


@pytest.fixture
async def agent_process() -> AsyncIterator[_AgentProcess]:
    """A killable agent subprocess on a fixed free port (killed at the end)."""
    agent = _AgentProcess(f"tcp://127.0.0.1:{free_port()}")
    try:
        yield agent
    finally:
        await agent.kill()


@pytest.mark.slow
async def test_agent_killed_mid_call(agent_process: _AgentProcess) -> None:
    clock = FakeClock(auto_advance=True)
    address = agent_process.address

    def policy(addr: str) -> Pipeline:
        return agent_policy(addr, minimum_calls=2, window_size=4, wait_in_open=30.0, clock=clock)

    await agent_process.start()
    metrics = AgentRPCMetrics(registry=None)
    async with AgentRPCPool(call_timeout=60.0, policy_factory=policy, metrics=metrics) as pool:
        peer = pool.peer(address)
        assert await peer.call.echo(1) == (1,)

        call = asyncio.create_task(peer.call.hang())
        await agent_process.expect("HANG")
        await agent_process.kill()
        # The call's own deadline is a minute away: the error must come from the dropped
        # connection, and the test only waits generously for it.
        async with asyncio.timeout(30):
            with pytest.raises(BackendAIError) as info:
                await call
        assert isinstance(info.value, AgentConnectionLost)

        breaker = cast(CircuitBreaker, cast(Pipeline, pool.policy(address)).policies[1])

        async def opened() -> bool:
            try:
                await peer.call.echo(2)
            except AgentCircuitOpen:
                return True
            except AgentUnreachable:
                pass
            return breaker.state is BreakerStateName.OPEN

        await until(opened)
        with pytest.raises(AgentCircuitOpen):
            await peer.call.echo(3)

        await agent_process.start()
        clock.advance(31.0)  # past wait_in_open: the next call is the half-open probe
        assert await peer.call.echo(4) == (4,)
        assert breaker.state is BreakerStateName.CLOSED
        assert await peer.call.echo(5) == (5,)
        stats = pool.statistics()
        assert stats.disconnects >= 1
        assert stats.in_flight == 0
