"""The /metrics handler."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from ai.backend.common.metrics import CommonMetricRegistry
from ai.backend.common.web import is_anonymous, metrics_handler

from ..metrics.promtool import promtool_check


async def test_metrics_endpoint() -> None:
    registry = CommonMetricRegistry(CollectorRegistry())
    registry.api.observe_request(method="GET", endpoint="/x", status_code=200, duration=0.1)
    handler = metrics_handler(registry)
    assert is_anonymous(handler)
    app = web.Application()
    app.router.add_get("/metrics", handler)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        body = await resp.read()
    assert b"backendai_api_request_count_total{" in body
    code, output = promtool_check(body)
    assert code == 0, output
