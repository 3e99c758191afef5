"""``bgtask list/watch/cancel`` as subprocesses, with a manager running in the test process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pydantic import BaseModel

from ai.backend.common.bgtask import (
    BackgroundTaskConfig,
    BackgroundTaskManager,
    ProgressReporter,
    TaskRegistry,
    TaskState,
)
from ai.backend.common.bgtask.redis import RedisTaskStore
from ai.backend.common.clients.valkey import ValkeyClient, ValkeyTarget
from ai.backend.common.events import EventProducer
from ai.backend.common.message_queue import QueueConfig
from ai.backend.common.message_queue.redis import RedisMessageQueue

from ._cli import arun_cli, json_lines


class CountArgs(BaseModel):
    steps: int
    interval: float


REGISTRY = TaskRegistry()


@REGISTRY.task("count", CountArgs)
async def count(reporter: ProgressReporter, args: CountArgs) -> str:
    reporter.update(total=args.steps, message="counting")
    for _ in range(args.steps):
        await asyncio.sleep(args.interval)
        reporter.update(1)
    return f"counted to {args.steps}"


@asynccontextmanager
async def manager_on(redis_url: str) -> AsyncIterator[BackgroundTaskManager]:
    target = ValkeyTarget.from_url(redis_url)
    config = BackgroundTaskConfig(progress_interval=0.05, cancel_grace=2.0)
    async with (
        ValkeyClient(target) as client,
        RedisTaskStore(client) as store,
        RedisMessageQueue(client, QueueConfig(source="test-manager")) as queue,
        BackgroundTaskManager(
            store,
            node_id="test-manager",
            registry=REGISTRY,
            producer=EventProducer(queue, "test-manager"),
            config=config,
        ) as manager,
    ):
        yield manager


async def test_list_watch_cancel(redis_url: str) -> None:
    async with manager_on(redis_url) as manager:
        endless = await manager.start("count", {"steps": 100_000, "interval": 0.05}, tags=["x"])
        quick = await manager.start("count", {"steps": 8, "interval": 0.1})

        listed = await arun_cli("--json", "--redis", redis_url, "bgtask", "list")
        assert listed.returncode == 0, listed.stderr
        rows = {r["task_id"]: r for r in json_lines(listed.stdout)}
        assert set(rows) == {str(endless), str(quick)}
        assert rows[str(endless)]["name"] == "count"
        assert rows[str(endless)]["owner"] == "test-manager"
        assert rows[str(endless)]["state"] in ("pending", "running")
        human = await arun_cli("--redis", redis_url, "bgtask", "list", "--state", "running")
        assert human.returncode == 0, human.stderr
        assert "count" in human.stdout

        watched = await arun_cli("--json", "--redis", redis_url, "bgtask", "watch", str(quick))
        assert watched.returncode == 0, watched.stderr
        events = json_lines(watched.stdout)
        assert events[-1]["final"] is True
        assert events[-1]["state"] == "succeeded"
        assert events[-1]["message"] == "counted to 8"
        assert events[-2]["event"] == "bgtask_done"
        progress = [e["current_progress"] for e in events if e.get("event") == "bgtask_updated"]
        assert progress == sorted(progress)

        cancelled = await arun_cli("--json", "--redis", redis_url, "bgtask", "cancel", str(endless))
        assert cancelled.returncode == 0, cancelled.stderr
        assert json_lines(cancelled.stdout)[0]["cancel_requested"] is True
        async with asyncio.timeout(10):
            record = await manager.wait(endless, poll_interval=0.05)
        assert record.state is TaskState.CANCELLED

        again = await arun_cli("--redis", redis_url, "bgtask", "watch", str(endless))
        assert again.returncode == 1
        assert "cancelled" in again.stderr
        human_watch = await arun_cli("--redis", redis_url, "bgtask", "watch", str(quick))
        assert human_watch.returncode == 0, human_watch.stderr
        assert "ended succeeded" in human_watch.stdout


async def test_unknown_task(redis_url: str) -> None:
    unknown = str(uuid.uuid4())
    for command in ("watch", "cancel"):
        proc = await arun_cli("--redis", redis_url, "bgtask", command, unknown)
        assert proc.returncode == 1
        assert unknown in proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
    bad = await arun_cli("--redis", redis_url, "bgtask", "watch", "not-a-uuid")
    assert bad.returncode == 1
    assert "not a UUID" in bad.stderr
