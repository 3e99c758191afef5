"""Server-sent events of one background task, for aiohttp (upstream's event stream).

The stream carries each bgtask event as ``event: <name>`` with the event's JSON as ``data``
(``bgtask_updated`` frames with ``retry: 5``, then one of ``bgtask_done``, ``bgtask_failed``,
``bgtask_cancelled``), then ``event: server_close`` with ``data: {}``, as the upstream manager's
``/events/background-task`` does, so upstream clients can follow our tasks. Those are the only
names upstream's client knows (its ``BgtaskSSEEventName``): a partial success is sent as
``bgtask_done`` whose data keeps the ``errors`` list, as upstream's server does (the broadcast on
Redis stays ``bgtask_partial_success``). Comments (``: keep-alive``) are written while the task
is quiet.

This module uses aiohttp directly (it sits in layer 5, below ``web/``); a route may wrap
:meth:`TaskFollower.follow` with ``web.SSEResponse`` instead.

Guarantees:
- the stream ends with the task's final event and ``server_close``
  [tests/bgtask/test_sse.py::test_stream_ends_with_final_event];
- every event name is one upstream's client knows, and ``bgtask_updated`` frames carry
  upstream's ``retry: 5`` [tests/bgtask/test_sse.py::test_event_names_are_upstreams];
- when the client disconnects early, the hub propagator, the follow iteration and the SSE
  gauge are released, and no series names the task
  [tests/bgtask/test_sse.py::test_early_disconnect_releases_everything];
- an unknown task id is a 404 problem before any event is sent
  [tests/bgtask/test_sse.py::test_unknown_task_is_404];
- a task-store error while streaming (Redis unreachable, the task gone) is logged and ends the
  stream with ``server_close``; it never escapes to aiohttp as an unhandled error
  [tests/bgtask/test_sse.py::test_store_error_mid_stream_ends_with_server_close].

Limits: a disconnect is noticed within ``poll_interval`` while the task is quiet (the transport
is polled) [tests/bgtask/test_sse.py::test_early_disconnect_releases_everything].
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..events import BgtaskDoneEvent, BgtaskPartialSuccessEvent, BgtaskUpdatedEvent
from ..json import dump_json_str
from ._events import BgtaskEvent
from .exceptions import BgtaskError, TaskNotFound
from .follow import TaskFollower
from .metrics import BgtaskMetrics
from .types import TaskId

__all__ = (
    "SERVER_CLOSE_EVENT",
    "UPDATED_RETRY",
    "format_sse",
    "make_task_events_handler",
    "sse_frame",
    "stream_task_events",
)

SERVER_CLOSE_EVENT = "server_close"
"""The last event of a stream (upstream's)."""

UPDATED_RETRY = 5
"""The ``retry:`` field of ``bgtask_updated`` frames (upstream's ``retry_count``)."""

log = logging.getLogger(__spec__.name if __spec__ else __name__)


def format_sse(data: str, *, event: str | None = None, retry: int | None = None) -> bytes:
    """One SSE frame: ``event:``, ``retry:`` and one ``data:`` line per line of ``data``."""
    lines = []
    if event is not None:
        lines.append(f"event: {event}\n")
    if retry is not None:
        lines.append(f"retry: {retry}\n")
    lines.extend(f"data: {line}\n" for line in data.splitlines() or [""])
    lines.append("\n")
    return "".join(lines).encode()


def sse_frame(event: BgtaskEvent) -> bytes:
    """The SSE frame of a bgtask event as upstream's server writes it: a partial success is
    named ``bgtask_done`` (its data keeps ``errors``), ``bgtask_updated`` has ``retry: 5``."""
    payload = dump_json_str(event.model_dump(mode="json"))
    if isinstance(event, BgtaskPartialSuccessEvent):
        return format_sse(payload, event=BgtaskDoneEvent.event_name)
    if isinstance(event, BgtaskUpdatedEvent):
        return format_sse(payload, event=event.event_name, retry=UPDATED_RETRY)
    return format_sse(payload, event=event.event_name)


async def stream_task_events(
    request: web.Request,
    follower: TaskFollower,
    task_id: TaskId,
    *,
    metrics: BgtaskMetrics | None = None,
    keepalive_interval: float = 15.0,
    poll_interval: float = 1.0,
) -> web.StreamResponse:
    """Stream ``task_id``'s events to the client until the final one (or until it leaves).

    Raises ``TaskNotFound`` (render it as a 404) before the response starts if the task does not
    exist. Everything it registered is released however it ends.
    """
    events = follower.follow(task_id)
    try:
        first = await anext(events)
    except StopAsyncIteration:  # pragma: no cover - follow() always yields before ending
        raise TaskNotFound(
            f"background task {task_id} not found", data={"task_id": str(task_id)}
        ) from None
    except BaseException:
        await events.aclose()
        raise
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "Connection": "keep-alive",
            "X-Accel-Buffering": "no",
        },
    )
    if metrics is not None:
        metrics.sse_opened()
    loop = asyncio.get_running_loop()
    last_write = loop.time()

    async def write(frame: bytes) -> None:
        nonlocal last_write
        await response.write(frame)
        last_write = loop.time()

    async def pump() -> None:
        event = first
        try:
            while True:
                await write(sse_frame(event))
                try:
                    nxt = await anext(events, None)
                except BgtaskError as exc:
                    # The store failed (or lost the task) while following: end the stream
                    # as upstream does, instead of an unhandled error and a truncated body.
                    log.warning("bgtask %s: SSE stream ended early: %s", task_id, exc)
                    break
                if nxt is None:
                    break
                event = nxt
            await write(format_sse("{}", event=SERVER_CLOSE_EVENT))
        except (ConnectionError, RuntimeError):
            return  # the client left while we wrote: aiohttp's reset / closing-transport errors

    async def watch(stop: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(min(poll_interval, keepalive_interval))
            transport = request.transport
            if transport is None or transport.is_closing():
                stop()
                return
            if loop.time() - last_write >= keepalive_interval:
                try:
                    await write(b": keep-alive\n\n")
                except (ConnectionError, RuntimeError):
                    stop()
                    return

    try:
        await response.prepare(request)
        await _race(pump(), watch)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client left while we wrote: aiohttp's reset / closing-transport errors
    finally:
        await events.aclose()
        if metrics is not None:
            metrics.sse_closed()
    return response


async def _race(
    main: Awaitable[None], watcher: Callable[[Callable[[], None]], Awaitable[None]]
) -> None:
    """Run ``main``; ``watcher(stop)`` runs beside it and may stop it; both end together."""
    async with asyncio.TaskGroup() as tg:
        main_task = tg.create_task(_as_coro(main))

        def stop() -> None:
            main_task.cancel()

        watch_task = tg.create_task(_as_coro(watcher(stop)))
        main_task.add_done_callback(lambda _: watch_task.cancel())


async def _as_coro(awaitable: Awaitable[None]) -> None:
    await awaitable


def make_task_events_handler(
    follower: TaskFollower,
    *,
    metrics: BgtaskMetrics | None = None,
    keepalive_interval: float = 15.0,
    poll_interval: float = 1.0,
    param: str = "task_id",
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler streaming the task named by the query or path parameter ``param``
    (``taskId`` also accepted, as upstream); a bad or unknown id gives 400 / 404."""

    async def handler(request: web.Request) -> web.StreamResponse:
        raw = (
            request.match_info.get(param) or request.query.get(param) or request.query.get("taskId")
        )
        try:
            task_id = TaskId(uuid.UUID(str(raw)))
        except ValueError:
            raise web.HTTPBadRequest(
                text=dump_json_str({"msg": f"{param} must be a UUID, got {raw!r}"}),
                content_type="application/json",
            ) from None
        try:
            return await stream_task_events(
                request,
                follower,
                task_id,
                metrics=metrics,
                keepalive_interval=keepalive_interval,
                poll_interval=poll_interval,
            )
        except TaskNotFound as exc:
            raise web.HTTPNotFound(
                text=dump_json_str(exc.problem()), content_type="application/problem+json"
            ) from None

    return handler
