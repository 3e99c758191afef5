"""The aiohttp SSE handler of one task, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncGenerator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from ai.backend.common.bgtask import (
    BgtaskMetrics,
    MemoryTaskStore,
    ProgressReporter,
    TaskFollower,
    TaskId,
    TaskRecord,
    TaskResult,
    TaskStoreUnavailable,
)
from ai.backend.common.bgtask.sse import format_sse, make_task_events_handler
from tests._helpers import until

from ._stack import open_stack

ROUTE = "/events/background-task"


async def read_frames(response: aiohttp.ClientResponse) -> AsyncGenerator[dict[str, str], None]:
    """Each frame's fields (``event``, ``retry``, ``data`` joined by newlines) until the stream
    ends; comments are skipped."""
    fields: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith(":"):
            continue
        if line == "":
            if fields:
                yield fields
            fields = {}
            continue
        key, _, value = line.partition(": ")
        if key == "data" and "data" in fields:
            fields["data"] += "\n" + value
        else:
            fields[key] = value


async def read_events(response: aiohttp.ClientResponse) -> AsyncGenerator[tuple[str, str], None]:
    """(event, data) pairs until the stream ends; comments are skipped."""
    async for fields in read_frames(response):
        yield fields.get("event", ""), fields.get("data", "")


def app_for(follower: TaskFollower, metrics: BgtaskMetrics) -> web.Application:
    app = web.Application()
    handler = make_task_events_handler(
        follower, metrics=metrics, keepalive_interval=0.2, poll_interval=0.05
    )
    app.router.add_get(ROUTE, handler)
    return app


def test_format_sse() -> None:
    assert format_sse('{"a":1}', event="bgtask_done") == b'event: bgtask_done\ndata: {"a":1}\n\n'
    assert format_sse("x\ny", retry=5) == b"retry: 5\ndata: x\ndata: y\n\n"


async def test_stream_ends_with_final_event() -> None:
    registry = CollectorRegistry()
    metrics = BgtaskMetrics(registry)
    async with (
        open_stack() as stack,
        TestClient(TestServer(app_for(stack.follower, metrics))) as client,
    ):
        task_id = await stack.manager.start("steps")
        response = await client.get(ROUTE, params={"taskId": str(task_id)})
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        received: list[tuple[str, str]] = []
        async for name, data in read_events(response):
            received.append((name, data))
            if name == "bgtask_updated" and json.loads(data)["current_progress"] == 1.0:
                stack.release.set()
        assert received[-1] == ("server_close", "{}")
        assert received[-2][0] == "bgtask_done"
        assert json.loads(received[-2][1]) == {"task_id": str(task_id), "message": "finished"}
        assert all(name == "bgtask_updated" for name, _ in received[:-2])
        await until(lambda: registry.get_sample_value("backendai_bgtask_sse_streams") == 0)


async def test_early_disconnect_releases_everything() -> None:
    registry = CollectorRegistry()
    metrics = BgtaskMetrics(registry)
    async with (
        open_stack() as stack,
        TestClient(TestServer(app_for(stack.follower, metrics))) as client,
    ):
        task_id = await stack.manager.start("steps")
        response = await client.get(ROUTE, params={"task_id": str(task_id)})
        events = read_events(response)
        first = await anext(events)
        assert first[0] == "bgtask_updated"
        assert stack.hub.statistics().propagators == 1
        assert registry.get_sample_value("backendai_bgtask_sse_streams") == 1
        await events.aclose()
        response.close()  # the client leaves while the task is still running

        def released() -> bool:
            return (
                stack.hub.statistics().propagators == 0
                and stack.follower.statistics().active == 0
                and registry.get_sample_value("backendai_bgtask_sse_streams") == 0
            )

        await until(released)
        # No series was ever labelled with the task.
        for family in registry.collect():
            for sample in family.samples:
                assert str(task_id) not in sample.labels.values()
        assert (await stack.store.get(task_id)) is not None  # the task itself goes on
        stack.release.set()
        record = await stack.manager.wait(task_id)
        assert record.state.value == "succeeded"


async def test_unknown_task_is_404() -> None:
    registry = CollectorRegistry()
    metrics = BgtaskMetrics(registry)
    async with (
        open_stack() as stack,
        TestClient(TestServer(app_for(stack.follower, metrics))) as client,
    ):
        missing = await client.get(ROUTE, params={"taskId": str(uuid.uuid4())})
        assert missing.status == 404
        body = await missing.json(content_type=None)
        assert body["error_code"] == "bgtask_read_not-found"
        bad = await client.get(ROUTE, params={"taskId": "not-a-uuid"})
        assert bad.status == 400
        assert stack.hub.statistics().propagators == 0
        assert registry.get_sample_value("backendai_bgtask_sse_streams") == 0


# The SSE event names an upstream client knows (lablup/backend.ai,
# src/ai/backend/common/dto/manager/streaming/types.py: BgtaskSSEEventName), and the stream's
# last event. Upstream's server sends a partial success as ``bgtask_done`` (with ``errors``)
# and ``retry: 5`` on ``bgtask_updated`` (events/user_event/user_bgtask_event.py).
UPSTREAM_SSE_NAMES = {
    "bgtask_updated",
    "bgtask_done",
    "bgtask_cancelled",
    "bgtask_failed",
    "server_close",
}


@pytest.mark.parametrize("outcome", ["done", "partial", "failed", "cancelled"])
async def test_event_names_are_upstreams(outcome: str) -> None:
    registry = CollectorRegistry()
    async with (
        open_stack() as stack,
        TestClient(TestServer(app_for(stack.follower, BgtaskMetrics(registry)))) as client,
    ):
        go = asyncio.Event()

        async def handler(reporter: ProgressReporter) -> TaskResult:
            reporter.update(current=1, total=3, message="one")
            await reporter.flush()
            await go.wait()
            if outcome == "failed":
                raise RuntimeError("vol3 is gone")
            if outcome == "cancelled":
                await asyncio.Event().wait()
            errors = ["vol3: quota"] if outcome == "partial" else []
            return TaskResult(message="2 of 3 copied", errors=errors)

        task_id = await stack.manager.start_coroutine(handler, name="copy")
        response = await client.get(ROUTE, params={"taskId": str(task_id)})
        frames: list[dict[str, str]] = []
        async for fields in read_frames(response):
            frames.append(fields)
            if fields.get("event") == "bgtask_updated" and '"one"' in fields["data"]:
                if outcome == "cancelled":
                    await stack.manager.cancel(task_id)
                go.set()
    names = [f["event"] for f in frames]
    assert set(names) <= UPSTREAM_SSE_NAMES
    assert names[-1] == "server_close"
    final = frames[-2]
    expected = {"done": "bgtask_done", "partial": "bgtask_done"}.get(outcome, f"bgtask_{outcome}")
    assert final["event"] == expected
    if outcome == "partial":
        assert json.loads(final["data"])["errors"] == ["vol3: quota"]
    for frame in frames:
        assert frame.get("retry") == ("5" if frame["event"] == "bgtask_updated" else None)


class FlakyStore(MemoryTaskStore):
    """A memory store whose reads fail while ``failing`` is set (Redis unreachable)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    async def get(self, task_id: TaskId) -> TaskRecord | None:
        if self.failing:
            raise TaskStoreUnavailable(f"get({task_id}): connection refused")
        return await super().get(task_id)


async def test_store_error_mid_stream_ends_with_server_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    store = FlakyStore()
    registry = CollectorRegistry()
    # No broadcasts reach the hub: the follower reads the store, which then fails.
    async with (
        open_stack(feed_hub=False, poll_interval=0.05, store=store) as stack,
        TestClient(TestServer(app_for(stack.follower, BgtaskMetrics(registry)))) as client,
    ):
        task_id = await stack.manager.start("steps")
        response = await client.get(ROUTE, params={"taskId": str(task_id)})
        received: list[tuple[str, str]] = []
        async for name, data in read_events(response):
            received.append((name, data))
            store.failing = True
        assert received[0][0] == "bgtask_updated"
        assert received[-1] == ("server_close", "{}")
        await until(lambda: registry.get_sample_value("backendai_bgtask_sse_streams") == 0)
        assert stack.hub.statistics().propagators == 0
        store.failing = False
    unhandled = [r for r in caplog.records if r.name.startswith("aiohttp")]
    assert unhandled == []
    warnings = [r for r in caplog.records if r.name == "ai.backend.common.bgtask.sse"]
    assert len(warnings) == 1
    assert str(task_id) in warnings[0].getMessage()
    assert "connection refused" in warnings[0].getMessage()
