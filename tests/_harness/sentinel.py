"""A Redis Sentinel set for failover tests: one master, one replica and three sentinels.

Guarantees: all five processes run on their own loopback ports; when `start_sentinel_set`
returns, the replica is in sync with the master and every sentinel monitors the master.
`RedisSentinelSet.failover` returns only when every sentinel reports the new master and that
server itself reports the master role.
Limits: sentinels need a few seconds to discover each other; `wait_quorum` waits for that and
`failover`/`kill_master` call it first. All methods block the calling thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

from .ports import LOOPBACK
from .process import HarnessError, wait_until
from .redis import START_TIMEOUT, RedisServer, launch, start_redis_server

SERVICE_NAME = "mymaster"
"""Name under which the sentinels monitor the master."""

DOWN_AFTER_MS = 1000
"""Milliseconds without an answer before a sentinel marks a server down."""

FAILOVER_TIMEOUT_MS = 3000
"""Sentinel ``failover-timeout``: also paces retries of a failed failover (twice this)."""

QUORUM_TIMEOUT = 30.0
"""Default seconds to wait for the sentinels to see each other and the replica."""


def _state(item: Mapping[Any, Any] | Sequence[Any]) -> dict[str, str]:
    """One entry of SENTINEL REPLICAS/SENTINELS as a dict (RESP3 map or RESP2 flat pairs)."""
    if isinstance(item, Mapping):
        return {str(k): str(v) for k, v in item.items()}
    return {str(item[i]): str(item[i + 1]) for i in range(0, len(item) - 1, 2)}


class RedisSentinelSet:
    """Master, replica and sentinels of one service; ``master`` and ``replica`` follow the roles."""

    def __init__(
        self,
        master: RedisServer,
        replica: RedisServer,
        sentinel_servers: list[RedisServer],
        service_name: str = SERVICE_NAME,
    ) -> None:
        """Wrap started servers; use `start_sentinel_set` to start them."""
        self.master = master
        """The server that currently has the master role (updated by failovers)."""
        self.replica = replica
        """The server that currently has the replica role (updated by failovers)."""
        self.sentinel_servers = sentinel_servers
        self.service_name = service_name

    def __repr__(self) -> str:
        return (
            f"<RedisSentinelSet {self.service_name} master={self.master.port} "
            f"replica={self.replica.port} sentinels={[s.port for s in self.sentinel_servers]}>"
        )

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """``(host, port)`` of each sentinel, for ``redis.asyncio.sentinel.Sentinel``."""
        return [s.address for s in self.sentinel_servers]

    @property
    def servers(self) -> tuple[RedisServer, RedisServer]:
        """The two data servers, current master first."""
        return self.master, self.replica

    def server_at(self, address: tuple[str, int]) -> RedisServer:
        """The data server listening at ``address``."""
        for server in (self.master, self.replica):
            if server.address == tuple(address):
                return server
        raise HarnessError(f"{address} is none of the servers of {self!r}")

    def _running_sentinels(self) -> Iterator[RedisServer]:
        return (s for s in self.sentinel_servers if s.is_running())

    def current_master(self) -> tuple[str, int]:
        """The master address as the first answering sentinel reports it."""
        errors: list[str] = []
        for sentinel in self._running_sentinels():
            try:
                return self._master_seen_by(sentinel)
            except redis.RedisError as exc:
                errors.append(f"{sentinel.port}: {exc}")
        raise HarnessError(f"no sentinel of {self!r} answered: {errors}")

    def _master_seen_by(self, sentinel: RedisServer) -> tuple[str, int]:
        reply = sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
        if not reply:
            raise LookupError(f"sentinel {sentinel.port} does not know {self.service_name}")
        return str(reply[0]), int(reply[1])

    def _sentinel_ready(self, sentinel: RedisServer) -> bool:
        name = self.service_name
        try:
            sentinel.command("SENTINEL", "CKQUORUM", name)
        except redis.ResponseError:
            return False
        peers = sentinel.command("SENTINEL", "SENTINELS", name)
        if len(peers) != len(self.sentinel_servers) - 1:
            return False
        replicas = [_state(r) for r in sentinel.command("SENTINEL", "REPLICAS", name)]
        good = [
            r
            for r in replicas
            if int(r["port"]) == self.replica.port
            and not {"s_down", "o_down", "disconnected"} & set(r["flags"].split(","))
        ]
        return bool(good)

    def quorum_state(self) -> str:
        """A readable summary of what each sentinel sees, for error messages."""
        lines = []
        for sentinel in self.sentinel_servers:
            try:
                ck = "OK"
                try:
                    sentinel.command("SENTINEL", "CKQUORUM", self.service_name)
                except redis.ResponseError as exc:
                    ck = str(exc)
                peers = len(sentinel.command("SENTINEL", "SENTINELS", self.service_name))
                replicas = [
                    (state["port"], state["flags"])
                    for state in map(
                        _state, sentinel.command("SENTINEL", "REPLICAS", self.service_name)
                    )
                ]
                master = self._master_seen_by(sentinel)
                lines.append(
                    f"  sentinel {sentinel.port}: master={master} ckquorum={ck!r} "
                    f"peers={peers} replicas={replicas}"
                )
            except Exception as exc:  # a summary for an error message: report, never raise
                lines.append(f"  sentinel {sentinel.port}: {exc!r}")
        return "sentinel state:\n" + "\n".join(lines)

    def wait_quorum(self, timeout: float = QUORUM_TIMEOUT) -> None:
        """Wait until every sentinel passes CKQUORUM, sees the others and sees a healthy replica."""
        wait_until(
            lambda: all(self._sentinel_ready(s) for s in self.sentinel_servers),
            timeout,
            f"the sentinels of {self!r} to reach quorum",
            interval=0.1,
            details=self.quorum_state,
        )

    def wait_master(self, address: tuple[str, int], timeout: float = QUORUM_TIMEOUT) -> RedisServer:
        """Wait until all running sentinels report ``address`` as master and it has that role."""
        server = self.server_at(address)

        def settled() -> bool:
            seen = {self._master_seen_by(s) for s in self._running_sentinels()}
            return seen == {server.address} and server.role() == "master"

        wait_until(
            settled,
            timeout,
            f"{server!r} to become the master of {self.service_name}",
            interval=0.1,
            details=self.quorum_state,
        )
        if server is not self.master:
            self.master, self.replica = self.replica, self.master
        return server

    def failover(self, timeout: float = QUORUM_TIMEOUT) -> RedisServer:
        """Force a failover (SENTINEL FAILOVER) and wait for the new master; return it."""
        self.wait_quorum(timeout)
        target = self.replica
        sentinel = next(self._running_sentinels(), None)
        if sentinel is None:
            raise HarnessError(f"no sentinel of {self!r} is running")

        def accepted() -> bool:
            try:
                sentinel.command("SENTINEL", "FAILOVER", self.service_name)
            except redis.ResponseError as exc:
                if "INPROG" in str(exc):
                    return True
                raise  # NOGOODSLAVE and the like: retried until the deadline
            return True

        wait_until(accepted, timeout, f"{sentinel!r} to accept SENTINEL FAILOVER", interval=0.2)
        return self.wait_master(target.address, timeout)

    def kill_master(self, timeout: float = QUORUM_TIMEOUT) -> RedisServer:
        """Wait for quorum, then SIGKILL the current master and return it (sentinels fail over)."""
        self.wait_quorum(timeout)
        killed = self.master
        killed.kill()
        return killed

    def wait_new_master(self, timeout: float = QUORUM_TIMEOUT) -> RedisServer:
        """After `kill_master`, wait until the sentinels promoted the replica; return it."""
        return self.wait_master(self.replica.address, timeout)

    def destroy(self) -> None:
        """Stop every process and remove their directories."""
        for server in (*self.sentinel_servers, self.replica, self.master):
            with contextlib.suppress(Exception):
                server.destroy()


def sentinel_config(
    port: int,
    workdir: Path,
    master: tuple[str, int],
    *,
    service_name: str = SERVICE_NAME,
    quorum: int = 2,
    down_after_ms: int = DOWN_AFTER_MS,
    failover_timeout_ms: int = FAILOVER_TIMEOUT_MS,
) -> list[str]:
    """Config lines of a sentinel that monitors ``master`` under ``service_name``."""
    return [
        f"port {port}",
        f"bind {LOOPBACK}",
        f"dir {workdir}",
        "daemonize no",
        f"sentinel monitor {service_name} {master[0]} {master[1]} {quorum}",
        f"sentinel down-after-milliseconds {service_name} {down_after_ms}",
        f"sentinel failover-timeout {service_name} {failover_timeout_ms}",
        f"sentinel parallel-syncs {service_name} 1",
    ]


def start_sentinel_set(
    *,
    service_name: str = SERVICE_NAME,
    sentinel_count: int = 3,
    down_after_ms: int = DOWN_AFTER_MS,
    failover_timeout_ms: int = FAILOVER_TIMEOUT_MS,
    timeout: float = START_TIMEOUT,
) -> RedisSentinelSet:
    """Start master, replica (in sync) and sentinels; the caller must `destroy` the set."""
    started: list[RedisServer] = []
    try:
        master = start_redis_server(name="sentinel-master", timeout=timeout)
        started.append(master)
        replica = start_redis_server(
            name="sentinel-replica", replicaof=master.address, timeout=timeout
        )
        started.append(replica)

        def in_sync() -> bool:
            info = replica.client().info("replication")
            return info.get("master_link_status") == "up"

        wait_until(in_sync, timeout, f"{replica!r} to sync with {master!r}")
        # The sentinels start after the sync so that their first INFO already lists the replica.
        sentinels: list[RedisServer] = []
        for index in range(sentinel_count):

            def build(port: int, workdir: Path) -> list[str]:
                return sentinel_config(
                    port,
                    workdir,
                    master.address,
                    service_name=service_name,
                    quorum=sentinel_count // 2 + 1,
                    down_after_ms=down_after_ms,
                    failover_timeout_ms=failover_timeout_ms,
                )

            sentinel = launch(f"sentinel-{index}", build, sentinel=True, timeout=timeout)
            started.append(sentinel)
            sentinels.append(sentinel)
        return RedisSentinelSet(master, replica, sentinels, service_name)
    except BaseException:
        for server in reversed(started):
            with contextlib.suppress(Exception):
                server.destroy()
        raise


__all__ = (
    "DOWN_AFTER_MS",
    "FAILOVER_TIMEOUT_MS",
    "SERVICE_NAME",
    "RedisSentinelSet",
    "sentinel_config",
    "start_sentinel_set",
)
