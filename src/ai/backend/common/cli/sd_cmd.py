"""``backend.ai-common sd``: list service-discovery records and print Prometheus HTTP SD JSON.

Records are read from etcd (``--etcd``, upstream's layout under ``/sorna/<namespace>/``) or,
without etcd, from Redis (``--redis``, the Redis backend's hashes).

Guarantees:
- services registered by another process are listed, by group when asked
  [tests/cli/test_sd_cmd.py::test_list_and_prometheus_from_etcd];
- ``sd prometheus`` prints the body the HTTP SD endpoint serves (``[]`` when empty)
  [tests/cli/test_sd_cmd.py::test_list_and_prometheus_from_etcd]
  [tests/cli/test_sd_cmd.py::test_prometheus_empty_is_empty_array];
- without ``--etcd`` or ``--redis`` the command fails with one line naming both
  [tests/cli/test_sd_cmd.py::test_missing_backend_is_one_line].
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import click

from ..clients.etcd import EtcdClient
from ..exception import ConfigurationError
from ..json import dump_json_str
from ..service_discovery import (
    AbstractServiceDiscovery,
    EtcdServiceDiscovery,
    RedisServiceDiscovery,
    ServiceMetadata,
    prometheus_sd_targets,
)
from .context import CLIContext, pass_cli
from .settings import DAEMON_NAME

__all__ = ("open_discovery", "sd")


@asynccontextmanager
async def open_discovery(cli: CLIContext, command: str) -> AsyncIterator[AbstractServiceDiscovery]:
    """The configured backend: etcd when given, else Redis; neither raises one clear error."""
    if cli.has_etcd:
        endpoints = cli.etcd_endpoints(command)
        async with (
            EtcdClient(
                endpoints, cli.settings.namespace, request_timeout=3.0, failover_timeout=5.0
            ) as etcd,
            EtcdServiceDiscovery(etcd) as discovery,
        ):
            yield discovery
    elif cli.has_redis:
        async with RedisServiceDiscovery(cli.redis_target(command)) as discovery:
            yield discovery
    else:
        raise ConfigurationError(
            f"`{command}` needs a service-discovery backend: give --etcd host:port (or "
            f"--redis URL), or set `etcd` / `redis` in {DAEMON_NAME}.toml",
            data={"option": "--etcd"},
        )


async def _records(cli: CLIContext, command: str, group: str | None) -> list[ServiceMetadata]:
    async with open_discovery(cli, command) as discovery:
        if group:
            return await discovery.get_service_group(group)
        return await discovery.discover()


@click.group()
def sd() -> None:
    """Service discovery: list records, Prometheus HTTP SD (needs --etcd or --redis)."""


def _row(record: ServiceMetadata, now: float) -> dict[str, Any]:
    return {
        **record.to_dict(),
        "healthy": record.is_healthy(now=now),
        "heartbeat_age": round(now - record.health_status.last_heartbeat, 3),
    }


@sd.command("list")
@click.option("--group", default=None, help="only this service group")
@pass_cli
def list_(cli: CLIContext, group: str | None) -> None:
    """List the registered services (all groups, or one)."""
    records = cli.run(_records(cli, "sd list", group))
    records.sort(key=lambda r: (r.service_group, r.display_name, str(r.id)))
    now = time.time()
    if cli.json:
        for record in records:
            cli.emit(_row(record, now))
        return
    cli.table(
        f"{len(records)} service(s)" + (f" in group {group}" if group else ""),
        ["group", "name", "id", "version", "endpoint", "prometheus", "healthy", "heartbeat"],
        [
            [
                r.service_group,
                r.display_name,
                r.id,
                r.version,
                f"{r.endpoint.protocol}://{r.endpoint.address}:{r.endpoint.port}",
                r.endpoint.prometheus_address or "-",
                "yes" if r.is_healthy(now=now) else "NO",
                f"{now - r.health_status.last_heartbeat:.0f} s ago",
            ]
            for r in records
        ],
    )


@sd.command("prometheus")
@click.option("--group", default=None, help="only this service group")
@pass_cli
def prometheus(cli: CLIContext, group: str | None) -> None:
    """Print the Prometheus HTTP SD JSON (what the SD endpoint serves; healthy targets only).

    Human mode prints the whole document (usable as a file_sd file); --json prints one target
    group per line.
    """
    records = cli.run(_records(cli, "sd prometheus", group))
    targets = prometheus_sd_targets(records)
    if cli.json:
        for target in targets:
            cli.emit(target)
        return
    click.echo(dump_json_str(targets, indent=True))
