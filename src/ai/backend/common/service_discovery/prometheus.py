"""Prometheus HTTP service discovery (``http_sd_configs``) over any service discovery backend.

The body is upstream's shape (DESIGN.md section 3): a JSON array of
``{"targets": ["<prometheus_address>"], "labels": {...record labels, "service_id",
"service_group", "display_name", "version"}}``, status 200, ``application/json``, ``[]`` when
empty. Records whose last heartbeat is older than ``heartbeat_timeout`` or that have no
``prometheus_address`` are left out. Each group also carries ``__meta_backendai_*`` labels
(service id, group, name, version, address, port, protocol, and ``__meta_backendai_label_<k>``
per record label) for relabeling; Prometheus drops ``__meta_`` labels after relabeling.

Guarantees:
- the body has upstream's shape and ``[]`` when there is no record
  [tests/service_discovery/test_prometheus.py::test_body_shape_and_content_type];
- unhealthy records are filtered out
  [tests/service_discovery/test_prometheus.py::test_unhealthy_records_are_filtered];
- a real Prometheus discovers and scrapes the targets
  [tests/service_discovery/test_proof.py::test_real_prometheus_discovers_and_scrapes].

Limits: label names that Prometheus would reject (``app.kubernetes.io/name``) are rewritten
with ``_`` for invalid characters, since one invalid name makes Prometheus drop the whole answer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from ..json import dump_json
from ._targets import META_LABEL_PREFIX, prometheus_label_name, target_group
from .abc import AbstractServiceDiscovery
from .cache import CachedServiceDiscovery
from .exceptions import ServiceDiscoveryError
from .types import DEFAULT_HEARTBEAT_TIMEOUT, ServiceMetadata, WallClock

__all__ = (
    "META_LABEL_PREFIX",
    "make_prometheus_sd_handler",
    "prometheus_label_name",
    "prometheus_sd_targets",
)


def prometheus_sd_targets(
    records: Iterable[ServiceMetadata],
    *,
    heartbeat_timeout: float | None = DEFAULT_HEARTBEAT_TIMEOUT,
    now: float | None = None,
    meta_labels: bool = True,
) -> list[dict[str, Any]]:
    """The target groups of ``records`` (healthy ones only unless ``heartbeat_timeout`` is None)."""
    current = time.time() if now is None else now
    groups: list[dict[str, Any]] = []
    for record in records:
        if heartbeat_timeout is not None and not record.is_healthy(heartbeat_timeout, now=current):
            continue
        group = target_group(record, meta_labels=meta_labels)
        if group is not None:
            groups.append(group)
    return groups


def make_prometheus_sd_handler(
    discovery: AbstractServiceDiscovery,
    *,
    service_group: str | None = None,
    heartbeat_timeout: float | None = DEFAULT_HEARTBEAT_TIMEOUT,
    meta_labels: bool = True,
    wall_clock: WallClock = time.time,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler answering Prometheus' HTTP SD requests from ``discovery``.

    The query parameter ``service_group`` (or the ``service_group`` argument) narrows the
    answer to one group. If the backend fails, the answer is 503 with a problem body, so
    Prometheus keeps the targets it had.
    """

    async def handler(request: web.Request) -> web.Response:
        group = request.query.get("service_group") or service_group
        try:
            if isinstance(discovery, CachedServiceDiscovery):
                # Target groups rendered once per record version, kept across heartbeats.
                body = discovery.prometheus_targets(
                    group or None,
                    heartbeat_timeout=heartbeat_timeout,
                    now=wall_clock(),
                    meta_labels=meta_labels,
                )
            else:
                if group:
                    records = await discovery.get_service_group(group)
                else:
                    records = await discovery.discover()
                body = prometheus_sd_targets(
                    records,
                    heartbeat_timeout=heartbeat_timeout,
                    now=wall_clock(),
                    meta_labels=meta_labels,
                )
        except ServiceDiscoveryError as exc:
            return web.Response(
                status=exc.status_code,
                body=dump_json(exc.problem()),
                content_type="application/problem+json",
            )
        return web.Response(status=200, body=dump_json(body), content_type="application/json")

    return handler
