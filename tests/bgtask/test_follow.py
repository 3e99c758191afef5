"""TaskFollower: a task's events until its final one, with the store as a safety net."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from ai.backend.common.bgtask import MemoryTaskStore, TaskId, TaskNotFound, TaskRecord
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


class CountingStore(MemoryTaskStore):
    """Counts reads; fails past ``limit`` of them (a follower that spins never yields, so the
    test ends there instead of at its timeout)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.reads = 0

    async def get(self, task_id: TaskId) -> TaskRecord | None:
        self.reads += 1
        if self.reads > self.limit:
            raise AssertionError("the follower reads the store without pausing")
        return await super().get(task_id)


async def test_closed_hub_falls_back_to_paced_store_polls() -> None:
    # The hub closes the follower's propagator (its shutdown, or an unregister) while the task
    # still runs: the follower keeps reading the store, one read per poll_interval, and the
    # event loop keeps running meanwhile.
    poll = 0.05
    async with open_stack(poll_interval=poll, store=CountingStore(limit=1000)) as stack:
        task_id = await stack.manager.start("steps")
        loop = asyncio.get_running_loop()
        following = asyncio.create_task(collect(stack.follower.follow(task_id)))
        await until(lambda: stack.hub.statistics().propagators == 1)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0)
                ticks += 1

        ticker = asyncio.create_task(tick())
        try:
            closed_at = loop.time()
            polls_before = stack.follower.statistics().store_polls
            await stack.hub.aclose()
            await until(lambda: stack.follower.statistics().store_polls >= polls_before + 3)
            assert ticks > 0
            polls = stack.follower.statistics().store_polls - polls_before
            # At most one read per poll_interval of loop time since the hub closed (+ the
            # one made at once when the propagator closed).
            assert polls <= (loop.time() - closed_at) / poll + 2
            assert not following.done()
            stack.release.set()
            events = await following
        finally:
            ticker.cancel()
            following.cancel()
            await asyncio.gather(ticker, following, return_exceptions=True)
        assert isinstance(events[-1], BgtaskDoneEvent)
        assert events[-1].message == "finished"
        assert stack.follower.statistics().active == 0
