"""The assembled stack: order, and what each response carries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from ai.backend.common.auth import (
    HMACSigner,
    HMACVerifier,
    Keypair,
    MemoryKeypairStore,
    generate_keypair,
)
from ai.backend.common.metrics import CommonMetricRegistry
from ai.backend.common.middlewares import (
    CORSOptions,
    build_middleware_stack,
    install_middleware_stack,
)
from ai.backend.common.web import SSEResponse, anonymous

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ORIGIN = "https://console.example.com"


def test_order() -> None:
    registry = CommonMetricRegistry(CollectorRegistry())
    stack = build_middleware_stack(
        metrics=registry,
        cors=CORSOptions(allow_origins=[ORIGIN]),
        hmac=HMACVerifier(MemoryKeypairStore()),
    )
    names = [m.__name__ for m in stack]  # type: ignore[attr-defined]
    assert names == ["request_id", "access_log", "metrics", "cors", "errors", "authenticate"]
    assert [m.__name__ for m in build_middleware_stack()] == [  # type: ignore[attr-defined]
        "request_id",
        "access_log",
        "errors",
    ]


async def test_full_stack_auth_failure() -> None:
    ak, sk = generate_keypair()
    keypair = Keypair(access_key=ak, secret_key=sk, user_id=uuid.uuid4())
    registry = CollectorRegistry()
    metrics = CommonMetricRegistry(registry)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    install_middleware_stack(
        app,
        metrics=metrics,
        cors=CORSOptions(allow_origins=[ORIGIN]),
        hmac=HMACVerifier(MemoryKeypairStore([keypair]), clock=lambda: NOW),
    )
    app.router.add_get("/folders/{name}", hello)
    async with TestClient(TestServer(app)) as client:
        signer = HMACSigner(ak, sk, str(client.make_url("")))
        good = signer.sign("GET", "/folders/a", date=NOW)
        resp = await client.get("/folders/a", headers={**good, "Origin": ORIGIN})
        assert resp.status == 200
        assert await resp.text() == "hello"
        bad = {**good, "Authorization": good["Authorization"][:-2] + "00"}
        resp = await client.get(
            "/folders/b", headers={**bad, "Origin": ORIGIN, "X-BackendAI-RequestID": "rid-9"}
        )
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"
        assert resp.headers["X-BackendAI-RequestID"] == "rid-9"
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert (await resp.json())["error_code"] == "auth_authorize_mismatch"
    labels = {
        "method": "GET",
        "endpoint": "/folders/{name}",
        "domain": "auth",
        "operation": "authorize",
        "error_detail": "mismatch",
        "status_code": "401",
    }
    assert registry.get_sample_value("backendai_api_request_count_total", labels) == 1


async def test_sse_gets_request_id_and_cors_headers() -> None:
    @anonymous
    async def events(request: web.Request) -> web.StreamResponse:
        async with SSEResponse(request) as sse:
            await sse.send("one")
        return sse.response

    @anonymous
    async def raw_stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)  # the on_response_prepare hook adds the headers
        await resp.write(b"raw")
        return resp

    app = web.Application()
    install_middleware_stack(
        app, cors=CORSOptions(allow_origins=[ORIGIN]), hmac=HMACVerifier(MemoryKeypairStore())
    )
    app.router.add_get("/events", events)
    app.router.add_get("/raw", raw_stream)
    async with TestClient(TestServer(app)) as client:
        for path in ("/events", "/raw"):
            resp = await client.get(
                path, headers={"Origin": ORIGIN, "X-BackendAI-RequestID": "rid-s"}
            )
            assert resp.status == 200
            assert resp.headers["X-BackendAI-RequestID"] == "rid-s"
            assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert resp.headers["Vary"] == "Origin"
            await resp.read()
