"""WebServer: graceful drain, deadline, signals, bind failures."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from ai.backend.common.web import ServerStartFailed, WebServer


def _app(gate: asyncio.Event, started: asyncio.Event, outcome: list[str]) -> web.Application:
    async def slow(request: web.Request) -> web.Response:
        started.set()
        try:
            await gate.wait()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        outcome.append("finished")
        return web.Response(text="done")

    async def fast(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_get("/fast", fast)
    return app


async def test_in_flight_request_drains() -> None:
    gate, started, outcome = asyncio.Event(), asyncio.Event(), list[str]()
    cleaned = asyncio.Event()
    app = _app(gate, started, outcome)

    async def on_cleanup(app: web.Application) -> None:
        cleaned.set()

    app.on_cleanup.append(on_cleanup)
    server = WebServer(app, shutdown_timeout=30)
    await server.start()
    assert server.port > 0
    async with aiohttp.ClientSession() as session:
        assert await (await session.get(server.url + "/fast")).text() == "ok"
        request = asyncio.ensure_future(session.get(server.url + "/slow"))
        async with asyncio.timeout(10):
            await started.wait()
        stopping = asyncio.ensure_future(server.aclose())
        # The listening socket closes first: new connections are refused.
        async with asyncio.timeout(10):
            while True:
                try:
                    async with aiohttp.ClientSession() as other:
                        await other.get(server.url + "/fast")
                except aiohttp.ClientConnectionError:
                    break
                await asyncio.sleep(0.01)
        assert not stopping.done()
        gate.set()  # the in-flight request may now finish
        async with asyncio.timeout(10):
            resp = await request
            assert resp.status == 200
            assert await resp.text() == "done"
            await stopping
    assert outcome == ["finished"]
    assert cleaned.is_set()
    await server.aclose()  # idempotent


async def test_drain_deadline_cancels_handlers() -> None:
    gate, started, outcome = asyncio.Event(), asyncio.Event(), list[str]()
    server = WebServer(_app(gate, started, outcome), shutdown_timeout=0.2)
    await server.start()
    async with aiohttp.ClientSession() as session:
        request = asyncio.ensure_future(session.get(server.url + "/slow"))
        async with asyncio.timeout(10):
            await started.wait()
            await server.aclose()  # never released: cancelled after the deadline
        with pytest.raises(aiohttp.ClientError):
            await request
    assert outcome == ["cancelled"]


async def test_signal_stops_server() -> None:
    gate, started, outcome = asyncio.Event(), asyncio.Event(), list[str]()
    async with WebServer(_app(gate, started, outcome)) as server:
        serving = asyncio.ensure_future(server.serve_forever(stop_signals=(signal.SIGUSR1,)))
        async with asyncio.timeout(10):
            while True:  # wait until the handler is installed
                if signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None):
                    break
                await asyncio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGUSR1)
            await serving
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # handler removed
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as session:
                await session.get(server.url + "/fast")


async def test_request_stop() -> None:
    gate, started, outcome = asyncio.Event(), asyncio.Event(), list[str]()
    async with WebServer(_app(gate, started, outcome)) as server:
        serving = asyncio.ensure_future(server.serve_forever(stop_signals=()))
        server.request_stop()
        async with asyncio.timeout(10):
            await serving


async def test_bind_failure() -> None:
    gate, started, outcome = asyncio.Event(), asyncio.Event(), list[str]()
    async with WebServer(_app(gate, started, outcome)) as first:
        second = WebServer(_app(gate, started, outcome), port=first.port)
        with pytest.raises(ServerStartFailed, match=str(first.port)) as info:
            await second.start()
        assert isinstance(info.value, OSError)
        await second.aclose()


@pytest.mark.parametrize("failure", ["startup-hook", "bind"])
async def test_failed_startup_exits_entered_contexts(failure: str) -> None:
    events: list[str] = []

    async def client_context(app: web.Application) -> AsyncIterator[None]:
        events.append("entered")  # e.g. opened a Redis client
        yield
        events.append("exited")

    async def failing_startup(app: web.Application) -> None:
        raise FileNotFoundError("config.toml")  # an OSError, yet no bind failure

    app = web.Application()
    app.cleanup_ctx.append(client_context)
    port = 0
    blocker = None
    if failure == "startup-hook":
        app.on_startup.append(failing_startup)
    else:
        blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = blocker.sockets[0].getsockname()[1]
    try:
        if failure == "startup-hook":
            with pytest.raises(FileNotFoundError, match=r"config\.toml"):
                await WebServer(app).start()
        else:
            with pytest.raises(ServerStartFailed):
                await WebServer(app, port=port).start()
    finally:
        if blocker is not None:
            blocker.close()
            await blocker.wait_closed()
    assert events == ["entered", "exited"]
