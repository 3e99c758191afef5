"""TaskFollower: a task's events until its final one, with the store as a safety net."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from ai.backend.common.bgtask import TaskId, TaskNotFound
from ai.backend.common.events import AbstractEvent, BgtaskDoneEvent, BgtaskUpdatedEvent
from tests._helpers import until

from ._stack import open_stack


async def collect(events: object) -> list[AbstractEvent]:
    return [event async for event in events]  # type: ignore[attr-defined]


async def test_follow_ends_with_final_event() -> None:
    async with open_stack() as stack:
        task_id = await stack.manager.start("steps")
        following = asyncio.create_task(collect(stack.follower.follow(task_id)))
        await until(lambda: stack.hub.statistics().propagators == 1)
        stack.release.set()
        events = await following
        assert isinstance(events[-1], BgtaskDoneEvent)
        assert events[-1].message == "finished"
        progress = [e for e in events if isinstance(e, BgtaskUpdatedEvent)]
        assert progress[-1].current_progress == 2.0
        assert progress[-1].message == "all done"
        assert stack.hub.statistics().propagators == 0
        assert stack.follower.statistics().active == 0
        # A finished task gives its final event at once.
        assert [type(e) for e in await collect(stack.follower.follow(task_id))] == [BgtaskDoneEvent]


async def test_follow_recovers_a_missed_final_event() -> None:
    # The hub gets no events at all (as if every broadcast was lost): the store is read.
    async with open_stack(feed_hub=False, poll_interval=0.05) as stack:
        task_id = await stack.manager.start("steps")
        following = asyncio.create_task(collect(stack.follower.follow(task_id)))
        await until(lambda: stack.follower.statistics().store_polls >= 1)
        stack.release.set()
        events = await following
        assert isinstance(events[-1], BgtaskDoneEvent)
        assert events[-1].message == "finished"


async def test_unknown_task_raises_and_releases() -> None:
    async with open_stack() as stack:
        with pytest.raises(TaskNotFound):
            await collect(stack.follower.follow(TaskId(uuid.uuid4())))
        assert stack.hub.statistics().propagators == 0
        assert stack.follower.statistics().active == 0


async def test_closing_early_releases_the_propagator() -> None:
    async with open_stack() as stack:
        task_id = await stack.manager.start("steps")
        async with contextlib.aclosing(stack.follower.follow(task_id)) as events:
            first = await anext(events)
            assert first.task_id == task_id
            assert stack.hub.statistics().propagators == 1
        assert stack.hub.statistics().propagators == 0
        assert stack.follower.statistics().active == 0

        # Cancelling a reader releases it too.
        reader = asyncio.create_task(collect(stack.follower.follow(task_id)))
        await until(lambda: stack.hub.statistics().propagators == 1)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        assert stack.hub.statistics().propagators == 0


async def test_slow_reader_keeps_the_final_event() -> None:
    async with open_stack() as stack:
        task_id = await stack.manager.start("steps")
        follower = type(stack.follower)(stack.store, stack.hub, buffer=2)
        async with contextlib.aclosing(follower.follow(task_id)) as events:
            await anext(events)
            for step in range(10):
                await stack.hub.propagate_event(
                    BgtaskUpdatedEvent(task_id=task_id, current_progress=step, total_progress=9)
                )
            await stack.hub.propagate_event(BgtaskDoneEvent(task_id=task_id, message="done"))
            rest = [event async for event in events]
        assert len(rest) == 2
        assert isinstance(rest[-1], BgtaskDoneEvent)
