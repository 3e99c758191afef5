"""Following one task: its upstream bgtask events until the final one, from any node.

:class:`TaskFollower` registers a propagator for ``(bgtask, <id>)`` on an
:class:`~ai.backend.common.events.EventHub` (fed by a dispatcher subscribed to the bgtask
broadcasts: :func:`subscribe_bgtask_events`), and checks the task store while no event comes, so
a follower still ends when a broadcast was lost (pub/sub is volatile) or the task ended before
it started following.

Guarantees:
- the iteration ends with the task's final event, also when that event's broadcast was missed
  (the store is read every ``poll_interval`` of silence)
  [tests/bgtask/test_follow.py::test_follow_ends_with_final_event]
  [tests/bgtask/test_follow.py::test_follow_recovers_a_missed_final_event];
- closing the iteration early unregisters its propagator from the hub
  [tests/bgtask/test_follow.py::test_closing_early_releases_the_propagator];
- when the hub closes the propagator first (``EventHub.aclose()`` at shutdown, an unregister,
  ``close_by_alias``), the iteration goes on from the store alone, one read per
  ``poll_interval``, until the final event; it never spins on the event loop
  [tests/bgtask/test_follow.py::test_closed_hub_falls_back_to_paced_store_polls].

Limits: a slow reader loses the oldest progress events beyond ``buffer`` (never the final one)
[tests/bgtask/test_follow.py::test_slow_reader_keeps_the_final_event].
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from ..events import (
    AbstractEvent,
    EventDispatcher,
    EventDomain,
    EventHub,
    EventPropagator,
)
from ..exception import InvalidArgument
from ._events import (
    BGTASK_EVENT_TYPES,
    FINAL_EVENT_TYPES,
    BgtaskEvent,
    event_of_record,
    progress_event,
)
from .abc import AbstractTaskStore
from .exceptions import TaskNotFound
from .types import TaskId

__all__ = ("FollowerStatistics", "TaskFollower", "subscribe_bgtask_events")


def subscribe_bgtask_events(dispatcher: EventDispatcher, hub: EventHub) -> None:
    """Feed ``hub`` with every bgtask broadcast ``dispatcher`` receives."""
    for event_cls in BGTASK_EVENT_TYPES:
        dispatcher.subscribe(
            event_cls, None, hub.on_event, name=f"bgtask.hub.{event_cls.event_name}"
        )


@dataclass(frozen=True, slots=True)
class FollowerStatistics:
    """A snapshot of a follower."""

    active: int
    """Iterations in progress (each holds one hub propagator)."""
    store_polls: int
    """Store reads made because no event came within ``poll_interval``."""


class _TaskPropagator(EventPropagator):
    """Buffers one task's events; drops the oldest progress event when full, never a final."""

    def __init__(self, maxsize: int) -> None:
        self._id = uuid.uuid4()
        self._buffer: collections.deque[BgtaskEvent] = collections.deque()
        self._maxsize = maxsize
        self._wakeup = asyncio.Event()
        self._closed = False
        self.dropped = 0

    def id(self) -> uuid.UUID:
        """The propagator's id."""
        return self._id

    async def propagate_event(self, event: AbstractEvent) -> None:
        """Buffer a bgtask event."""
        if self._closed or not isinstance(event, BGTASK_EVENT_TYPES):
            return
        if len(self._buffer) >= self._maxsize:
            for index, queued in enumerate(self._buffer):
                if not isinstance(queued, FINAL_EVENT_TYPES):
                    del self._buffer[index]
                    self.dropped += 1
                    break
        self._buffer.append(event)
        self._wakeup.set()

    async def close(self) -> None:
        """Stop buffering."""
        self._closed = True
        self._wakeup.set()

    async def get(self, wait: float) -> BgtaskEvent | None:
        """The next event, or ``None`` after ``wait`` seconds without one.

        Once closed (by the hub) no event can come: the buffered ones are returned, then each
        call waits the full ``wait`` and returns ``None``, so a caller polling on ``None`` keeps
        its pace instead of spinning.
        """
        if self._buffer:
            return self._buffer.popleft()
        if self._closed:
            await asyncio.sleep(wait)
            return None
        self._wakeup.clear()
        try:
            async with asyncio.timeout(wait):
                await self._wakeup.wait()
        except TimeoutError:
            return None
        return self._buffer.popleft() if self._buffer else None

    @property
    def pending(self) -> int:
        """Events buffered."""
        return len(self._buffer)


class TaskFollower:
    """Streams the bgtask events of one task at a time per iteration (any number at once)."""

    def __init__(
        self,
        store: AbstractTaskStore,
        hub: EventHub,
        *,
        poll_interval: float = 1.0,
        buffer: int = 256,
    ) -> None:
        if poll_interval <= 0 or buffer < 1:
            raise InvalidArgument(
                f"TaskFollower: poll_interval must be > 0 and buffer >= 1, got "
                f"{poll_interval} and {buffer}",
                data={"field": "poll_interval"},
            )
        self._store = store
        self._hub = hub
        self._poll_interval = poll_interval
        self._buffer = buffer
        self._active = 0
        self._polls = 0

    async def follow(self, task_id: TaskId) -> AsyncGenerator[BgtaskEvent, None]:
        """Yield the task's events (first its current progress, or its final event if it has
        ended), ending after the final one. Raises ``TaskNotFound`` for an unknown id.

        Close it when stopping early (``contextlib.aclosing``); closing or cancelling releases
        the hub propagator.
        """
        propagator = _TaskPropagator(self._buffer)
        await self._hub.register(propagator, [(EventDomain.BGTASK, str(task_id))])
        self._active += 1
        try:
            record = await self._store.get(task_id)
            if record is None:
                raise TaskNotFound(
                    f"background task {task_id} not found", data={"task_id": str(task_id)}
                )
            if record.state.is_final:
                yield event_of_record(record)
                return
            if not propagator.pending:
                yield progress_event(record)
            while True:
                event = await propagator.get(self._poll_interval)
                if event is None:
                    self._polls += 1
                    record = await self._store.get(task_id)
                    if record is None:
                        raise TaskNotFound(
                            f"background task {task_id} disappeared while followed",
                            data={"task_id": str(task_id)},
                        )
                    if record.state.is_final:
                        yield event_of_record(record)
                        return
                    continue
                yield event
                if isinstance(event, FINAL_EVENT_TYPES):
                    return
        finally:
            self._active -= 1
            # Short cleanup that must happen even while the iteration is being cancelled.
            await asyncio.shield(self._hub.unregister(propagator.id()))

    def statistics(self) -> FollowerStatistics:
        """A snapshot of this follower."""
        return FollowerStatistics(active=self._active, store_polls=self._polls)
