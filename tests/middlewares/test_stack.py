"""The assembled stack: order, and what each response carries."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from ai.backend.common.auth import (
    HMACSigner,
    HMACVerifier,
    JWTVerifier,
    Keypair,
    MemoryKeypairStore,
    generate_keypair,
    issue_token,
)
from ai.backend.common.contexts import current_client_ip, current_request_id, current_user
from ai.backend.common.exception import InvalidArgument, ServiceUnavailable
from ai.backend.common.metrics import CommonMetricRegistry
from ai.backend.common.middlewares import (
    CORSOptions,
    build_middleware_stack,
    install_middleware_stack,
)
from ai.backend.common.web import (
    REQUEST_ID_KEY,
    SSEResponse,
    add_response_header,
    anonymous,
    auth_result,
    json_response,
)

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


# --------------------------------------------------------------------------- fused vs separate

_HIDDEN = ("Date", "Server", "Content-Length")
_RECORD_FIELDS = (
    *("request_id", "user_id", "access_key", "method", "route", "path", "status"),
    *("client_ip", "error_id", "error_code"),
)


_SCENARIO_KEYPAIR = Keypair(*generate_keypair(), user_id=uuid.UUID(int=7))


def _mask(text: str) -> str:
    """Error ids, fresh request ids and server ports vary: mask them before comparing."""
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", text)
    return re.sub(r"req-[0-9a-z]+", "req-<fresh>", text)


async def _stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Vary": "Accept-Encoding"})
    await resp.prepare(request)
    await resp.write(b"raw")
    return resp


def _scenario_app(
    stack: str, config: str, keypair: Keypair, registry: CollectorRegistry
) -> web.Application:
    async def whoami(request: web.Request) -> web.Response:
        result = auth_result(request)
        user = current_user()
        return json_response(
            {
                "request_id": current_request_id(),
                "stored_request_id": request.get(REQUEST_ID_KEY),
                "client_ip": current_client_ip(),
                "access_key": result.access_key if result else None,
                "user_id": user.user_id if user else None,
            }
        )

    async def bad(request: web.Request) -> web.Response:
        raise InvalidArgument("bad name", data={"name": request.match_info["name"]})

    async def unavailable(request: web.Request) -> web.Response:
        raise ServiceUnavailable("storage proxy unreachable")

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere", headers={"Vary": "Cookie"})

    async def vary(request: web.Request) -> web.Response:
        add_response_header(request, "X-Extra", "1")  # a handler may add pending headers
        return web.Response(text="vary", headers={"Vary": "Accept-Encoding, Origin"})

    async def cancelled(request: web.Request) -> web.Response:
        raise asyncio.CancelledError

    store = MemoryKeypairStore([keypair])
    options: dict[str, Any] = {
        "access_log": logging.getLogger(f"test.stack.{stack}.access"),
        "errors": logging.getLogger(f"test.stack.{stack}.errors"),
        "metrics": CommonMetricRegistry(registry),
        "cors": CORSOptions(allow_origins=[ORIGIN], allow_credentials=True, max_age=60),
        "hmac": HMACVerifier(store, clock=lambda: NOW),
        "anonymous_routes": ["/public/{name}"],
    }
    if config == "lean":  # no error rendering (aiohttp answers 500), any origin, JWT too
        options.update(
            errors=False,
            cors=CORSOptions(allow_origins=["*"]),
            jwt=JWTVerifier(store, clock=lambda: NOW),
        )
    app = web.Application()
    install_middleware_stack(app, fused=stack == "fused", **options)
    app.router.add_get("/folders/{name}", whoami)
    app.router.add_get("/public/{name}", whoami)
    app.router.add_get("/bad/{name}", bad)
    app.router.add_get("/unavailable", unavailable)
    app.router.add_get("/boom", boom)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/vary", vary)
    app.router.add_get("/stream", anonymous(_stream))
    app.router.add_get("/cancelled", anonymous(cancelled))
    return app


def _requests(signer: HMACSigner) -> list[tuple[str, str, dict[str, str]]]:
    out: list[tuple[str, str, dict[str, str]]] = []
    origins: list[dict[str, str]] = [{}, {"Origin": ORIGIN}, {"Origin": "https://evil.example"}]
    paths = [
        "/folders/a",
        "/public/b",
        "/bad/c",
        "/unavailable",
        "/boom",
        "/redirect",
        "/vary",
        "/stream",
        "/nowhere",
    ]
    for i, (path, origin) in enumerate((p, o) for p in paths for o in origins):
        rid = {"X-BackendAI-RequestID": f"rid-{i}"}
        signed = signer.sign("GET", path, date=NOW)
        forged = {**signed, "Authorization": signed["Authorization"][:-4] + "0000"}
        out.append(("GET", path, {**origin, **rid}))
        out.append(("GET", path, {**origin, **rid, **signed}))
        out.append(("GET", path, {**origin, **rid, **forged}))
    out.append(("POST", "/folders/a", {"X-BackendAI-RequestID": "rid-post"}))  # 405
    out.append(("PROPFIND", "/folders/a", {"X-BackendAI-RequestID": "rid-odd"}))
    out.append(("GET", "/folders/a", {}))  # a fresh request id
    out.append(("GET", "/folders/a", {"X-BackendAI-RequestID": "x" * 300}))
    preflights: list[tuple[str, dict[str, str]]] = [
        ("DELETE", {}),
        ("PATCH", {"Access-Control-Request-Headers": "X-Y"}),
    ]
    for method, extra in preflights:
        for allowed in (ORIGIN, "https://evil.example"):
            headers = {"Origin": allowed, "Access-Control-Request-Method": method, **extra}
            out.append(("OPTIONS", "/folders/a", {**headers, "X-BackendAI-RequestID": "rid-p"}))
    out.append(("OPTIONS", "/folders/a", {"Origin": ORIGIN}))  # not a preflight: 401
    return out


def _series(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    # Durations differ between runs; counts do not.
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        if family.name.startswith("backendai_api_request")
        for sample in family.samples
        if sample.name.endswith(("_total", "_count"))
    }


async def _observe(stack: str, config: str, caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    keypair = _SCENARIO_KEYPAIR
    ak, sk = keypair.access_key, keypair.secret_key
    registry = CollectorRegistry()
    answers = []
    caplog.clear()
    async with TestClient(TestServer(_scenario_app(stack, config, keypair, registry))) as client:
        signer = HMACSigner(ak, sk, str(client.make_url("")))
        token = issue_token(keypair, clock=lambda: NOW)
        requests = _requests(signer)
        requests.append(("GET", "/folders/a", {"X-BackendAI-Token": token, "Origin": ORIGIN}))
        requests.append(("GET", "/folders/a", {"X-BackendAI-Token": token[:-2]}))
        for method, path, headers in requests:
            resp = await client.request(method, path, headers=headers, allow_redirects=False)
            body = _mask((await resp.read()).decode())
            seen = {k: _mask(v) for k, v in resp.headers.items() if k not in _HIDDEN}
            answers.append((method, path, resp.status, sorted(seen.items()), body))
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await client.get("/cancelled", headers={"X-BackendAI-RequestID": "rid-c"})
    records = [
        (
            r.name.rsplit(".", 1)[-1],
            r.levelname,
            _mask(r.getMessage().split(" ")[0] if r.name.endswith("access") else r.getMessage()),
            {k: _mask(str(getattr(r, k, None))) for k in _RECORD_FIELDS},
            r.exc_info is not None,
        )
        for r in caplog.records
        if r.name.startswith(f"test.stack.{stack}.")
    ]
    return {"answers": answers, "series": _series(registry), "records": records}


@pytest.mark.parametrize("config", ["standard", "lean"])
async def test_fused_matches_separate(config: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    separate = await _observe("separate", config, caplog)
    fused = await _observe("fused", config, caplog)
    assert len(fused["answers"]) == len(separate["answers"]) > 80
    for want, got in zip(separate["answers"], fused["answers"], strict=True):
        assert got == want
    assert fused["series"] == separate["series"]
    assert fused["records"] == separate["records"]
    # The matrix reaches every branch: success, 4xx, 5xx, redirects, preflights, streams.
    statuses = {answer[2] for answer in fused["answers"]}
    assert ("access", "INFO") in {(r[0], r[1]) for r in fused["records"]}
    if config == "standard":
        assert statuses >= {200, 204, 302, 400, 401, 403, 404, 405, 500, 503}
        assert any(r[0] == "errors" and r[4] for r in fused["records"])  # the 500, with trace
    else:
        assert statuses >= {200, 204, 302, 404, 405, 500}  # errors escape to aiohttp's 500


async def test_install_unfused() -> None:
    app = web.Application()
    install_middleware_stack(app, fused=False, hmac=HMACVerifier(MemoryKeypairStore()))
    names = [m.__name__ for m in app.middlewares]  # type: ignore[attr-defined]
    assert names == ["request_id", "access_log", "errors", "authenticate"]
    fused = web.Application()
    install_middleware_stack(fused, hmac=HMACVerifier(MemoryKeypairStore()))
    assert [m.__name__ for m in fused.middlewares] == ["backendai_stack"]  # type: ignore[attr-defined]
