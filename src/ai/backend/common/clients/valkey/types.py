"""Where and how to connect: :class:`ValkeyTarget` (single server, Sentinel set or Cluster)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from ai.backend.common.exception import InvalidArgument
from ai.backend.common.types import HostPortPair

from .exceptions import ValkeyConfigError

__all__ = (
    "DEFAULT_PORT",
    "DEFAULT_SENTINEL_PORT",
    "TLSOptions",
    "ValkeyClientStatistics",
    "ValkeyMode",
    "ValkeyTarget",
)

DEFAULT_PORT = 6379
"""Default port of a Valkey/Redis server."""
DEFAULT_SENTINEL_PORT = 26379
"""Default port of a sentinel."""


class ValkeyMode(enum.StrEnum):
    """How the servers of a target are organised."""

    SINGLE = "single"
    """One server (possibly with replicas the client ignores)."""
    SENTINEL = "sentinel"
    """A master found through sentinels; the client follows failovers."""
    CLUSTER = "cluster"
    """A Redis/Valkey Cluster; keys are routed by slot (logical db is always 0)."""


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """TLS to the servers (sentinels use the same settings)."""

    ca_file: str | None = None
    """CA bundle to verify the server with (system store when ``None``)."""
    cert_file: str | None = None
    """Client certificate, for servers that require one."""
    key_file: str | None = None
    """Private key of ``cert_file``."""
    verify: bool = True
    """Verify the server certificate."""
    check_hostname: bool = True
    """Check that the certificate names the host."""


def _address(value: Any, default_port: int, what: str) -> HostPortPair:
    try:
        if isinstance(value, str):
            return HostPortPair.parse(value, default_port=default_port)
        host, port = value
        return HostPortPair(host, port)
    except (InvalidArgument, TypeError, ValueError) as exc:
        raise ValkeyConfigError(f"{what}: bad address {value!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ValkeyTarget:
    """A connection target. Build one with :meth:`single`, :meth:`sentinel`, :meth:`cluster`
    or :meth:`from_url`; :meth:`with_db` gives the same servers with another logical db."""

    mode: ValkeyMode = ValkeyMode.SINGLE
    """Single server, Sentinel set or Cluster."""
    host: str = "127.0.0.1"
    """Server host (single mode)."""
    port: int = DEFAULT_PORT
    """Server port (single mode)."""
    sentinels: tuple[HostPortPair, ...] = ()
    """Sentinel addresses (sentinel mode)."""
    service_name: str | None = None
    """The master's service name known to the sentinels (sentinel mode)."""
    nodes: tuple[HostPortPair, ...] = ()
    """Startup nodes (cluster mode)."""
    db: int = 0
    """Logical database (not in cluster mode)."""
    username: str | None = None
    """ACL user of the data servers."""
    password: str | None = field(default=None, repr=False)
    """Password of the data servers (the master's in sentinel mode)."""
    sentinel_password: str | None = field(default=None, repr=False)
    """Password of the sentinels."""
    tls: TLSOptions | None = None
    """TLS settings; ``None`` for plain TCP."""
    request_timeout: float | None = 5.0
    """Seconds one request may take (blocking reads get their block time on top);
    ``None`` for no limit. Enforced with ``asyncio.timeout``, not a socket timeout."""
    connect_timeout: float = 2.0
    """Seconds to establish a connection."""
    retries: int = 1
    """Immediate retries of a command whose connection broke (a stale pooled connection
    after a server restart); further retrying is the resilience hook's job."""
    max_connections: int | None = 100
    """Most connections the client's calls use at once. A call beyond that waits for a free
    one within its own time limit (``request_timeout``), then raises ``ValkeyPoolExhausted``;
    each open subscription holds one more. ``None``: no bound."""
    client_name: str | None = None
    """``CLIENT SETNAME`` of each connection."""
    sentinel_check_interval: float = 1.0
    """Sentinel mode: how often the client asks the sentinels where the master is, and
    drops its connections when it moved."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "sentinels",
            tuple(_address(a, DEFAULT_SENTINEL_PORT, "sentinels") for a in self.sentinels),
        )
        object.__setattr__(
            self, "nodes", tuple(_address(a, DEFAULT_PORT, "nodes") for a in self.nodes)
        )
        if self.mode is ValkeyMode.SENTINEL:
            if not self.sentinels:
                raise ValkeyConfigError("sentinel target: `sentinels` is empty")
            if not self.service_name:
                raise ValkeyConfigError("sentinel target: `service_name` is required")
        if self.mode is ValkeyMode.CLUSTER:
            if not self.nodes:
                raise ValkeyConfigError("cluster target: `nodes` is empty")
            if self.db != 0:
                raise ValkeyConfigError(f"cluster target: `db` must be 0, got {self.db}")
        if self.db < 0:
            raise ValkeyConfigError(f"`db` must be >= 0, got {self.db}")
        if self.request_timeout is not None and self.request_timeout <= 0:
            raise ValkeyConfigError(f"`request_timeout` must be > 0, got {self.request_timeout}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValkeyConfigError(f"`max_connections` must be >= 1, got {self.max_connections}")
        if self.retries < 0:
            raise ValkeyConfigError(f"`retries` must be >= 0, got {self.retries}")

    @classmethod
    def single(cls, host: str = "127.0.0.1", port: int = DEFAULT_PORT, **options: Any) -> Self:
        """One server."""
        return cls(mode=ValkeyMode.SINGLE, host=host, port=port, **options)

    @classmethod
    def sentinel(
        cls,
        sentinels: Iterable[HostPortPair | tuple[str, int] | str],
        service_name: str,
        **options: Any,
    ) -> Self:
        """The master of ``service_name`` as the sentinels report it."""
        return cls(
            mode=ValkeyMode.SENTINEL,
            sentinels=tuple(sentinels),  # type: ignore[arg-type]  # coerced in __post_init__
            service_name=service_name,
            **options,
        )

    @classmethod
    def cluster(cls, nodes: Iterable[HostPortPair | tuple[str, int] | str], **options: Any) -> Self:
        """A cluster reached through any of ``nodes``."""
        return cls(mode=ValkeyMode.CLUSTER, nodes=tuple(nodes), **options)  # type: ignore[arg-type]

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Parse ``redis://[user:pass@]host[:port][/db]`` (``rediss://`` for TLS),
        ``redis+sentinel://[:pass@]h1[:p1],h2[:p2]/service[/db]?sentinel_password=..`` and
        ``redis+cluster://[:pass@]h1[:p1],h2[:p2]``; ``options`` override what the URL says."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        values: dict[str, Any] = {}
        if parts.username:
            values["username"] = unquote(parts.username)
        if parts.password:
            values["password"] = unquote(parts.password)
        if scheme in ("rediss", "valkeys") or query.get("ssl", "").lower() in ("1", "true"):
            values["tls"] = TLSOptions()
        hosts = parts.netloc.rpartition("@")[2]
        path = [p for p in parts.path.split("/") if p]
        try:
            if scheme in ("redis", "rediss", "valkey", "valkeys"):
                address = _address(hosts or "127.0.0.1", DEFAULT_PORT, "url")
                values.update(mode=ValkeyMode.SINGLE, host=address.host, port=address.port)
                if path:
                    values["db"] = int(path[0])
            elif scheme == "redis+sentinel":
                if not path:
                    raise ValkeyConfigError(f"sentinel url {url!r}: no service name in the path")
                values.update(
                    mode=ValkeyMode.SENTINEL,
                    sentinels=tuple(h for h in hosts.split(",") if h),
                    service_name=path[0],
                )
                if len(path) > 1:
                    values["db"] = int(path[1])
                if "sentinel_password" in query:
                    values["sentinel_password"] = query["sentinel_password"]
            elif scheme == "redis+cluster":
                values.update(
                    mode=ValkeyMode.CLUSTER, nodes=tuple(h for h in hosts.split(",") if h)
                )
            else:
                raise ValkeyConfigError(f"url {url!r}: unknown scheme {parts.scheme!r}")
            if "db" in query:
                values["db"] = int(query["db"])
        except ValueError as exc:
            raise ValkeyConfigError(f"url {url!r}: {exc}") from exc
        values.update(options)
        return cls(**values)

    def with_db(self, db: int) -> Self:
        """The same servers with another logical database (one per role, e.g. events on 4)."""
        return dataclasses.replace(self, db=db)

    def describe(self) -> str:
        """A one-line description without secrets (for logs and error messages)."""
        if self.mode is ValkeyMode.SENTINEL:
            where = f"sentinel {self.service_name}@" + ",".join(str(a) for a in self.sentinels)
        elif self.mode is ValkeyMode.CLUSTER:
            where = "cluster " + ",".join(str(a) for a in self.nodes)
        else:
            where = str(HostPortPair(self.host, self.port))
        return f"{where}/{self.db}" + (" (tls)" if self.tls else "")


@dataclass(frozen=True, slots=True)
class ValkeyClientStatistics:
    """A snapshot of one client's counters (for tests and metrics)."""

    calls: int
    """Server calls made through the hook (a pipeline counts once)."""
    failures: int
    """Calls that raised (timeouts included)."""
    timeouts: int
    """Calls that exceeded the request timeout."""
    connections_created: int
    """Connections opened since the client opened (reconnects show here)."""
    connections_in_use: int
    """Connections currently checked out of the pool."""
    master_changes: int = 0
    """Sentinel mode: failovers seen (the master's address changed)."""
    max_connections: int | None = None
    """The target's bound on connections in use by calls (``None``: unbounded)."""
    waiting: int = 0
    """Calls waiting for a free connection right now."""
    pool_waits: int = 0
    """Calls that had to wait for a free connection since the client opened."""
