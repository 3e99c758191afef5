"""CORS middleware: preflights, simple requests, credentials, Vary, the null origin."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ai.backend.common.auth import HMACVerifier, MemoryKeypairStore
from ai.backend.common.exception import InvalidArgument
from ai.backend.common.middlewares import CORSOptions, install_middleware_stack

ORIGIN = "https://console.example.com"


def _app(options: CORSOptions, calls: list[str], fused: bool = False) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        calls.append(request.method)
        return web.Response(text="ok")

    # Auth is on and nothing is signed: a preflight must never reach it.
    app = web.Application()
    install_middleware_stack(
        app,
        cors=options,
        hmac=HMACVerifier(MemoryKeypairStore()),
        access_log=False,
        fused=fused,
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


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "separate"])
async def test_any_origin(fused: bool) -> None:
    # Fetch spec, "CORS protocol and HTTP caches": a static "*" goes on every response,
    # CORS or not, without Vary, so a cached copy is right for every requester.
    calls: list[str] = []
    async with TestClient(TestServer(_app(CORSOptions(allow_origins=["*"]), calls, fused))) as c:
        for headers in ({"Origin": "https://a.example"}, {}, {"Origin": "null"}):
            for path in ("/folders/x", "/nowhere"):  # a 401 and a 404 alike
                resp = await c.get(path, headers=headers)
                assert resp.headers["Access-Control-Allow-Origin"] == "*", (headers, path)
                assert resp.headers["Access-Control-Expose-Headers"] == "X-BackendAI-RequestID"
                assert "Vary" not in resp.headers
                assert "Access-Control-Allow-Credentials" not in resp.headers
        resp = await c.options(
            "/folders/x",
            headers={"Origin": "https://b.example", "Access-Control-Request-Method": "PUT"},
        )
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


def test_wildcard_with_credentials_refused() -> None:
    with pytest.raises(InvalidArgument, match="allow_credentials") as info:
        CORSOptions(allow_origins=["*"], allow_credentials=True)
    assert info.value.data == {"field": "allow_credentials"}
    with pytest.raises(InvalidArgument):
        CORSOptions(allow_origins=[ORIGIN, "*"], allow_credentials=True)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "separate"])
async def test_null_origin_only_when_listed(fused: bool) -> None:
    calls: list[str] = []
    preflight = {"Origin": "null", "Access-Control-Request-Method": "DELETE"}
    listed = CORSOptions(allow_origins=[ORIGIN], allow_credentials=True)
    anyone = CORSOptions(allow_origins=["*"])
    for options in (listed, anyone):
        async with TestClient(TestServer(_app(options, calls, fused))) as client:
            resp = await client.options("/folders/x", headers=preflight)
            assert resp.status == 403
            assert "Access-Control-Allow-Origin" not in resp.headers
            if options is listed:
                resp = await client.get("/folders/x", headers={"Origin": "null"})
                assert "Access-Control-Allow-Origin" not in resp.headers
                assert "Access-Control-Allow-Credentials" not in resp.headers
    explicit = CORSOptions(allow_origins=[ORIGIN, "null"], allow_credentials=True)
    async with TestClient(TestServer(_app(explicit, calls, fused))) as client:
        resp = await client.get("/folders/x", headers={"Origin": "null"})
        assert resp.headers["Access-Control-Allow-Origin"] == "null"
        assert resp.headers["Vary"] == "Origin"
        assert (await client.options("/folders/x", headers=preflight)).status == 204
    assert calls == []
