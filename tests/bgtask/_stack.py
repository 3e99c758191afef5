"""One in-memory node with event following: store, broker, manager, dispatcher, hub, follower."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import BaseModel

from ai.backend.common.bgtask import (
    BackgroundTaskConfig,
    BackgroundTaskManager,
    MemoryTaskStore,
    ProgressReporter,
    TaskFollower,
    TaskRegistry,
    subscribe_bgtask_events,
)
from ai.backend.common.events import EventDispatcher, EventHub, EventProducer
from ai.backend.common.message_queue import MemoryBroker, MemoryMessageQueue, QueueConfig


class NoArgs(BaseModel):
    pass


@dataclass
class Stack:
    store: MemoryTaskStore
    manager: BackgroundTaskManager
    hub: EventHub
    follower: TaskFollower
    release: asyncio.Event


@contextlib.asynccontextmanager
async def open_stack(
    *,
    feed_hub: bool = True,
    poll_interval: float = 5.0,
    store: MemoryTaskStore | None = None,
) -> AsyncIterator[Stack]:
    """A node whose ``steps`` task reports progress and waits for ``stack.release`` (on
    ``store``, a fresh ``MemoryTaskStore`` by default)."""
    release = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("steps", NoArgs)
    async def steps(reporter: ProgressReporter, args: NoArgs) -> str:
        reporter.update(current=1, total=2, message="half way")
        await reporter.flush()
        await release.wait()
        reporter.update(current=2, total=2, message="all done")
        return "finished"

    broker = MemoryBroker()
    store = store if store is not None else MemoryTaskStore()
    hub = EventHub()
    config = BackgroundTaskConfig(lease_ttl=10.0, progress_interval=0.0)
    async with (
        store,
        MemoryMessageQueue(broker, QueueConfig(source="node")) as queue,
        MemoryMessageQueue(broker, QueueConfig(source="web")) as web_queue,
    ):
        dispatcher = EventDispatcher(web_queue)
        if feed_hub:
            subscribe_bgtask_events(dispatcher, hub)
        async with (
            dispatcher,
            BackgroundTaskManager(
                store,
                node_id="node",
                registry=registry,
                producer=EventProducer(queue, "node"),
                config=config,
            ) as manager,
        ):
            try:
                yield Stack(
                    store,
                    manager,
                    hub,
                    TaskFollower(store, hub, poll_interval=poll_interval),
                    release,
                )
            finally:
                release.set()
        await hub.aclose()
