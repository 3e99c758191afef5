"""A task group owned by a resource, started and stopped from any task (private helper)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ("TaskOwner",)


class TaskOwner:
    """Runs background loops in one ``asyncio.TaskGroup``; a loop's failure surfaces in stop()."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> bool:
        """Whether the group is started and not stopped."""
        return self._runner is not None and not self._stop.is_set()

    async def start(self) -> None:
        """Start the group (returns once tasks can be spawned)."""
        ready = asyncio.Event()
        self._runner = asyncio.create_task(self._run(ready), name=f"{self._name}-tasks")
        await ready.wait()

    async def _run(self, ready: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            ready.set()
            await self._stop.wait()
            for task in list(self._tasks):
                task.cancel()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` in the group."""
        if self._tg is None or self._stop.is_set():
            coro.close()
            raise RuntimeError(f"{self._name}: background tasks are not running")
        task = self._tg.create_task(coro, name=f"{self._name}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        """Cancel every task and wait for them; re-raises a loop's unexpected failure."""
        self._stop.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner
