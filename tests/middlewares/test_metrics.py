"""Metrics middleware: canonical routes, bounded labels, error codes, promtool."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from ai.backend.common.exception import InvalidArgument
from ai.backend.common.metrics import CommonMetricRegistry
from ai.backend.common.middlewares import build_middleware_stack

from ..metrics.promtool import promtool_check


def _series(registry: CollectorRegistry) -> list[dict[str, str]]:
    return [
        dict(sample.labels)
        for family in registry.collect()
        if family.name == "backendai_api_request_count"
        for sample in family.samples
        if sample.name == "backendai_api_request_count_total"
    ]


def _app(metrics: CommonMetricRegistry) -> web.Application:
    async def folder(request: web.Request) -> web.Response:
        if request.match_info["name"] == "bad":
            raise InvalidArgument("bad name")
        return web.Response(text="ok")

    app = web.Application(middlewares=build_middleware_stack(metrics=metrics, access_log=False))
    app.router.add_route("*", "/folders/{name}", folder)
    return app


async def test_path_parameters_do_not_explode_cardinality() -> None:
    registry = CollectorRegistry()
    metrics = CommonMetricRegistry(registry)
    async with TestClient(TestServer(_app(metrics))) as client:
        for i in range(200):
            resp = await client.get(f"/folders/vf-{i}")
            assert resp.status == 200
    series = _series(registry)
    assert len(series) == 1
    assert series[0]["endpoint"] == "/folders/{name}"
    assert registry.get_sample_value("backendai_api_request_count_total", series[0]) == 200
    code, output = promtool_check(metrics.render())
    assert code == 0, output


async def test_unmatched_and_odd_methods_are_bounded() -> None:
    registry = CollectorRegistry()
    metrics = CommonMetricRegistry(registry)
    async with TestClient(TestServer(_app(metrics))) as client:
        for i in range(50):
            await client.get(f"/random/{i}/path")
        for method in ("FOO", "BAR", "PROPFIND"):
            await client.request(method, "/folders/x")
    series = {(s["method"], s["endpoint"], s["status_code"]) for s in _series(registry)}
    assert series == {("GET", "__unmatched__", "404"), ("OTHER", "/folders/{name}", "200")}


async def test_error_code_label() -> None:
    registry = CollectorRegistry()
    metrics = CommonMetricRegistry(registry)
    async with TestClient(TestServer(_app(metrics))) as client:
        resp = await client.get("/folders/bad")
        assert resp.status == 400
    (series,) = _series(registry)
    assert series == {
        "method": "GET",
        "endpoint": "/folders/{name}",
        "domain": "backendai",
        "operation": "generic",
        "error_detail": "invalid-parameters",
        "status_code": "400",
    }
