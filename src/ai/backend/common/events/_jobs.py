"""The dispatcher's job queue: an unbounded FIFO for a fixed pool of worker tasks (private).

Leaner than ``asyncio.Queue`` on the hot path (a deque append, and a future only for an idle
worker), with the same ``task_done``/``join`` accounting.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, TypeVar

__all__ = ("JobQueue",)

T = TypeVar("T")


class JobQueue(Generic[T]):
    """FIFO of jobs; ``get`` waits while it is empty; ``join`` waits until all are done."""

    __slots__ = ("_all_done", "_idle", "_unfinished", "items")

    def __init__(self) -> None:
        self.items: collections.deque[T] = collections.deque()
        """The waiting jobs, oldest first (read-only for callers)."""
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._unfinished = 0
        self._all_done = asyncio.Event()
        self._all_done.set()

    def qsize(self) -> int:
        """Jobs waiting for a worker."""
        return len(self.items)

    def empty(self) -> bool:
        """Whether no job is waiting."""
        return not self.items

    def put_nowait(self, job: T) -> None:
        """Add a job and wake one idle worker."""
        self.items.append(job)
        if not self._unfinished:
            self._all_done.clear()
        self._unfinished += 1
        if self._idle:
            self._wake_one()

    def get_nowait(self) -> T:
        """Take the oldest job (the queue must not be empty)."""
        return self.items.popleft()

    async def get(self) -> T:
        """Take the oldest job, waiting for one if needed."""
        while not self.items:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._idle:
                    self._idle.remove(waiter)
                elif self.items:
                    self._wake_one()  # we were woken for a job we will not take: pass it on
                raise
        return self.items.popleft()

    def task_done(self) -> None:
        """Mark one taken job as finished."""
        self._unfinished -= 1
        if self._unfinished <= 0:
            self._unfinished = 0
            self._all_done.set()

    async def join(self) -> None:
        """Wait until every job put so far is finished."""
        await self._all_done.wait()

    def _wake_one(self) -> None:
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
