"""Server-sent events: framing, keep-alive comments and client-disconnect detection.

::

    async with SSEResponse(request) as sse:
        await sse.pump(events())       # or: await sse.send({"x": 1}, event="progress")
    return sse.response

Guarantees:
- events are framed as ``event:``/``id:``/``retry:`` lines and one ``data:`` line per line of
  data, ended by a blank line [tests/web/test_sse.py::test_framing];
- a comment (``: keep-alive``) is written when nothing was sent for ``keepalive_interval``
  [tests/web/test_sse.py::test_keepalive_comments];
- when the client leaves, ``pump`` stops reading its source and closes it (its ``finally``
  runs) even while the source is idle, and the ``async with`` block ends without an error
  [tests/web/test_sse.py::test_disconnect_releases_source];
- headers asked for by the middlewares (request id, CORS) are sent
  [tests/middlewares/test_stack.py::test_sse_gets_request_id_and_cors_headers];
- when the block fails (the source of ``pump`` or the handler raises), the client gets an
  ``event: error`` frame (the problem body of a ``BackendAIError``, else an opaque internal
  error naming the request id) and then a truncated stream, never a clean end it would take
  for success; the error propagates (the error middleware closes the connection)
  [tests/web/test_sse.py::test_failure_sends_error_event_then_truncates].

Limits: an idle disconnect is noticed within ``poll_interval`` (the transport is polled);
``send`` after a disconnect raises ``ClientDisconnected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from ..contexts import current_request_id
from ..exception import BackendAIError, InvalidArgument
from ..json import dump_json_str
from .exceptions import ClientDisconnected
from .routes import apply_response_headers

__all__ = ("SSEEvent", "SSEResponse", "format_comment", "format_event")

_NEWLINES = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One event: ``data`` (text as is, anything else as JSON) and optional fields."""

    data: Any
    event: str | None = None
    id: str | None = None
    retry: int | None = None


def _field(name: str, value: str) -> str:
    if _NEWLINES.search(value) or "\0" in value:
        raise InvalidArgument(
            f"SSE field {name!r} must not contain newlines or NUL, got {value[:64]!r}",
            data={"field": name},
        )
    return f"{name}: {value}\n"


def format_event(
    data: Any, *, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """The wire form of one event."""
    if isinstance(data, str):
        text = data
    elif isinstance(data, bytes):
        text = data.decode()
    else:
        text = dump_json_str(data)
    parts: list[str] = []
    if event is not None:
        parts.append(_field("event", event))
    if id is not None:
        parts.append(_field("id", id))
    if retry is not None:
        parts.append(f"retry: {int(retry)}\n")
    parts.extend(f"data: {line}\n" for line in _NEWLINES.split(text))
    parts.append("\n")
    return "".join(parts).encode()


def format_comment(text: str = "keep-alive") -> bytes:
    """A comment line (ignored by clients; keeps proxies from closing idle streams)."""
    return "".join(f": {line}\n" for line in _NEWLINES.split(text)).encode() + b"\n"


def _error_payload(exc: BaseException) -> str:
    if isinstance(exc, BackendAIError):
        with contextlib.suppress(Exception):  # an unencodable problem falls through
            return dump_json_str(exc.problem())
    opaque = BackendAIError(
        "The event stream failed; the server logged the error.",
        data={"request_id": current_request_id()},
    )
    return dump_json_str(opaque.problem())


class SSEResponse:
    """A ``text/event-stream`` response with keep-alives and disconnect detection."""

    def __init__(
        self,
        request: web.Request,
        *,
        keepalive_interval: float = 15.0,
        poll_interval: float = 1.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if keepalive_interval <= 0 or poll_interval <= 0:
            raise InvalidArgument(
                "keepalive_interval and poll_interval must be positive",
                data={"field": "keepalive_interval"},
            )
        self.request = request
        self.response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "Connection": "keep-alive",
                "X-Accel-Buffering": "no",
                **(headers or {}),
            },
        )
        self._keepalive_interval = keepalive_interval
        self._poll_interval = poll_interval
        self._lock = asyncio.Lock()
        self._disconnected = asyncio.Event()
        self._last_write = 0.0
        self._group: asyncio.TaskGroup | None = None
        self._watch: asyncio.Task[None] | None = None
        self.sent_events = 0

    @property
    def disconnected(self) -> bool:
        """Whether the client has gone."""
        return self._disconnected.is_set()

    async def wait_disconnected(self) -> None:
        """Return once the client has gone."""
        await self._disconnected.wait()

    async def __aenter__(self) -> Self:
        apply_response_headers(self.request, self.response)
        await self.response.prepare(self.request)
        self._last_write = asyncio.get_running_loop().time()
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._watch = self._group.create_task(self._watch_loop())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._watch is not None:
            self._watch.cancel()
        if self._group is not None:
            await self._group.__aexit__(None, None, None)
            self._group = None
        if isinstance(exc, ClientDisconnected):
            return True
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            # Tell the client, and end without the last chunk: a clean end reads as success.
            with contextlib.suppress(ConnectionError):
                await self._write(format_event(_error_payload(exc), event="error"))
            return False
        if not self.disconnected and exc is None:
            with contextlib.suppress(ConnectionError):
                await self.response.write_eof()
        return False

    async def _write(self, payload: bytes) -> None:
        if self.disconnected:
            raise ClientDisconnected("the SSE client has disconnected")
        async with self._lock:
            try:
                await self.response.write(payload)
            except (ConnectionError, RuntimeError) as exc:
                # aiohttp raises ClientConnectionResetError or "Cannot write to closing
                # transport"; both mean the peer is gone.
                self._disconnected.set()
                raise ClientDisconnected("the SSE client has disconnected") from exc
            self._last_write = asyncio.get_running_loop().time()

    async def send(
        self,
        data: Any,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
    ) -> None:
        """Send one event; raises ``ClientDisconnected`` once the client has gone."""
        await self._write(format_event(data, event=event, id=id, retry=retry))
        self.sent_events += 1

    async def comment(self, text: str = "keep-alive") -> None:
        """Send a comment line."""
        await self._write(format_comment(text))

    async def pump(self, source: AsyncIterable[Any]) -> None:
        """Send every item of ``source`` (``SSEEvent`` or data) until it ends or the client leaves.

        The source is closed (``aclose``) in every case. When the client leaves first, this
        raises ``ClientDisconnected``, which the ``async with`` block absorbs. Cancelling
        cancels the reading of the source and closes it.
        """
        iterator = aiter(source)

        async def consume() -> None:
            async for item in iterator:
                if isinstance(item, SSEEvent):
                    await self.send(item.data, event=item.event, id=item.id, retry=item.retry)
                else:
                    await self.send(item)

        consumer = asyncio.ensure_future(consume())
        watcher = asyncio.ensure_future(self._disconnected.wait())
        try:
            await asyncio.wait({consumer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            consumer.cancel()
            watcher.cancel()
            # Both are ours and already cancelled; wait for them to finish unwinding.
            await asyncio.wait({consumer, watcher})
            if isinstance(iterator, AsyncIterator) and hasattr(iterator, "aclose"):
                await iterator.aclose()
        if not consumer.cancelled() and (error := consumer.exception()) is not None:
            raise error
        if self.disconnected:
            raise ClientDisconnected("the SSE client has disconnected")

    async def _watch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.disconnected:
            await asyncio.sleep(min(self._poll_interval, self._keepalive_interval))
            transport = self.request.transport
            if transport is None or transport.is_closing():
                self._disconnected.set()
                return
            if loop.time() - self._last_write >= self._keepalive_interval:
                with contextlib.suppress(ClientDisconnected):
                    await self.comment()
