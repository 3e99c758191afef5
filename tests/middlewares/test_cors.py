"""CORS middleware: preflights, simple requests, credentials, Vary."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ai.backend.common.auth import HMACVerifier, MemoryKeypairStore
from ai.backend.common.middlewares import CORSOptions, build_middleware_stack

ORIGIN = "https://console.example.com"


def _app(options: CORSOptions, calls: list[str]) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        calls.append(request.method)
        return web.Response(text="ok")

    # Auth is on and nothing is signed: a preflight must never reach it.
    app = web.Application(
        middlewares=build_middleware_stack(
            cors=options, hmac=HMACVerifier(MemoryKeypairStore()), access_log=False
        )
    )
    app.router.add_route("*", "/folders/{name}", handler)
    return app


async def test_preflight_allowed() -> None:
    calls: list[str] = []
    options = CORSOptions(allow_origins=[ORIGIN], allow_credentials=True, max_age=120)
    async with TestClient(TestServer(_app(options, calls))) as client:
        resp = await client.options(
            "/folders/x",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "DELETE",
                "Access-Control-Request-Headers": "authorization, x-backendai-version",
            },
        )
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "DELETE" in resp.headers["Access-Control-Allow-Methods"].split(", ")
        allowed = resp.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed
        assert "x-backendai-version" in allowed
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert resp.headers["Access-Control-Max-Age"] == "120"
        assert resp.headers["Vary"] == "Origin"
        assert "X-BackendAI-RequestID" in resp.headers
    assert calls == []


async def test_preflight_rejected() -> None:
    calls: list[str] = []
    options = CORSOptions(allow_origins=[ORIGIN], allow_methods=["GET"])
    async with TestClient(TestServer(_app(options, calls))) as client:
        for origin, method, headers in (
            ("https://evil.example.com", "GET", ""),
            (ORIGIN, "DELETE", ""),
            (ORIGIN, "GET", "x-unknown-header"),
        ):
            req_headers = {"Origin": origin, "Access-Control-Request-Method": method}
            if headers:
                req_headers["Access-Control-Request-Headers"] = headers
            resp = await client.options("/folders/x", headers=req_headers)
            assert resp.status == 403
            assert "Access-Control-Allow-Origin" not in resp.headers
            assert "not allowed" in (await resp.json())["msg"]
    assert calls == []


async def test_simple_request_headers() -> None:
    calls: list[str] = []
    options = CORSOptions(allow_origins=[ORIGIN], allow_credentials=True)
    async with TestClient(TestServer(_app(options, calls))) as client:
        # Unauthenticated: a 401, still readable by the allowed origin.
        resp = await client.get("/folders/x", headers={"Origin": ORIGIN})
        assert resp.status == 401
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert resp.headers["Access-Control-Expose-Headers"] == "X-BackendAI-RequestID"
        assert resp.headers["Vary"] == "Origin"
        # Another origin gets no CORS headers, but the same Vary.
        resp = await client.get("/folders/x", headers={"Origin": "https://evil.example.com"})
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert resp.headers["Vary"] == "Origin"
        # aiohttp's 404 too.
        resp = await client.get("/nowhere", headers={"Origin": ORIGIN})
        assert resp.status == 404
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_any_origin() -> None:
    calls: list[str] = []
    async with TestClient(TestServer(_app(CORSOptions(allow_origins=["*"]), calls))) as client:
        resp = await client.get("/folders/x", headers={"Origin": "https://a.example"})
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Vary" not in resp.headers
    creds = CORSOptions(allow_origins=["*"], allow_credentials=True)
    async with TestClient(TestServer(_app(creds, calls))) as client:
        resp = await client.get("/folders/x", headers={"Origin": "https://a.example"})
        assert resp.headers["Access-Control-Allow-Origin"] == "https://a.example"
        assert resp.headers["Vary"] == "Origin"
