"""Error middleware: problem+json for our errors, opaque 500s, aiohttp exceptions untouched."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from ai.backend.common.exception import ObjectNotFound, ServiceUnavailable
from ai.backend.common.middlewares import error_middleware, install_middleware_stack

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
