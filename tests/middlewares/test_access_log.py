"""Access log middleware."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ai.backend.common.exception import InvalidArgument
from ai.backend.common.middlewares import (
    access_log_middleware,
    error_middleware,
    request_id_middleware,
)


async def test_one_record_per_request(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.access")

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def bad(request: web.Request) -> web.Response:
        raise InvalidArgument("no")

    app = web.Application(
        middlewares=[
            request_id_middleware(),
            access_log_middleware(logger=logger),
            error_middleware(),
        ]
    )
    app.router.add_get("/items/{name}", ok)
    app.router.add_get("/bad", bad)
    caplog.set_level(logging.INFO, logger="test.access")
    async with TestClient(TestServer(app)) as client:
        await client.get("/items/a?x=1", headers={"X-BackendAI-RequestID": "rid-1"})
        await client.get("/bad", headers={"X-BackendAI-RequestID": "rid-2"})
        await client.get("/unknown/path", headers={"X-BackendAI-RequestID": "rid-3"})
    records = [r for r in caplog.records if r.name == "test.access"]
    assert len(records) == 3
    fields = [
        (r.request_id, r.method, r.route, r.path, r.status)  # type: ignore[attr-defined]
        for r in records
    ]
    assert fields == [
        ("rid-1", "GET", "/items/{name}", "/items/a", 200),
        ("rid-2", "GET", "/bad", "/bad", 400),
        ("rid-3", "GET", "__unmatched__", "/unknown/path", 404),
    ]
    for record in records:
        assert record.duration_ms >= 0  # type: ignore[attr-defined]
        assert record.user_id is None  # type: ignore[attr-defined]
        assert record.client_ip == "127.0.0.1"  # type: ignore[attr-defined]
    assert records[0].getMessage().startswith("GET /items/a 200 ")
