"""ValkeyClient on a real three-node Redis Cluster (slots routed by redis-py's cluster client)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from ai.backend.common.clients.valkey import (
    ValkeyClient,
    ValkeyConfigError,
    ValkeyMode,
    ValkeyStreamClient,
    ValkeyTarget,
)
from ai.backend.common.message_queue import QueueConfig, QueueConfigError
from ai.backend.common.message_queue.redis import RedisMessageQueue
from tests._harness.plugin import RedisServerFactory
from tests._harness.ports import free_port
from tests._harness.redis import RedisServer

SLOTS = ((0, 5460), (5461, 10922), (10923, 16383))


def _state(node: RedisServer) -> str:
    info: Any = node.command("CLUSTER", "INFO")
    if isinstance(info, dict):
        return str(info.get("cluster_state"))
    for line in str(info).splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def start_cluster(factory: RedisServerFactory) -> list[RedisServer]:
    """Three masters owning a third of the slots each, introduced to each other."""
    nodes, bus_ports = [], []
    for i in range(3):
        # the bus port defaults to port + 10000, too high for the free ports handed out
        bus_ports.append(free_port())
        config = [
            "cluster-enabled yes",
            "cluster-node-timeout 2000",
            f"cluster-port {bus_ports[-1]}",
        ]
        nodes.append(factory(name=f"cluster-{i}", extra_config=config))
    for node, (first, last) in zip(nodes, SLOTS, strict=True):
        node.command("CLUSTER", "ADDSLOTSRANGE", first, last)
    for node, bus_port in zip(nodes[1:], bus_ports[1:], strict=True):
        nodes[0].command("CLUSTER", "MEET", node.host, node.port, bus_port)
    deadline = time.monotonic() + 30
    while not all(_state(n) == "ok" for n in nodes):
        if time.monotonic() > deadline:
            raise AssertionError(f"cluster not ok: {[_state(n) for n in nodes]}")
        time.sleep(0.1)
    return nodes


async def test_cluster_target(redis_server_factory: RedisServerFactory) -> None:
    nodes = await asyncio.to_thread(start_cluster, redis_server_factory)
    target = ValkeyTarget.cluster([node.address for node in nodes[:1]])
    assert target.mode is ValkeyMode.CLUSTER
    async with ValkeyClient(target) as client:
        for i in range(30):  # keys spread over every node
            await client.execute("SET", f"key-{i}", str(i))
        assert [await client.execute("GET", f"key-{i}") for i in range(30)] == [
            str(i).encode() for i in range(30)
        ]
        sizes = [await asyncio.to_thread(node.command, "DBSIZE") for node in nodes]
        assert all(size > 0 for size in sizes)  # every node got some of them
        streams = ValkeyStreamClient(client)
        assert await streams.create_group("{app}:events", "g")
        ids = await streams.add_batch("{app}:events", [{"n": "1"}, {"n": "2"}])
        reply = await streams.read_group("g", "c", {"{app}:events": ">"}, count=10)
        assert [e.id for e in reply[0][1]] == ids
        assert await client.execute_many([["SET", "x", "1"], ["GET", "x"]]) == [True, b"1"]
        with pytest.raises(ValkeyConfigError):
            await client.execute_many([b"*1\r\n$4\r\nPING\r\n"])
        # the message queue's keys span several slots: it refuses a cluster up front
        queue = RedisMessageQueue(target, QueueConfig())
        with pytest.raises(QueueConfigError, match="cluster"):
            await queue.open()
    # 120 concurrent calls on a bound of 2: they wait for a slot instead of failing
    async with ValkeyClient(dataclasses.replace(target, max_connections=2)) as bounded:
        await asyncio.gather(*(bounded.execute("INCR", f"n-{i % 30}") for i in range(120)))
        stats = bounded.statistics()
        assert (stats.failures, stats.waiting) == (0, 0)
        assert stats.pool_waits > 0
        assert sum([int(await bounded.execute("GET", f"n-{i}")) for i in range(30)]) == 120
