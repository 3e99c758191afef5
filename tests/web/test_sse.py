"""Server-sent events: framing, keep-alives, disconnect detection."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ai.backend.common.exception import InvalidArgument, ServiceUnavailable
from ai.backend.common.middlewares import install_middleware_stack
from ai.backend.common.web import (
    SSEEvent,
    SSEResponse,
    WebServer,
    format_comment,
    format_event,
)


def test_framing() -> None:
    assert format_event("hello") == b"data: hello\n\n"
    assert format_event("a\nb\r\nc\rd", event="log", id="7", retry=3000) == (
        b"event: log\nid: 7\nretry: 3000\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    )
    assert format_event({"x": 1}) == b'data: {"x":1}\n\n'
    assert format_event("") == b"data: \n\n"
    assert format_comment() == b": keep-alive\n\n"
    with pytest.raises(InvalidArgument):
        format_event("x", event="bad\nname")
    with pytest.raises(InvalidArgument):
        format_event("x", id="1\r2")


async def _read_until(resp: aiohttp.ClientResponse, marker: bytes, limit: int = 100) -> bytes:
    content = resp.content
    buf = b""
    async with asyncio.timeout(10):
        for _ in range(limit):
            line: bytes = await content.readline()
            if not line:
                break
            buf += line
            if marker in buf:
                return buf
    raise AssertionError(f"{marker!r} not found in {buf!r}")


async def test_events_through_server() -> None:
    async def events() -> AsyncIterator[object]:
        yield SSEEvent({"progress": 1}, event="progress", id="1")
        yield "done"

    async def handler(request: web.Request) -> web.StreamResponse:
        async with SSEResponse(request) as sse:
            await sse.pump(events())
        return sse.response

    app = web.Application()
    app.router.add_get("/events", handler)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/events")
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-cache"
        body = await resp.read()
    assert body == b'event: progress\nid: 1\ndata: {"progress":1}\n\ndata: done\n\n'


async def test_keepalive_comments() -> None:
    gate = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        async with SSEResponse(request, keepalive_interval=0.05, poll_interval=0.02) as sse:
            await sse.send("first")
            await gate.wait()
            await sse.send("last")
        return sse.response

    app = web.Application()
    app.router.add_get("/events", handler)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/events")
        head = await _read_until(resp, b": keep-alive\n\n")
        assert head.startswith(b"data: first\n\n")
        gate.set()
        rest = await resp.read()
        assert rest.endswith(b"data: last\n\n")


@contextlib.asynccontextmanager
async def _serve(app: web.Application, *, handler_cancellation: bool) -> AsyncIterator[str]:
    """The base URL of ``app``, served with aiohttp's test server (which cancels handlers when
    the client leaves) or with ``WebServer`` (which, like aiohttp's default, does not)."""
    if handler_cancellation:
        async with TestServer(app) as server:
            yield str(server.make_url("")).rstrip("/")
    else:
        async with WebServer(app) as server:
            yield server.url


@pytest.mark.parametrize("handler_cancellation", [False, True])
async def test_disconnect_releases_source(handler_cancellation: bool) -> None:
    released = asyncio.Event()
    exited_cleanly = asyncio.Event()
    never = asyncio.Event()

    async def idle_source() -> AsyncIterator[str]:
        try:
            yield "hello"
            await never.wait()  # idle: only the disconnect can end this
            yield "unreachable"
        finally:
            released.set()

    async def handler(request: web.Request) -> web.StreamResponse:
        async with SSEResponse(request, keepalive_interval=60, poll_interval=0.02) as sse:
            await sse.pump(idle_source())
        assert sse.disconnected
        exited_cleanly.set()
        return sse.response

    app = web.Application()
    app.router.add_get("/events", handler)
    async with (
        _serve(app, handler_cancellation=handler_cancellation) as base,
        aiohttp.ClientSession() as session,
    ):
        resp = await session.get(base + "/events")
        await _read_until(resp, b"data: hello\n\n")
        resp.close()  # the client goes away
        async with asyncio.timeout(10):
            await released.wait()
            if not handler_cancellation:  # a cancelled handler cannot exit cleanly
                await exited_cleanly.wait()


async def test_send_after_disconnect_raises_inside_block() -> None:
    outcome: list[str] = []
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        async with SSEResponse(request, keepalive_interval=60, poll_interval=0.02) as sse:
            await sse.send("one")
            await sse.wait_disconnected()
            outcome.append("before")
            await sse.send("two")  # raises ClientDisconnected, absorbed by the block
            outcome.append("after")
        outcome.append(f"sent {sse.sent_events}")
        done.set()
        return sse.response

    app = web.Application()
    app.router.add_get("/events", handler)
    async with _serve(app, handler_cancellation=False) as base, aiohttp.ClientSession() as session:
        resp = await session.get(base + "/events")
        await _read_until(resp, b"data: one\n\n")
        resp.close()
        async with asyncio.timeout(10):
            await done.wait()
    assert outcome == ["before", "sent 1"]


async def test_source_error_propagates() -> None:
    async def broken() -> AsyncIterator[str]:
        yield "x"
        raise ValueError("source broke")

    seen: list[BaseException] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        async with SSEResponse(request) as sse:
            try:
                await sse.pump(broken())
            except ValueError as exc:
                seen.append(exc)
        return sse.response

    app = web.Application()
    app.router.add_get("/events", handler)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/events")
        assert await resp.read() == b"data: x\n\n"
    assert len(seen) == 1
    assert str(seen[0]) == "source broke"


async def _read_to_failure(resp: aiohttp.ClientResponse) -> bytes:
    """The body up to the point the stream broke; fails if the stream ended cleanly."""
    received = bytearray()

    async def drain() -> None:
        async with asyncio.timeout(10):
            async for chunk in resp.content.iter_any():
                received.extend(chunk)

    with pytest.raises(aiohttp.ClientPayloadError):
        await drain()
    return bytes(received)


@pytest.mark.parametrize("stack", [True, False], ids=["middleware-stack", "bare-aiohttp"])
async def test_failure_sends_error_event_then_truncates(stack: bool) -> None:
    async def broken() -> AsyncIterator[str]:
        yield "one"
        raise RuntimeError("store failed: password hunter2")

    async def pumped(request: web.Request) -> web.StreamResponse:
        async with SSEResponse(request) as sse:
            await sse.pump(broken())
        return sse.response

    async def ours(request: web.Request) -> web.StreamResponse:
        async with SSEResponse(request) as sse:
            await sse.send("one")
            raise ServiceUnavailable("the event store is unreachable")
        return sse.response  # pragma: no cover - the block raises

    app = web.Application()
    if stack:
        install_middleware_stack(app, access_log=False)
    app.router.add_get("/pumped", pumped)
    app.router.add_get("/ours", ours)
    async with WebServer(app) as server, aiohttp.ClientSession() as session:
        resp = await session.get(server.url + "/pumped")
        body = await _read_to_failure(resp)
        head, _, frame = body.partition(b"event: error\n")
        assert head == b"data: one\n\n"
        problem = json.loads(frame.removeprefix(b"data: ").strip())
        assert problem["error_code"] == "backendai_generic_internal-error"
        assert b"hunter2" not in body
        if stack:
            assert problem["data"]["request_id"] == resp.headers["X-BackendAI-RequestID"]
        resp = await session.get(server.url + "/ours")
        body = await _read_to_failure(resp)
        _, _, frame = body.partition(b"event: error\n")
        problem = json.loads(frame.removeprefix(b"data: ").strip())
        assert problem == ServiceUnavailable("the event store is unreachable").problem()
