"""Small building blocks shared by the I/O resources of this package.

:class:`TaskOwner` is the "background loops in a TaskGroup owned by the resource" of the style
guide, written once: a resource starts it when it opens, spawns its loops into it, and stops it
when it closes. It can be started and stopped from any task (the group runs in a task of its
own), so a resource's ``open()`` and ``aclose()`` need not be one ``async with`` block.
:class:`AsyncResource` is the lifecycle every I/O resource shares: ``async with`` opens it
and closes it, ``open()`` and ``aclose()`` are the two methods a resource writes.
:func:`map_errors` is the "backends map native errors at the call and chain ``from exc``" of
the style guide: one table per backend, from its errors to the package's.

Guarantees:
- ``stop()`` cancels every task still running and returns only once all of them ended
  [tests/test_aio.py::test_stop_cancels_every_task];
- a task's unexpected failure ends the group and is raised from ``stop()`` (as the
  ``ExceptionGroup`` of ``asyncio.TaskGroup``), never only logged
  [tests/test_aio.py::test_a_failure_is_raised_from_stop];
- spawning before ``start()``, after ``stop()``, or once a task failed (even while its
  siblings are still being cancelled) raises :class:`TaskOwnerStopped` and closes the
  coroutine, so nothing runs unowned
  [tests/test_aio.py::test_spawn_after_stop_raises]
  [tests/test_aio.py::test_spawn_while_siblings_are_cancelling_raises_stopped]
  [tests/test_aio.py::test_spawn_into_a_cancelled_group_raises_stopped];
- an owner starts once: a second ``start()`` raises :class:`TaskOwnerAlreadyStarted` and
  leaves the running group as it was, so no runner is orphaned
  [tests/test_aio.py::test_start_twice_raises];
- ``async with`` an :class:`AsyncResource` calls ``open()`` on entry and ``aclose()`` on exit,
  also when the block raises [tests/test_aio.py::test_async_resource_opens_and_closes];
- ``map_errors`` raises the first matching error of its table, in table order, chained to the
  native one; other exceptions (``CancelledError`` included) pass unchanged
  [tests/test_aio.py::test_map_errors_first_match_in_order].

Limits: an owner starts once (it cannot be restarted after ``stop()``); a task that ends early
is not restarted; a failure cancels the other tasks at once but is raised only when the owner
calls ``stop()``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Coroutine, Iterator, Mapping
from types import TracebackType
from typing import Any, Self, TypeAlias

from .exception import PROBLEM_BASE_URI, BackendAIError, ErrorDetail, ErrorOperation

__all__ = (
    "AsyncResource",
    "ErrorTable",
    "TaskOwner",
    "TaskOwnerAlreadyStarted",
    "TaskOwnerStopped",
    "map_errors",
)

ErrorTable: TypeAlias = Mapping[
    type[BaseException] | tuple[type[BaseException], ...], type[BackendAIError]
]
"""Native error class(es) -> the BackendAIError raised instead, most specific first."""


class AsyncResource(abc.ABC):
    """A resource that ``async with`` opens and closes; subclasses write ``open``/``aclose``."""

    __slots__ = ()

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and start background work; idempotent."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release everything the resource holds; idempotent."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@contextlib.contextmanager
def map_errors(what: str, table: ErrorTable) -> Iterator[None]:
    """Raise ``ours(f"{what}: {exc}") from exc`` for the first entry of ``table`` matching ``exc``.

    ``what`` names the call (``f"acquire({key!r})"``). Exceptions no entry matches pass
    unchanged; only ``Exception`` subclasses are mapped, never ``CancelledError``.
    """
    try:
        yield
    except Exception as exc:
        for native, ours in table.items():
            if isinstance(exc, native):
                raise ours(f"{what}: {exc}") from exc
        raise


class TaskOwnerStopped(BackendAIError, RuntimeError):
    """A task was spawned on a :class:`TaskOwner` that is not running (not started, or stopped)."""

    error_type = PROBLEM_BASE_URI + "task-owner-stopped"
    error_title = "Background tasks are not running."
    error_operation = ErrorOperation.EXECUTE
    error_detail = ErrorDetail.CANCELED


class TaskOwnerAlreadyStarted(BackendAIError, RuntimeError):
    """``start()`` called on a :class:`TaskOwner` that was started before (owners start once)."""

    error_type = PROBLEM_BASE_URI + "task-owner-already-started"
    error_title = "Background tasks were already started."
    error_operation = ErrorOperation.EXECUTE
    error_detail = ErrorDetail.CONFLICT


class TaskOwner:
    """Runs background loops in one ``asyncio.TaskGroup``; a loop's failure surfaces in stop()."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._failed = False

    @property
    def running(self) -> bool:
        """Whether the group is started, not stopped, and no task of it failed."""
        runner = self._runner
        return (
            runner is not None
            and not runner.done()
            and not self._stop.is_set()
            and not self._failed
        )

    async def start(self) -> None:
        """Start the group (returns once tasks can be spawned); a second call raises."""
        if self._started:
            raise TaskOwnerAlreadyStarted(
                f"{self._name}: background tasks were already started (an owner starts once)",
                data={"owner": self._name},
            )
        self._started = True
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
        """Run ``coro`` in the group as the task ``<owner name>-<name>``."""
        if self._tg is None or not self.running:
            coro.close()
            raise self._stopped(name)
        try:
            task = self._tg.create_task(coro, name=f"{self._name}-{name}")
        except RuntimeError as exc:
            # The group is shutting down on its own (its runner was cancelled): same as stopped.
            coro.close()
            raise self._stopped(name) from exc
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _stopped(self, name: str) -> TaskOwnerStopped:
        return TaskOwnerStopped(
            f"{self._name}: background tasks are not running (cannot spawn {name!r})",
            data={"owner": self._name, "task": name},
        )

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The group is aborting (siblings may take a while to finish cancelling): no spawn
            # may enter it, and running is False from now on.
            self._failed = True

    async def stop(self) -> None:
        """Cancel every task and wait for them; re-raises a loop's unexpected failure.

        Idempotent. If cancelled while waiting, the group is cancelled too and its tasks end on
        their own; a later call does not wait for them again.
        """
        self._stop.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner
