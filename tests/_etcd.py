"""etcd pieces shared by the conftests of the etcd client, service discovery, leader and locks.

- :func:`etcd_client_factory`: new clients of one shared store, in memory (``"etcd-memory"``)
  or on the session's real etcd (``"etcd"``), for backend-parametrized fixtures;
- :func:`manual_pass_time` / :func:`real_pass_time`: let lease time pass on a manual clock
  (in small steps, so keep-alives get their turn) or on the real one;
- :func:`private_etcd`: a single-member etcd of one test alone (to kill and restart).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import pytest

from ai.backend.common.clients.etcd import (
    AsyncEtcd,
    EtcdClient,
    ManualClock,
    MemoryEtcd,
    MemoryEtcdServer,
)
from tests._harness.etcd import EtcdServer, start_etcd_server

__all__ = ("etcd_client_factory", "manual_pass_time", "private_etcd", "real_pass_time")


def etcd_client_factory(
    request: pytest.FixtureRequest,
    backend: str,
    namespace: str,
    *,
    clock: ManualClock | None = None,
) -> Callable[[], AsyncEtcd]:
    """New (unopened) clients of ``namespace`` on one store: ``"etcd-memory"`` or ``"etcd"``.

    The real etcd is fetched lazily (``etcd_endpoint``), so ``-m "not etcd"`` starts none;
    ``clock`` drives the in-memory store's leases.
    """
    if backend == "etcd":
        endpoint = request.getfixturevalue("etcd_endpoint")
        return lambda: EtcdClient(endpoint, namespace)
    if backend != "etcd-memory":
        raise ValueError(f"unknown etcd backend {backend!r}")
    server = MemoryEtcdServer(clock=clock)
    return lambda: MemoryEtcd(namespace, server=server)


def manual_pass_time(
    clock: ManualClock, *, step: float = 0.05, turns: int = 8
) -> Callable[[float], Awaitable[None]]:
    """``pass_time(seconds)``: advance ``clock`` by ``step`` at a time, letting the event loop
    run ``turns`` times after each step."""

    async def pass_time(seconds: float) -> None:
        elapsed = 0.0
        while elapsed < seconds:
            clock.advance(step)
            elapsed += step
            for _ in range(turns):
                await asyncio.sleep(0)

    return pass_time


async def real_pass_time(seconds: float) -> None:
    """Let ``seconds`` of real time pass."""
    await asyncio.sleep(seconds)


@pytest.fixture
def private_etcd() -> Iterator[EtcdServer]:
    """A single-member etcd of this test alone (it may be killed and restarted)."""
    server = start_etcd_server()
    try:
        yield server
    finally:
        server.destroy(grace=1.0)
