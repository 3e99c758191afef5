"""HTTPSessionPool: keyed sessions and eviction, context headers, retry and breaker, errors."""

from __future__ import annotations

import asyncio
import socket

import pytest

from ai.backend.common.clients.http import (
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    HTTPClientError,
    HTTPPoolClosed,
    HTTPServerError,
    HTTPSessionPool,
    HTTPTimeout,
    HTTPUnavailable,
    http_policy,
)
from ai.backend.common.contexts import bind_request_id, bind_traceparent
from ai.backend.common.resilience import FakeClock, Pipeline
from tests._helpers import until

from .conftest import SECRET, FakeStorageProxy

_CREDS = {"X-BackendAI-Storage-Auth-Token": SECRET}


def _dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def test_sessions_keyed_and_evicted(proxy: tuple[FakeStorageProxy, str]) -> None:
    _fake, endpoint = proxy
    clock = FakeClock()
    async with HTTPSessionPool(
        idle_timeout=60.0, idle_check_interval=3600.0, clock=clock.monotonic
    ) as pool:
        for _ in range(3):
            await pool.request("GET", endpoint, "/volumes", credentials=_CREDS)
        await pool.request("GET", endpoint, "/", credentials={})
        stats = pool.statistics()
        assert (stats.sessions, stats.created) == (2, 2)
        clock.advance(59.0)
        assert await pool.evict_idle() == 0
        clock.advance(2.0)
        assert await pool.evict_idle() == 2
        assert pool.statistics().sessions == 0
        await pool.request("GET", endpoint, "/volumes", credentials=_CREDS)
        assert pool.statistics().created == 3


async def test_context_headers_propagated(
    proxy: tuple[FakeStorageProxy, str], pool: HTTPSessionPool
) -> None:
    fake, endpoint = proxy
    traceparent = "00-" + "c" * 32 + "-" + "d" * 16 + "-01"
    with bind_request_id("req-http"), bind_traceparent(traceparent):
        response = await pool.request("GET", endpoint, "/volumes", credentials=_CREDS)
    assert response.status == 200
    assert response.json()["volumes"][0]["name"] == "local"
    assert fake.seen_headers[-1][REQUEST_ID_HEADER] == "req-http"
    assert fake.seen_headers[-1][TRACEPARENT_HEADER] == traceparent
    await pool.request("GET", endpoint, "/volumes", credentials=_CREDS)
    assert REQUEST_ID_HEADER not in fake.seen_headers[-1]


async def test_retry_and_breaker(proxy: tuple[FakeStorageProxy, str]) -> None:
    fake, endpoint = proxy
    clock = FakeClock(auto_advance=True)

    def policy(origin: str) -> Pipeline:
        return http_policy(origin, minimum_calls=2, window_size=4, wait_in_open=30.0, clock=clock)

    async with HTTPSessionPool(policy_factory=policy) as pool:
        # refused connections were never sent: retried (3 attempts), then fail
        dead = _dead_endpoint()
        with pytest.raises(HTTPUnavailable):
            await pool.request("POST", dead, "/folder/create", json={})
        assert len(clock.sleeps) >= 1  # the retry backed off before another attempt
        # 5xx answers are not retried but open the breaker
        fake.fail_next.extend([500, 500])
        for _ in range(2):
            with pytest.raises(HTTPServerError):
                await pool.request("GET", endpoint, "/volumes", credentials=_CREDS)
        served = len(fake.seen_headers)
        with pytest.raises(HTTPUnavailable) as opened:
            await pool.request("GET", endpoint, "/volumes", credentials=_CREDS)
        assert opened.value.data.get("breaker_open") is True
        assert len(fake.seen_headers) == served  # failed fast, never sent
        clock.advance(31.0)
        response = await pool.request("GET", endpoint, "/volumes", credentials=_CREDS)
        assert response.status == 200


async def test_timeout_and_errors_mapped(proxy: tuple[FakeStorageProxy, str]) -> None:
    fake, endpoint = proxy
    async with HTTPSessionPool(policy_factory=None) as pool:
        with pytest.raises(HTTPTimeout):
            await pool.request("GET", endpoint, "/slow", credentials=_CREDS, timeout=0.2)
        assert pool.statistics().in_flight == 0
        with pytest.raises(HTTPUnavailable):
            await pool.request("GET", _dead_endpoint(), "/")
        with pytest.raises(HTTPClientError):
            await pool.request("GET", "not-a-url", "/")
        call = asyncio.create_task(
            pool.request("GET", endpoint, "/slow", credentials=_CREDS, timeout=None)
        )
        served = len(fake.seen_headers)
        await until(lambda: len(fake.seen_headers) > served)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert pool.statistics().in_flight == 0
    with pytest.raises(HTTPPoolClosed):
        await pool.request("GET", endpoint, "/")
