"""The Prometheus HTTP SD handler: upstream's body shape, health filter, relabeling labels."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ai.backend.common.clients.etcd import MemoryEtcd
from ai.backend.common.service_discovery import (
    DEFAULT_HEARTBEAT_TIMEOUT,
    AbstractServiceDiscovery,
    CachedServiceDiscovery,
    EtcdServiceDiscovery,
    MemoryServiceDiscovery,
    ServiceEndpoint,
    ServiceMetadata,
    make_prometheus_sd_handler,
    prometheus_label_name,
    prometheus_sd_targets,
)

from .conftest import make_record

Serve = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Serve a handler made for a discovery instance; returns an HTTP client of it."""
    clients: list[TestClient[Any, Any]] = []

    async def start(discovery: AbstractServiceDiscovery, **kwargs: Any) -> TestClient[Any, Any]:
        app = web.Application()
        app.router.add_get("/sd", make_prometheus_sd_handler(discovery, **kwargs))
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


async def test_body_shape_and_content_type(serve: Serve) -> None:
    async with MemoryServiceDiscovery() as sd:
        client = await serve(sd)
        empty = await client.get("/sd")
        assert empty.status == 200
        assert empty.content_type == "application/json"
        assert await empty.json() == []

        record = make_record("manager", labels={"region": "kr"})
        await sd.heartbeat(record)
        resp = await client.get("/sd")
        assert resp.status == 200
        body = await resp.json()
    assert body == [
        {
            "targets": [record.endpoint.prometheus_address],
            "labels": {
                "region": "kr",
                "service_id": str(record.id),
                "service_group": "manager",
                "display_name": record.display_name,
                "version": "26.1.0",
                "__meta_backendai_service_id": str(record.id),
                "__meta_backendai_service_group": "manager",
                "__meta_backendai_display_name": record.display_name,
                "__meta_backendai_version": "26.1.0",
                "__meta_backendai_address": "10.0.0.1",
                "__meta_backendai_port": "8080",
                "__meta_backendai_protocol": "http",
                "__meta_backendai_label_region": "kr",
            },
        }
    ]


async def test_meta_labels_can_be_left_out(serve: Serve) -> None:
    async with MemoryServiceDiscovery() as sd:
        record = make_record("manager")
        await sd.heartbeat(record)
        body = await (await serve(sd, meta_labels=False)).get("/sd")
        [group] = await body.json()
    assert set(group["labels"]) == {"service_id", "service_group", "display_name", "version"}


async def test_unhealthy_records_are_filtered(serve: Serve) -> None:
    now = [10_000.0]
    async with MemoryServiceDiscovery(wall_clock=lambda: now[0]) as sd:
        fresh, stale = make_record("agent", port=1), make_record("agent", port=2)
        now[0] = 9_000.0
        await sd.heartbeat(stale)
        now[0] = 10_000.0
        await sd.heartbeat(fresh)
        client = await serve(sd, heartbeat_timeout=60, wall_clock=lambda: now[0])
        body = await (await client.get("/sd")).json()
        assert [g["labels"]["service_id"] for g in body] == [str(fresh.id)]
        everything = await serve(sd, heartbeat_timeout=None, wall_clock=lambda: now[0])
        assert len(await (await everything.get("/sd")).json()) == 2


async def test_service_group_query_narrows(serve: Serve) -> None:
    async with MemoryServiceDiscovery() as sd:
        for group in ("agent", "manager", "agent"):
            await sd.heartbeat(make_record(group))
        client = await serve(sd)
        agents = await (await client.get("/sd", params={"service_group": "agent"})).json()
        assert {g["labels"]["service_group"] for g in agents} == {"agent"}
        assert len(agents) == 2
        assert await (await client.get("/sd", params={"service_group": "none"})).json() == []


async def test_records_without_prometheus_address_are_skipped(serve: Serve) -> None:
    async with MemoryServiceDiscovery() as sd:
        record = ServiceMetadata(
            display_name="x",
            service_group="agent",
            version="1",
            endpoint=ServiceEndpoint(address="h", port=1, protocol="http", prometheus_address=""),
        )
        await sd.heartbeat(record)
        assert await (await (await serve(sd)).get("/sd")).json() == []


async def test_invalid_label_names_are_rewritten(serve: Serve) -> None:
    assert prometheus_label_name("app.kubernetes.io/name") == "app_kubernetes_io_name"
    assert prometheus_label_name("9lives") == "_9lives"
    assert prometheus_label_name("__metrics_path__") == "__metrics_path__"
    async with MemoryServiceDiscovery() as sd:
        await sd.heartbeat(make_record("agent", labels={"team-name": "ml"}))
        [group] = await (await (await serve(sd)).get("/sd")).json()
    assert group["labels"]["team_name"] == "ml"
    assert group["labels"]["__meta_backendai_label_team_name"] == "ml"


async def test_backend_failure_is_not_200(serve: Serve) -> None:
    sd = MemoryServiceDiscovery()
    client = await serve(sd)  # never opened: every call fails
    resp = await client.get("/sd")
    assert resp.status >= 500
    assert resp.content_type == "application/problem+json"
    assert "error_code" in await resp.json()


async def test_cached_targets_match_rendered_records(serve: Serve) -> None:
    now = [10_000.0]
    async with (
        MemoryEtcd("sd") as etcd,
        CachedServiceDiscovery(
            EtcdServiceDiscovery(etcd, ttl=30, wall_clock=lambda: now[0])
        ) as cache,
    ):
        records = [
            make_record(group, port=port, labels={"zone": f"z{port}", "app.k8s.io/name": "x"})
            for group in ("agent", "manager")
            for port in (1, 2, 3)
        ]
        for record in records:
            await cache.heartbeat(record)
        no_metrics = make_record("agent", port=9).model_copy(
            update={
                "endpoint": ServiceEndpoint(
                    address="h", port=9, protocol="http", prometheus_address=""
                )
            }
        )
        await cache.heartbeat(no_metrics)
        now[0] = 10_200.0
        await cache.heartbeat(records[0])  # the others are now 200 s old
        await cache.heartbeat(records[4])
        for timeout in (DEFAULT_HEARTBEAT_TIMEOUT, 100.0, None):
            for group in (None, "agent", "manager", "nobody"):
                for meta in (True, False):
                    rendered = prometheus_sd_targets(
                        await (cache.get_service_group(group) if group else cache.discover()),
                        heartbeat_timeout=timeout,
                        now=10_250.0,
                        meta_labels=meta,
                    )
                    cached = cache.prometheus_targets(
                        group, heartbeat_timeout=timeout, now=10_250.0, meta_labels=meta
                    )
                    assert cached == rendered, (timeout, group, meta)
        fresh = cache.prometheus_targets(heartbeat_timeout=100.0, now=10_250.0)
        assert [g["labels"]["service_id"] for g in fresh] == [  # agent, then manager
            str(records[0].id),
            str(records[4].id),
        ]
        # and the handler answers the same bytes as rendering the records
        client = await serve(cache, wall_clock=lambda: 10_250.0)
        body = await (await client.get("/sd", params={"service_group": "agent"})).json()
        expected = prometheus_sd_targets(await cache.get_service_group("agent"), now=10_250.0)
        assert body == expected
