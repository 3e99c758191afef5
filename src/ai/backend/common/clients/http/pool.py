"""A pool of aiohttp sessions keyed by endpoint and credentials, with resilience per endpoint.

One ``aiohttp.ClientSession`` (and its connection pool) per ``(endpoint, credentials)``: callers
with the same endpoint and credential headers share keep-alive connections; a session unused for
``idle_timeout`` is closed. Each request carries ``X-BackendAI-RequestID`` and ``traceparent``
from the caller's context, runs under the endpoint's resilience policy (default
:func:`http_policy`: retry what was never sent, then a circuit breaker) and a per-request
deadline, and returns the whole response (body read, connection released).

Guarantees:
- sessions are shared per (endpoint, credentials) and closed after ``idle_timeout``
  [tests/clients/http/test_pool.py::test_sessions_keyed_and_evicted];
- the request id and traceparent of the caller reach the server
  [tests/clients/http/test_pool.py::test_context_headers_propagated];
- a refused connection is retried (it was never sent), a 5xx opens the breaker
  [tests/clients/http/test_pool.py::test_retry_and_breaker];
- a request past its deadline raises :class:`HTTPTimeout`; no ``aiohttp`` error escapes
  [tests/clients/http/test_pool.py::test_timeout_and_errors_mapped].

Limits:
- a request that failed after it was sent is retried only for idempotent methods
  [tests/clients/http/test_pool.py::test_retry_and_breaker].
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
from yarl import URL

from ...aio import AsyncResource
from ...contexts import current_request_id, current_traceparent
from ...exception import BackendAIError
from ...json import load_json
from ...resilience import (
    SYSTEM_CLOCK,
    Backoff,
    BreakerOpen,
    CallNotPermitted,
    CircuitBreaker,
    Clock,
    Pipeline,
    Policy,
    Retry,
)
from .exceptions import (
    HTTPClientError,
    HTTPPoolClosed,
    HTTPServerError,
    HTTPStatusError,
    HTTPTimeout,
    HTTPUnavailable,
    http_error_class,
)

__all__ = (
    "REQUEST_ID_HEADER",
    "TRACEPARENT_HEADER",
    "HTTPPoolStatistics",
    "HTTPResponse",
    "HTTPSessionPool",
    "http_policy",
)

REQUEST_ID_HEADER: Final = "X-BackendAI-RequestID"
TRACEPARENT_HEADER: Final = "traceparent"
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_NO_TIMEOUT: Final = object()


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """A complete response: status, headers and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (``None`` for an empty body)."""
        if not self.body:
            return None
        try:
            return load_json(self.body)
        except ValueError as exc:
            raise HTTPClientError(f"response body is not JSON: {exc}") from exc


@dataclass(frozen=True, slots=True)
class HTTPPoolStatistics:
    """A snapshot of :class:`HTTPSessionPool`."""

    sessions: int
    """Open sessions (one per endpoint and credentials)."""
    in_flight: int
    """Requests under way."""
    created: int
    """Sessions created since the pool opened."""
    evictions: int
    """Sessions closed because they stayed idle."""


@dataclass(slots=True)
class _Session:
    session: aiohttp.ClientSession
    last_used: float
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class _Key:
    origin: str
    credentials: str = field(repr=False)


def _not_sent(exc: BaseException) -> bool:
    return isinstance(exc, HTTPUnavailable) and not exc.data.get("sent", False)


def http_policy(
    endpoint: str,
    *,
    max_attempts: int = 3,
    failure_rate_threshold: float = 0.5,
    window_size: int = 20,
    minimum_calls: int = 5,
    wait_in_open: float = 10.0,
    clock: Clock = SYSTEM_CLOCK,
) -> Pipeline:
    """Retry requests that never reached ``endpoint``, then a breaker on outages and 5xx."""
    name = f"http:{endpoint}"
    return Pipeline(
        [
            Retry(
                name=name,
                max_attempts=max_attempts,
                backoff=Backoff(initial=0.05, max_delay=1.0),
                retry_on=(HTTPUnavailable,),
                never_retry_on=(CallNotPermitted,),
                retry_if=_not_sent,
                clock=clock,
            ),
            CircuitBreaker(
                name=name,
                failure_rate_threshold=failure_rate_threshold,
                window_size=window_size,
                minimum_calls=minimum_calls,
                wait_in_open=wait_in_open,
                record_on=(HTTPUnavailable, HTTPTimeout, HTTPServerError),
                clock=clock,
            ),
        ],
        dependency=name,
    )


class HTTPSessionPool(AsyncResource):
    """aiohttp sessions keyed by (endpoint origin, credential headers), evicted when idle."""

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        idle_timeout: float = 300.0,
        idle_check_interval: float | None = None,
        limit_per_host: int = 100,
        policy_factory: Callable[[str], Policy] | None = http_policy,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("timeout", timeout),
            ("connect_timeout", connect_timeout),
            ("idle_timeout", idle_timeout),
        ):
            if not value > 0:
                raise HTTPClientError(f"{name} must be > 0, got {value!r}", data={"field": name})
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._idle_check_interval = (
            idle_check_interval if idle_check_interval is not None else min(30.0, idle_timeout)
        )
        self._limit_per_host = limit_per_host
        self._policy_factory = policy_factory
        self._policies: dict[str, Policy] = {}
        self._clock = clock
        self._sessions: dict[_Key, _Session] = {}
        self._state = "new"
        self._created = self._evictions = 0
        self._runner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def open(self) -> None:
        """Start the idle-eviction loop; idempotent."""
        if self._state == "open":
            return
        if self._state == "closed":
            raise HTTPPoolClosed("this HTTPSessionPool was closed; make a new one")
        ready = asyncio.Event()
        self._runner = asyncio.create_task(self._run(ready), name="http-session-pool")
        await ready.wait()
        self._state = "open"

    async def _run(self, ready: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            evictor = tg.create_task(self._evict_loop())
            ready.set()
            await self._stop.wait()
            evictor.cancel()

    async def aclose(self) -> None:
        """Stop eviction and close every session; idempotent."""
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        self._stop.set()
        try:
            if self._runner is not None:
                await asyncio.wait([self._runner])
        finally:
            self._runner = None
            sessions = list(self._sessions.values())
            self._sessions.clear()
            for entry in sessions:
                await entry.session.close()

    async def _evict_loop(self) -> None:
        while True:
            await asyncio.sleep(self._idle_check_interval)
            await self.evict_idle()

    async def evict_idle(self) -> int:
        """Close sessions idle for ``idle_timeout`` with no request under way; return how many."""
        now = self._clock()
        idle = [
            key
            for key, entry in self._sessions.items()
            if entry.in_flight == 0 and now - entry.last_used >= self._idle_timeout
        ]
        for key in idle:
            entry = self._sessions.pop(key)
            self._evictions += 1
            await entry.session.close()
        return len(idle)

    def statistics(self) -> HTTPPoolStatistics:
        """Sessions, requests under way and counters."""
        return HTTPPoolStatistics(
            sessions=len(self._sessions),
            in_flight=sum(e.in_flight for e in self._sessions.values()),
            created=self._created,
            evictions=self._evictions,
        )

    def policy(self, endpoint: str) -> Policy | None:
        """The resilience policy of ``endpoint`` (its origin), built once."""
        if self._policy_factory is None:
            return None
        origin = _origin(endpoint)
        policy = self._policies.get(origin)
        if policy is None:
            policy = self._policies[origin] = self._policy_factory(origin)
        return policy

    def _session(self, origin: str, credentials: Mapping[str, str]) -> _Session:
        digest = hashlib.sha256(repr(sorted(credentials.items())).encode()).hexdigest()
        key = _Key(origin, digest)
        entry = self._sessions.get(key)
        if entry is None:
            session = aiohttp.ClientSession(
                base_url=origin,
                headers=dict(credentials),
                connector=aiohttp.TCPConnector(limit_per_host=self._limit_per_host),
            )
            entry = self._sessions[key] = _Session(session, self._clock())
            self._created += 1
        return entry

    async def request(
        self,
        method: str,
        endpoint: str,
        path: str,
        *,
        credentials: Mapping[str, str] | None = None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | object | None = _NO_TIMEOUT,  # noqa: ASYNC109 (per request deadline)
        error_class: Callable[[int], type[HTTPStatusError]] = http_error_class,
    ) -> HTTPResponse:
        """Send one request to ``endpoint`` + ``path`` and return the whole response.

        A 4xx/5xx answer raises ``error_class(status)`` carrying the body's ``error_code``.
        Cancelling the caller aborts the request and releases its connection.
        """
        if self._state != "open":
            raise HTTPPoolClosed(f"HTTPSessionPool is {self._state}, not open")
        deadline = self._timeout if timeout is _NO_TIMEOUT else timeout
        if deadline is not None and not isinstance(deadline, int | float):
            raise HTTPClientError(f"timeout must be seconds or None, got {deadline!r}")
        origin = _origin(endpoint)
        base_path = URL(endpoint).path.rstrip("/")
        url = base_path + "/" + path.lstrip("/")
        loop = asyncio.get_running_loop()
        when = None if deadline is None else loop.time() + deadline
        send_headers = dict(headers or {})
        if (rid := current_request_id()) is not None:
            send_headers[REQUEST_ID_HEADER] = rid
        if (tp := current_traceparent()) is not None:
            send_headers[TRACEPARENT_HEADER] = tp
        args = (origin, dict(credentials or {}), method.upper(), url, json, params, send_headers)
        policy = self.policy(origin)
        try:
            if policy is None:
                return await self._attempt(*args, when, error_class)
            return await policy.call(self._attempt, *args, when, error_class)
        except BreakerOpen as exc:
            raise HTTPUnavailable(
                f"circuit breaker of {origin} is open: {exc}",
                data={"endpoint": origin, "breaker_open": True},
            ) from exc

    async def _attempt(
        self,
        origin: str,
        credentials: dict[str, str],
        method: str,
        url: str,
        json: Any,
        params: Mapping[str, str] | None,
        headers: dict[str, str],
        when: float | None,
        error_class: Callable[[int], type[HTTPStatusError]],
    ) -> HTTPResponse:
        entry = self._session(origin, credentials)
        entry.in_flight += 1
        sent = False
        try:
            async with asyncio.timeout_at(when) as scope:
                ctimeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout)
                async with entry.session.request(
                    method, url, json=json, params=params, headers=headers, timeout=ctimeout
                ) as resp:
                    sent = True
                    body = await resp.read()
                    response = HTTPResponse(resp.status, dict(resp.headers), body)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise HTTPUnavailable(
                f"cannot connect to {origin}: {exc!r}", data={"endpoint": origin, "sent": False}
            ) from exc
        except TimeoutError as exc:
            if isinstance(exc, BackendAIError) or not scope.expired():
                raise HTTPTimeout(f"{method} {origin}{url}: {exc!r}") from exc
            raise HTTPTimeout(
                f"{method} {origin}{url} got no complete answer within its deadline",
                data={"endpoint": origin, "path": url},
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            # Sent (or partly sent): only idempotent methods may be retried.
            raise HTTPUnavailable(
                f"{method} {origin}{url} failed: {exc!r}",
                data={"endpoint": origin, "sent": sent or method not in _IDEMPOTENT},
            ) from exc
        finally:
            entry.in_flight -= 1
            entry.last_used = self._clock()
        if response.status >= 400:
            raise _status_error(error_class, method, origin + url, response)
        return response


def _origin(endpoint: str) -> str:
    url = URL(endpoint)
    if not url.is_absolute() or url.scheme not in ("http", "https"):
        raise HTTPClientError(
            f"endpoint must be an absolute http(s) URL, got {endpoint!r}",
            data={"field": "endpoint"},
        )
    return str(url.origin())


def _status_error(
    error_class: Callable[[int], type[HTTPStatusError]],
    method: str,
    target: str,
    response: HTTPResponse,
) -> HTTPStatusError:
    data: dict[str, Any] = {"status": response.status, "target": target}
    message = ""
    try:
        body = response.json()
    except HTTPClientError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("error_code"), str):
            data["upstream_error_code"] = body["error_code"]
        message = str(body.get("msg") or body.get("title") or "")
        if isinstance(body.get("type"), str):
            data["upstream_type"] = body["type"]
    elif response.body:
        message = response.body[:200].decode("utf-8", "replace")
    cls = error_class(response.status)
    suffix = f": {message}" if message else ""
    return cls(f"{method} {target} answered {response.status}{suffix}", data=data)
