"""Error middleware: problem+json for our errors, opaque 500s, aiohttp exceptions untouched."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from prometheus_client import CollectorRegistry

from ai.backend.common.exception import ObjectNotFound, ServiceUnavailable
from ai.backend.common.metrics import CommonMetricRegistry
from ai.backend.common.middlewares import error_middleware, install_middleware_stack
from ai.backend.common.web import WebServer

SECRET_MESSAGE = "db password is hunter2"


def _app() -> web.Application:
    async def not_found(request: web.Request) -> web.Response:
        raise ObjectNotFound("no vfolder 'abc'", data={"name": "abc"})

    async def unavailable(request: web.Request) -> web.Response:
        raise ServiceUnavailable("storage proxy unreachable")

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError(SECRET_MESSAGE)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    async def too_large(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="read")

    app = web.Application(middlewares=[error_middleware()], client_max_size=16)
    app.router.add_get("/missing", not_found)
    app.router.add_get("/unavailable", unavailable)
    app.router.add_get("/boom", boom)
    app.router.add_get("/redirect", redirect)
    app.router.add_post("/upload", too_large)
    return app


async def test_backendai_error_rendered() -> None:
    async with TestClient(TestServer(_app())) as client:
        resp = await client.get("/missing")
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"
        assert (
            await resp.json() == ObjectNotFound("no vfolder 'abc'", data={"name": "abc"}).problem()
        )
        resp = await client.get("/unavailable")
        assert resp.status == 503
        assert (await resp.json())["error_code"] == "backendai_generic_unavailable"


async def test_unexpected_error_500(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with TestClient(TestServer(_app())) as client:
        resp = await client.get("/boom")
        assert resp.status == 500
        assert resp.content_type == "application/problem+json"
        text = await resp.text()
        body = await resp.json()
    error_id = body["data"]["error_id"]
    assert error_id in body["msg"]
    assert body["error_code"] == "backendai_generic_internal-error"
    assert SECRET_MESSAGE not in text
    assert "Traceback" not in text
    assert "RuntimeError" not in text
    with_trace = [r for r in caplog.records if r.exc_info is not None]
    assert len(with_trace) == 1  # logged once, by us, with the stack trace
    assert error_id in with_trace[0].getMessage()
    assert getattr(with_trace[0], "error_id", None) == error_id
    assert not [r for r in caplog.records if "Error handling request" in r.getMessage()]


async def test_http_exceptions_pass_through() -> None:
    async with TestClient(TestServer(_app())) as client:
        resp = await client.get("/nowhere")
        assert resp.status == 404
        assert resp.content_type == "text/plain"
        resp = await client.post("/missing")
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET,HEAD"
        resp = await client.get("/redirect", allow_redirects=False)
        assert resp.status == 302
        assert resp.headers["Location"] == "/elsewhere"
        resp = await client.post("/upload", data=b"x" * 1024)
        assert resp.status == 413


async def test_cancel_propagates() -> None:
    async def cancelled(request: web.Request) -> web.Response:
        raise asyncio.CancelledError

    middleware = error_middleware()
    with pytest.raises(asyncio.CancelledError):
        await middleware(make_mocked_request("GET", "/"), cancelled)


class _Odd(ServiceUnavailable):
    """An error whose data orjson cannot encode."""


@pytest.mark.parametrize(
    "data",
    [
        {"raw": b"\xff"},
        {"path": Path("/tmp")},
        {"cause": RuntimeError("x")},
        {"text": "AK\udcff"},
        {"nested": [{"deep": object()}]},
    ],
    ids=["bytes", "path", "exception", "surrogate", "object"],
)
async def test_unencodable_problem_falls_back_to_500(
    caplog: pytest.LogCaptureFixture, data: dict[str, object]
) -> None:
    async def odd(request: web.Request) -> web.Response:
        raise ObjectNotFound("no such thing", data=data)

    caplog.set_level(logging.DEBUG)
    for fused in (True, False):
        caplog.clear()
        app = web.Application()
        install_middleware_stack(app, access_log=False, fused=fused)
        app.router.add_get("/odd", odd)
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/odd")
            assert resp.status == 500
            assert resp.content_type == "application/problem+json"
            body = await resp.json()
        assert body["error_code"] == "backendai_generic_internal-error"
        error_id = body["data"]["error_id"]
        assert error_id in body["msg"]
        logged = [r for r in caplog.records if r.exc_info is not None]
        assert len(logged) == 1  # once, by us; not aiohttp's "Error handling request"
        assert error_id in logged[0].getMessage()
        assert not [r for r in caplog.records if "Error handling request" in r.getMessage()]


async def _stream_then_fail(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"partial")
    if request.match_info["how"] == "redirect":
        raise web.HTTPFound("/elsewhere")
    if request.match_info["how"] == "ours":
        raise ServiceUnavailable("store went away mid-stream")
    raise RuntimeError(SECRET_MESSAGE)


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _raw_pipelined(port: int, first: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:  # two requests on one keep-alive connection; the first fails mid-stream
        writer.write(
            f"GET {first} HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        async with asyncio.timeout(10):
            return await reader.read()  # until the server closes the connection
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "separate"])
@pytest.mark.parametrize("how", ["unexpected", "ours", "redirect"])
async def test_error_after_prepare_closes_the_connection(
    fused: bool, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    registry = CollectorRegistry()
    app = web.Application()
    install_middleware_stack(
        app, access_log=False, metrics=CommonMetricRegistry(registry), fused=fused
    )
    app.router.add_get("/stream/{how}", _stream_then_fail)
    app.router.add_get("/ok", _ok)
    async with WebServer(app) as server:
        raw = await _raw_pipelined(server.port, f"/stream/{how}")
        async with aiohttp.ClientSession() as session:
            resp = await session.get(f"{server.url}/stream/{how}")
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
    # One status line: no problem written into the chunked body, and the pipelined /ok is
    # not answered on the broken connection.
    assert raw.count(b"HTTP/1.1 ") == 1, raw
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw.endswith(b"7\r\npartial\r\n"), raw  # no terminating 0-chunk: truncated
    assert SECRET_MESSAGE.encode() not in raw
    traced = [r for r in caplog.records if r.exc_info is not None]
    assert len(traced) == 2  # once per request (raw socket, then aiohttp's client)
    assert all("closing the connection" in r.getMessage() for r in traced)
    assert all(getattr(r, "error_id", None) for r in traced)
    assert not [r for r in caplog.records if "Error handling request" in r.getMessage()]
    # Counted with the status the client got, and as an internal error.
    series = {
        (s.labels["status_code"], s.labels["error_detail"], s.value)
        for family in registry.collect()
        if family.name == "backendai_api_request_count"
        for s in family.samples
        if s.name.endswith("_total") and s.labels["endpoint"] == "/stream/{how}"
    }
    assert series == {("200", "internal-error", 2.0)}


async def test_prepare_hook_not_installed_still_closes() -> None:
    # build_middleware_stack alone: no prepare hook, the bytes already written tell.
    app = web.Application(middlewares=[error_middleware()])
    app.router.add_get("/stream/{how}", _stream_then_fail)
    app.router.add_get("/ok", _ok)
    async with WebServer(app) as server:
        raw = await _raw_pipelined(server.port, "/stream/unexpected")
    assert raw.count(b"HTTP/1.1 ") == 1, raw
    assert raw.endswith(b"7\r\npartial\r\n"), raw
