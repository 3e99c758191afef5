"""Checkers for the platform's dependencies: Redis/Valkey, etcd, HTTP endpoints, agent RPC peers."""

from __future__ import annotations

from typing import Any

from ..clients.agent import AgentPeer
from ..clients.etcd import AsyncEtcd
from ..clients.http import HTTPSessionPool
from ..clients.valkey import ValkeyClient
from .abc import HealthChecker
from .exceptions import HealthCheckFailed
from .types import ProbeKind

__all__ = (
    "AgentRPCHealthChecker",
    "EtcdHealthChecker",
    "HTTPHealthChecker",
    "ValkeyHealthChecker",
)


class ValkeyHealthChecker(HealthChecker):
    """PING, then ``ROLE``: a server that is not ``master`` is unhealthy when one is required.

    Under Sentinel the client follows the master; the role check catches the window in which
    it still talks to a demoted server (and a target that points at a replica by mistake).
    """

    def __init__(
        self,
        client: ValkeyClient,
        name: str = "redis",
        *,
        require_master: bool = True,
        kind: ProbeKind = ProbeKind.READINESS,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(name, kind=kind, timeout=timeout)
        self._client = client
        self._require_master = require_master

    async def check(self) -> dict[str, Any]:
        """PING and ROLE."""
        await self._client.ping()
        role = await self._client.role()
        if self._require_master and role != "master":
            raise HealthCheckFailed(
                f"{self.name}: server role is {role!r}, expected 'master'",
                data={"role": role},
            )
        return {"role": role}


class EtcdHealthChecker(HealthChecker):
    """Reads one key (any answer, even "absent", proves a quorum read works)."""

    def __init__(
        self,
        etcd: AsyncEtcd,
        name: str = "etcd",
        *,
        key: str = "health-check",
        kind: ProbeKind = ProbeKind.READINESS,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(name, kind=kind, timeout=timeout)
        self._etcd = etcd
        self._key = key

    async def check(self) -> dict[str, Any]:
        """A linearizable read of the key."""
        value = await self._etcd.get(self._key)
        return {"key_present": value is not None}


class HTTPHealthChecker(HealthChecker):
    """GET a URL through the session pool; any 2xx is healthy."""

    def __init__(
        self,
        pool: HTTPSessionPool,
        endpoint: str,
        path: str = "/",
        name: str = "http",
        *,
        headers: dict[str, str] | None = None,
        kind: ProbeKind = ProbeKind.READINESS,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(name, kind=kind, timeout=timeout)
        self._pool = pool
        self._endpoint = endpoint
        self._path = path
        self._headers = headers or {}

    async def check(self) -> dict[str, Any]:
        """One GET; a 4xx/5xx raises the pool's status error."""
        response = await self._pool.request(
            "GET", self._endpoint, self._path, credentials=self._headers, timeout=self.timeout
        )
        return {"status": response.status}


class AgentRPCHealthChecker(HealthChecker):
    """Calls the agent's ``ping`` RPC (upstream agents echo the message back)."""

    def __init__(
        self,
        peer: AgentPeer,
        name: str = "agent",
        *,
        method: str = "ping",
        kind: ProbeKind = ProbeKind.READINESS,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(name, kind=kind, timeout=timeout)
        self._peer = peer
        self._method = method

    async def check(self) -> dict[str, Any]:
        """One RPC round trip that must echo its argument."""
        token = "health"
        reply = await self._peer.invoke(self._method, (token,), timeout=self.timeout)
        if reply != token:
            raise HealthCheckFailed(
                f"{self.name}: {self._method} answered {reply!r}, expected {token!r}"
            )
        return {"address": self._peer.address}
