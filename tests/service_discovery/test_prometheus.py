"""The Prometheus HTTP SD handler: upstream's body shape, health filter, relabeling labels."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ai.backend.common.service_discovery import (
    AbstractServiceDiscovery,
    MemoryServiceDiscovery,
    ServiceEndpoint,
    ServiceMetadata,
    make_prometheus_sd_handler,
    prometheus_label_name,
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
