"""Request id middleware."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ai.backend.common.contexts import current_client_ip, current_request_id
from ai.backend.common.exception import InvalidArgument
from ai.backend.common.middlewares import error_middleware, request_id_middleware
from ai.backend.common.middlewares.request_id import fresh_request_id


def _app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"rid": current_request_id(), "ip": current_client_ip()})

    async def fail(request: web.Request) -> web.Response:
        raise InvalidArgument("bad")

    app = web.Application(middlewares=[request_id_middleware(), error_middleware()])
    app.router.add_get("/echo", echo)
    app.router.add_get("/fail", fail)
    return app


async def test_request_id_echoed() -> None:
    async with TestClient(TestServer(_app())) as client:
        resp = await client.get("/echo", headers={"X-BackendAI-RequestID": "req-client-1"})
        assert resp.headers["X-BackendAI-RequestID"] == "req-client-1"
        body = await resp.json()
        assert body == {"rid": "req-client-1", "ip": "127.0.0.1"}
        # A fresh id when none is sent, bound in the handler and echoed.
        resp = await client.get("/echo")
        rid = resp.headers["X-BackendAI-RequestID"]
        assert rid.startswith("req-")
        assert (await resp.json())["rid"] == rid
        # Errors and aiohttp's own 404 carry it too.
        resp = await client.get("/fail", headers={"X-BackendAI-RequestID": "r2"})
        assert resp.status == 400
        assert resp.headers["X-BackendAI-RequestID"] == "r2"
        resp = await client.get("/nowhere", headers={"X-BackendAI-RequestID": "r3"})
        assert resp.status == 404
        assert resp.headers["X-BackendAI-RequestID"] == "r3"


async def test_bad_incoming_id_replaced() -> None:
    async with TestClient(TestServer(_app())) as client:
        for bad in ("x" * 300, "caf\u00e9".encode().decode("latin-1"), " "):
            resp = await client.get("/echo", headers={"X-BackendAI-RequestID": bad})
            rid = resp.headers["X-BackendAI-RequestID"]
            assert rid != bad
            assert rid.startswith("req-")


def test_fresh_ids_unique_and_well_formed() -> None:
    ids = [fresh_request_id() for _ in range(5000)]  # many batches of 256
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"req-[0-9a-f]{16}", rid) for rid in ids)


def test_fresh_ids_unique_across_threads() -> None:
    with ThreadPoolExecutor(4) as pool:
        chunks = list(pool.map(lambda _: [fresh_request_id() for _ in range(2000)], range(4)))
    ids = [rid for chunk in chunks for rid in chunk]
    assert len(set(ids)) == len(ids)


def test_fresh_ids_not_shared_with_a_forked_child() -> None:
    fresh_request_id()  # the parent now holds a batch of unused ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id, then leave without running pytest's exit
        os.write(write, fresh_request_id().encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    assert child.startswith("req-")
    assert child != fresh_request_id()
