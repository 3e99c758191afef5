"""Proof: two candidate processes, exactly one leader; SIGKILL the leader, the other takes over
within one lease period and the two terms never overlap."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from typing import Any

import pytest

from tests._helpers import until

TTL = 2.0

_CANDIDATE = r"""
import asyncio, json, sys, time
from ai.backend.common.clients.etcd import EtcdClient
from ai.backend.common.clients.valkey import ValkeyClient, ValkeyTarget
from ai.backend.common.leader import EtcdLeaderElection, RedisLeaderElection

backend, addr, role, server_id, ttl = sys.argv[1:6]

def emit(**fields):
    print(json.dumps(fields), flush=True)

async def main():
    if backend == "etcd":
        client = EtcdClient(addr, "proof")
        make = lambda: EtcdLeaderElection(client, server_id, name=role, ttl=float(ttl))
    else:
        client = ValkeyClient(ValkeyTarget.from_url(addr))
        make = lambda: RedisLeaderElection(client, server_id, name=role, ttl=float(ttl))
    async with client:
        election = make()
        election.add_observer(lambda c: emit(
            event="leader" if c.is_leader else "follower", at=time.monotonic(),
            valid_until=c.valid_until))
        async with election:
            emit(event="ready", at=time.monotonic())
            last = None
            while True:
                if election.valid_until != last:
                    last = election.valid_until
                    emit(event="valid", until=last)
                await asyncio.sleep(0.02)

asyncio.run(main())
"""


class Candidate:
    """One candidate process and what it reported."""

    def __init__(self, server_id: str, proc: asyncio.subprocess.Process) -> None:
        self.server_id = server_id
        self.proc = proc
        self.events: list[dict[str, Any]] = []

    async def read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.events.append(json.loads(line))

    def led(self) -> bool:
        return any(e["event"] == "leader" for e in self.events)

    def last_valid_until(self) -> float:
        return max((float(e["until"]) for e in self.events if e["event"] == "valid"), default=0.0)

    def leader_at(self) -> float:
        return next(float(e["at"]) for e in self.events if e["event"] == "leader")


async def _spawn(backend: str, addr: str, role: str, server_id: str) -> Candidate:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CANDIDATE,
        backend,
        addr,
        role,
        server_id,
        str(TTL),
        stdout=asyncio.subprocess.PIPE,
    )
    return Candidate(server_id, proc)


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("etcd", marks=pytest.mark.etcd), "redis"])
async def test_killed_leader_hands_over_within_one_lease(
    backend: str, request: pytest.FixtureRequest
) -> None:
    fixture = "etcd_endpoint" if backend == "etcd" else "redis_url"
    addr: str = request.getfixturevalue(fixture)
    role = f"proof-{uuid.uuid4().hex[:6]}"
    cands = [await _spawn(backend, addr, role, f"p{i}") for i in range(2)]
    try:
        async with asyncio.TaskGroup() as tg:
            readers = [tg.create_task(c.read()) for c in cands]
            await until(lambda: any(c.led() for c in cands), 20, "a first leader")
            # Over more than a lease period, exactly one of them leads.
            await asyncio.sleep(TTL * 1.5)
            assert [c.led() for c in cands].count(True) == 1
            leader = next(c for c in cands if c.led())
            other = next(c for c in cands if c is not leader)
            os.kill(leader.proc.pid, signal.SIGKILL)
            await leader.proc.wait()
            await until(other.led, TTL + 1.5, "the other candidate to take over")
            # The new term starts only after the killed leader's certainty had ended.
            assert other.leader_at() >= leader.last_valid_until() > 0
            for c in cands:
                if c.proc.returncode is None:
                    c.proc.terminate()
            for reader in readers:
                await reader
    finally:
        for c in cands:
            if c.proc.returncode is None:
                c.proc.kill()
                await c.proc.wait()
