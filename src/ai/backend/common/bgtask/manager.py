"""BackgroundTaskManager: runs tasks under a lease, reports progress, adopts lost tasks.

One manager per process (node). ``start()`` records a task in the store (``pending``, owned by
this node, fencing token 1), broadcasts upstream's ``bgtask_updated`` "Task started", and returns
its id at once; the handler then runs in the manager's task group. While it runs:

- a heartbeat renews the leases of every task the node holds, every ``lease_ttl / 3``; a lease
  reported lost (another node adopted the task) stops the handler here and nothing more is
  written; a renewal reporting a cancel request cancels it;
- progress goes out as ``bgtask_updated`` (broadcast with cache ``bgtask.<id>``) at most once
  per ``progress_interval`` per task, and to the store at most once per
  ``store_progress_interval``;
- the end is one fenced write of the final state and result (or error code and message),
  then the final upstream event (``bgtask_done``, ``bgtask_partial_success``,
  ``bgtask_failed``, ``bgtask_cancelled``).

Every ``lease_ttl / 4`` each manager looks for expired leases and adopts those tasks (fencing
token + 1): it runs again a handler that never ran or is resumable (``run_count`` and the last
checkpoint tell it where it stopped), and fails the others with the reason. A task whose name no
node has registered is failed after a further ``unknown_name_grace``. Each manager also purges
the final tasks whose retention has passed.

Guarantees:
- ``start()`` returns the id once the task is recorded; it then runs and ends in a final
  state with its result [tests/bgtask/test_manager.py::test_start_runs_and_records_result];
  a recorded task runs even if ``start()`` is cancelled during its "Task started" broadcast
  [tests/bgtask/test_manager.py::test_start_cancelled_during_its_broadcast_still_runs];
- a handler that raises ends ``failed`` with its error code and message; a result listing
  errors ends ``partially_succeeded``
  [tests/bgtask/test_manager.py::test_failure_and_partial_success];
- a task whose owner stops renewing its lease is adopted by another node within two lease
  periods: resumed if it never ran or is resumable, failed with the reason otherwise
  [tests/bgtask/test_manager.py::test_adoption_resumes_or_fails]
  [tests/bgtask/test_kill.py::test_kill_9_owner_is_adopted];
- a paused owner's late writes are rejected once another node adopted its task, and it stops
  its handler on its next heartbeat [tests/bgtask/test_kill.py::test_paused_owner_is_fenced]
  [tests/bgtask/test_manager.py::test_lost_lease_stops_the_handler];
- ``cancel()`` from any node cancels the handler on its owner (after ``cancel_grace`` at the
  latest) and the task ends ``cancelled``
  [tests/bgtask/test_manager.py::test_cancel_from_another_node]
  [tests/bgtask/test_redis.py::test_cancel_from_second_node];
- closing never forgets a task: by ``shutdown_policy`` it hands them over (another node adopts
  them at once) or records them cancelled or failed with the reason
  [tests/bgtask/test_manager.py::test_shutdown_policies];
- a handler that catches its cancellation to clean up and then returns still ends as the stop
  says (``cancelled``, or ``failed`` by the fail policy), never ``succeeded``
  [tests/bgtask/test_manager.py::test_handler_that_cleans_up_and_returns_is_not_a_success];
- a cancellation requested while no node owned the task ends it ``cancelled`` on adoption
  [tests/bgtask/test_manager.py::test_cancel_while_owner_is_gone];
- an ad-hoc task (``start_coroutine``) is named after its function, through
  ``functools.partial``, so its metric series stay bounded
  [tests/bgtask/test_manager.py::test_partial_tasks_share_one_name];
- ``aclose()`` leaves no task behind
  [tests/bgtask/test_manager.py::test_start_runs_and_records_result];
- ``BackgroundTaskConfig`` refuses NaN and infinite durations (a NaN or infinite lease would
  never expire, so its task would never be adopted), naming the field
  [tests/bgtask/test_manager.py::test_config_refuses_non_finite_durations].

Limits:
- fencing protects the store, not the handler's own side effects: a paused owner may still act
  until its next heartbeat; pass ``ProgressReporter.fencing_token`` to systems that can fence
  [tests/bgtask/test_kill.py::test_paused_owner_is_fenced];
- a handler that ignores cancellation is recorded as cancelled after ``cancel_grace`` but keeps
  running until it returns, and ``aclose()`` waits for it
  [tests/bgtask/test_manager.py::test_handler_ignoring_cancel_is_recorded_after_grace];
- the caller's context bundle (request id, user) is bound in the handler on the starting node
  only; an adopter runs it without [tests/bgtask/test_manager.py::test_context_reaches_handler].
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import functools
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from ..aio import AsyncResource
from ..contexts import ContextBundle
from ..events import BgtaskUpdatedEvent, EventProducer
from ..exception import (
    BackendAIError,
    ErrorCode,
    ErrorDetail,
    ErrorDomain,
    ErrorOperation,
    InvalidArgument,
)
from ..message_queue import MessageQueueError
from ._events import STARTED_MESSAGE, BgtaskEvent, event_of_record
from .abc import AbstractTaskStore
from .exceptions import (
    BgtaskError,
    InvalidTaskArgs,
    ManagerClosed,
    StaleFencingToken,
    TaskAlreadyFinished,
    TaskCancelled,
    TaskNotFound,
)
from .metrics import BgtaskMetrics
from .registry import HandlerResult, TaskRegistry
from .reporter import ProgressReporter
from .types import (
    ExpiredLease,
    Lease,
    LeaseStatus,
    ShutdownPolicy,
    TaskId,
    TaskOutcome,
    TaskRecord,
    TaskResult,
    TaskState,
)

__all__ = ("BackgroundTaskConfig", "BackgroundTaskManager", "ManagerStatistics")

log = logging.getLogger(__spec__.name if __spec__ else __name__)

_INTERNAL = ErrorCode(ErrorDomain.BGTASK, ErrorOperation.EXECUTE, ErrorDetail.INTERNAL_ERROR)
_CANCELLED = TaskCancelled().error_code()
_LOST_ERRORS = (StaleFencingToken, TaskAlreadyFinished, TaskNotFound)


@dataclass(frozen=True, slots=True)
class BackgroundTaskConfig:
    """Timings and policies of a manager (every node of a cluster should use the same).

    Durations are finite seconds; a bad value raises ``InvalidArgument`` naming the field.
    """

    lease_ttl: float = 10.0
    """Seconds a lease lasts without renewal; a crashed owner's tasks are adopted within
    about two of these."""
    heartbeat_interval: float | None = None
    """Seconds between lease renewals (default ``lease_ttl / 3``)."""
    adopt_interval: float | None = None
    """Seconds between scans for expired leases (default ``lease_ttl / 4``)."""
    unknown_name_grace: float | None = None
    """Extra seconds an expired task whose name this node has no handler for is left to
    nodes that have one, before this node fails it (default ``lease_ttl``)."""
    progress_interval: float = 0.5
    """At most one ``bgtask_updated`` per task per this many seconds (coalescing)."""
    store_progress_interval: float = 1.0
    """At most one progress write to the store per task per this many seconds (the events
    carry every flushed update; the store keeps the progress for late readers and adopters,
    and always gets the final values)."""
    retention: float = 3600.0
    """Seconds a final task stays readable before it is purged with its index entries."""
    sweep_interval: float = 30.0
    """Seconds between purges of expired final tasks."""
    sweep_batch: int = 500
    """Tasks purged per store call."""
    cancel_grace: float = 5.0
    """Seconds a cancelled handler gets to unwind before the task is recorded cancelled."""
    shutdown_policy: ShutdownPolicy = ShutdownPolicy.HANDOVER
    """What closing does with unfinished tasks."""
    drain_timeout: float = 0.0
    """Seconds closing first waits for running tasks to finish on their own."""
    max_concurrency: int | None = None
    """Handlers running at once on this node; more tasks wait ``pending``."""
    adopt: bool = True
    """Whether this node adopts other nodes' expired tasks."""
    adopt_batch: int = 100
    """Expired leases examined per scan."""
    max_concurrent_publishes: int = 64
    """Event broadcasts in flight at once (a burst of progress or final events waits for a
    turn instead of exhausting the queue's connection pool)."""

    def __post_init__(self) -> None:
        positive = {
            "lease_ttl": self.lease_ttl,
            "heartbeat_interval": self.heartbeat_interval,
            "adopt_interval": self.adopt_interval,
            "sweep_interval": self.sweep_interval,
            "retention": self.retention,
        }
        non_negative = {
            "progress_interval": self.progress_interval,
            "store_progress_interval": self.store_progress_interval,
            "cancel_grace": self.cancel_grace,
            "drain_timeout": self.drain_timeout,
            "unknown_name_grace": self.unknown_name_grace,
        }
        for name, value in (*positive.items(), *non_negative.items()):
            # NaN passes every comparison below, and an infinite lease never expires.
            if value is not None and not math.isfinite(value):
                raise InvalidArgument(
                    f"BackgroundTaskConfig.{name} must be a finite number of seconds, got {value}",
                    data={"field": name},
                )
        for name, value in positive.items():
            if value is not None and value <= 0:
                raise InvalidArgument(
                    f"BackgroundTaskConfig.{name} must be > 0, got {value}", data={"field": name}
                )
        for name, value in non_negative.items():
            if value is not None and value < 0:
                raise InvalidArgument(
                    f"BackgroundTaskConfig.{name} must be >= 0, got {value}", data={"field": name}
                )
        for name, count in (
            ("sweep_batch", self.sweep_batch),
            ("adopt_batch", self.adopt_batch),
            ("max_concurrent_publishes", self.max_concurrent_publishes),
            ("max_concurrency", self.max_concurrency),
        ):
            if count is not None and count < 1:
                raise InvalidArgument(
                    f"BackgroundTaskConfig.{name} must be >= 1, got {count}", data={"field": name}
                )
        if self.heartbeat_interval is not None and self.heartbeat_interval >= self.lease_ttl:
            raise InvalidArgument(
                f"BackgroundTaskConfig.heartbeat_interval ({self.heartbeat_interval}) must be "
                f"shorter than lease_ttl ({self.lease_ttl})",
                data={"field": "heartbeat_interval"},
            )

    @property
    def effective_heartbeat_interval(self) -> float:
        """The heartbeat period in use."""
        return self.heartbeat_interval or self.lease_ttl / 3

    @property
    def effective_adopt_interval(self) -> float:
        """The adoption scan period in use."""
        return self.adopt_interval or self.lease_ttl / 4

    @property
    def effective_unknown_name_grace(self) -> float:
        """The grace for tasks of unknown names in use."""
        return self.lease_ttl if self.unknown_name_grace is None else self.unknown_name_grace


@dataclass(frozen=True, slots=True)
class ManagerStatistics:
    """A snapshot of one manager."""

    owned: int
    """Tasks this node holds now (pending or running)."""
    running: int
    """Handlers running now."""
    started: int
    """Tasks created here."""
    adopted: int
    """Tasks taken over from lost owners."""
    finished: int
    """Final states written here."""
    lost: int
    """Tasks this node held whose lease another node took."""
    handed_over: int
    """Tasks released on shutdown."""
    progress_writes: int
    """Progress updates broadcast (after coalescing)."""
    progress_store_writes: int
    """Progress updates written to the store (at most one per ``store_progress_interval``)."""
    store_errors: int
    """Store calls that failed (unreachable, timeout) and were retried or given up."""
    event_errors: int
    """Event broadcasts that failed (the store still has the state)."""


class _Stop(enum.Enum):
    CANCEL = "cancel"
    LOST = "lost"
    HANDOVER = "handover"
    SHUTDOWN_CANCEL = "shutdown_cancel"
    SHUTDOWN_FAIL = "shutdown_fail"


_Phase = Literal["waiting", "starting", "running", "ending"]
_RELEASE: Literal["release"] = "release"


class _Entry:
    """A task this node holds."""

    def __init__(
        self,
        record: TaskRecord,
        call: Callable[[ProgressReporter], Awaitable[HandlerResult]],
        context: ContextBundle,
        resumable: bool,
        manager: BackgroundTaskManager,
    ) -> None:
        self.task_id = record.task_id
        self.name = record.name
        self.lease = record.lease
        self.call = call
        self.reporter = ProgressReporter(
            record.task_id,
            _EntrySink(manager, self),
            fencing_token=record.token,
            run_count=record.run_count + 1,
            last_checkpoint=record.checkpoint,
            current=record.current,
            total=record.total,
            message=record.message,
        )
        self.context = context
        self.resumable = resumable
        self.resumed = record.run_count > 0
        self.task: asyncio.Task[None] | None = None
        self.phase: _Phase = "waiting"
        self.acquiring = False
        self.stop: _Stop | None = None
        self.stop_message = ""
        self.cancels_sent = 0
        self.closed = False
        self.done = asyncio.Event()
        self.lock = asyncio.Lock()
        self.next_flush = 0.0
        self.next_store_write = 0.0
        self.flushing = False


class BackgroundTaskManager(AsyncResource):
    """Starts, tracks, cancels and adopts background tasks of one node (upstream's name).

    ``async with BackgroundTaskManager(store, node_id="manager-1", registry=registry,
    producer=producer) as manager:`` starts the heartbeat, adoption, purge and cancel-listener
    loops. The manager does not own the store or the producer's queue: open them before and
    close them after.
    """

    def __init__(
        self,
        store: AbstractTaskStore,
        *,
        node_id: str,
        registry: TaskRegistry | None = None,
        producer: EventProducer | None = None,
        config: BackgroundTaskConfig | None = None,
        metrics: BgtaskMetrics | None = None,
    ) -> None:
        if not node_id:
            raise InvalidArgument("node_id must not be empty", data={"field": "node_id"})
        self._store = store
        self._node_id = node_id
        self._registry = registry if registry is not None else TaskRegistry()
        self._producer = producer
        self._config = config if config is not None else BackgroundTaskConfig()
        self._metrics = metrics
        self._entries: dict[TaskId, _Entry] = {}
        self._dirty: dict[TaskId, _Entry] = {}
        self._pump_wakeup = asyncio.Event()
        self._slots = (
            asyncio.Semaphore(self._config.max_concurrency)
            if self._config.max_concurrency is not None
            else None
        )
        self._publish_gate = asyncio.Semaphore(self._config.max_concurrent_publishes)
        self._state: Literal["new", "running", "closing", "closed"] = "new"
        self._stop_loops = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._counts = {
            "started": 0,
            "adopted": 0,
            "finished": 0,
            "lost": 0,
            "handed_over": 0,
            "progress_writes": 0,
            "progress_store_writes": 0,
            "store_errors": 0,
            "event_errors": 0,
        }

    # -- properties ----------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        """This node's id (the owner written in the store)."""
        return self._node_id

    @property
    def store(self) -> AbstractTaskStore:
        """The task store."""
        return self._store

    @property
    def registry(self) -> TaskRegistry:
        """The handlers this node can run."""
        return self._registry

    @property
    def config(self) -> BackgroundTaskConfig:
        """Timings and policies."""
        return self._config

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Start the heartbeat, adoption, purge, progress and cancel-listener loops."""
        if self._state != "new":
            raise ManagerClosed(f"BackgroundTaskManager.open(): the manager is {self._state}")
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A fresh context: the loops must not inherit the opener's request id or user.
        self._runner = asyncio.create_task(
            self._run(ready),
            name=f"BackgroundTaskManager[{self._node_id}]",
            context=contextvars.Context(),
        )
        try:
            await asyncio.shield(ready)
        except BaseException:
            self._runner.cancel()
            raise
        if self._runner.done():
            await self._runner

    async def aclose(self) -> None:
        """Stop intake, wait up to ``drain_timeout`` for running tasks, apply the shutdown
        policy to the rest (hand over, cancel or fail, each within ``cancel_grace``), then stop
        the loops; idempotent. Raises what a loop failed with, if one did.

        If cancelled, the handlers still running are cancelled and their leases left to expire
        (another node adopts them).
        """
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        runner = self._runner
        if self._state == "running":
            self._state = "closing"
            try:
                await self._apply_shutdown_policy()
            finally:
                self._stop_loops.set()
        await self._join_runner(runner)

    async def abort(self) -> None:
        """Stop at once as if the process had died (crash tests, fatal exits): handlers and
        loops are cancelled and nothing is written, so the leases expire and other nodes adopt
        the tasks. Idempotent; ``aclose()`` after it is a no-op."""
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        self._state = "closing"
        self._stop_loops.set()
        await self._join_runner(self._runner)

    async def _join_runner(self, runner: asyncio.Task[None] | None) -> None:
        """Wait for the loops to end, then mark the manager closed; if cancelled meanwhile,
        cancel them too (they belong to this manager) and re-raise."""
        if runner is None:
            return
        try:
            await asyncio.shield(runner)
        except asyncio.CancelledError:
            runner.cancel()
            raise
        finally:
            self._state = "closed"

    async def _apply_shutdown_policy(self) -> None:
        drain = self._config.drain_timeout
        if drain > 0 and self._entries:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain):
                    while self._entries:
                        await next(iter(self._entries.values())).done.wait()
        policy = self._config.shutdown_policy
        reason = {
            ShutdownPolicy.HANDOVER: _Stop.HANDOVER,
            ShutdownPolicy.CANCEL: _Stop.SHUTDOWN_CANCEL,
            ShutdownPolicy.FAIL: _Stop.SHUTDOWN_FAIL,
        }[policy]
        entries = list(self._entries.values())
        if entries:
            message = f"node {self._node_id!r} shut down"
            async with asyncio.TaskGroup() as tg:
                for entry in entries:
                    tg.create_task(self._stop(entry, reason, message))

    async def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                loops = [
                    tg.create_task(self._heartbeat_loop(), name="bgtask.heartbeat"),
                    tg.create_task(self._progress_loop(), name="bgtask.progress"),
                    tg.create_task(self._cancel_listener(), name="bgtask.cancel-listener"),
                    tg.create_task(self._sweep_loop(), name="bgtask.sweep"),
                ]
                if self._config.adopt:
                    loops.append(tg.create_task(self._adopt_loop(), name="bgtask.adopt"))
                self._state = "running"
                ready.set_result(None)
                await self._stop_loops.wait()
                for loop_task in loops:
                    loop_task.cancel()
                for entry in list(self._entries.values()):
                    if entry.task is not None:
                        entry.task.cancel()
        finally:
            self._tg = None
            if not ready.done():
                ready.set_result(None)

    def _check_running(self) -> asyncio.TaskGroup:
        if self._state != "running" or self._tg is None:
            raise ManagerClosed(
                f"background task manager {self._node_id!r} is {self._state}",
                data={"node_id": self._node_id},
            )
        return self._tg

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        tg = self._tg
        if tg is None:
            coro.close()
            return
        tg.create_task(coro, name=name, context=contextvars.Context())

    # -- starting tasks --------------------------------------------------------------

    async def start(
        self,
        name: str,
        args: BaseModel | Mapping[str, Any] | None = None,
        *,
        tags: Collection[str] = (),
        task_id: TaskId | None = None,
    ) -> TaskId:
        """Start the handler registered as ``name`` with ``args`` (its manifest model, or a
        mapping validated against it); returns the task id once the task is recorded.

        Raises ``UnknownTaskName``, ``InvalidTaskArgs``, ``ManagerClosed`` or the store's
        errors. If cancelled before the task is recorded, it may still have been recorded; it
        is then adopted like a task whose owner died. If cancelled after (while "Task started"
        is broadcast), the task runs here all the same.
        """
        self._check_running()
        definition = self._registry.resolve(name)
        model = definition.validate(args)
        manifest = model.model_dump(mode="json")

        async def call(reporter: ProgressReporter) -> HandlerResult:
            return await definition.handler(reporter, model)

        return await self._launch(
            name,
            call,
            manifest=manifest,
            tags=tags,
            resumable=definition.resumable,
            task_id=task_id,
        )

    async def start_coroutine(
        self,
        func: Callable[[ProgressReporter], Awaitable[HandlerResult]],
        *,
        name: str | None = None,
        tags: Collection[str] = (),
        task_id: TaskId | None = None,
    ) -> TaskId:
        """Start an unregistered coroutine function ``func(reporter)`` (upstream's
        ``start(func)``): it is tracked, leased and cancellable like any task, but no other
        node can run it, so if this node dies it is failed with the reason.

        The task's name (also its metric label) is ``name``, else the function's
        ``__qualname__``, looked up through ``functools.partial`` wrappers: never a repr, which
        would carry an address and the arguments.
        """
        self._check_running()
        task_name = name or _name_of_callable(func)
        return await self._launch(
            task_name, func, manifest={}, tags=tags, resumable=False, task_id=task_id
        )

    async def _launch(
        self,
        name: str,
        call: Callable[[ProgressReporter], Awaitable[HandlerResult]],
        *,
        manifest: Mapping[str, Any],
        tags: Collection[str],
        resumable: bool,
        task_id: TaskId | None,
    ) -> TaskId:
        tid = task_id if task_id is not None else TaskId(uuid.uuid4())
        record = await self._store.create(
            tid,
            name,
            owner=self._node_id,
            lease_ttl=self._config.lease_ttl,
            args=manifest,
            tags=tags,
            resumable=resumable,
            retention=self._config.retention,
        )
        context = ContextBundle.capture()
        entry = self._new_entry(record, call, context, resumable)
        self._counts["started"] += 1
        try:
            # Published before the handler is spawned, so that no event of the run (nor the
            # cached final one) can overtake "Task started".
            await self._publish(
                BgtaskUpdatedEvent(
                    task_id=tid, current_progress=0, total_progress=0, message=STARTED_MESSAGE
                ),
                context,
            )
        finally:
            # Also when the caller is cancelled during the broadcast: the entry is held here
            # (the heartbeat renews its lease, other nodes leave it alone), so its handler
            # must run here, or it would never run anywhere.
            self._spawn_entry(entry)
        return tid

    def _new_entry(
        self,
        record: TaskRecord,
        call: Callable[[ProgressReporter], Awaitable[HandlerResult]],
        context: ContextBundle,
        resumable: bool,
    ) -> _Entry:
        entry = _Entry(record, call, context, resumable, self)
        self._entries[record.task_id] = entry
        return entry

    def _spawn_entry(self, entry: _Entry) -> None:
        tg = self._tg
        if tg is None:  # closed meanwhile: leave the lease to expire (another node adopts)
            self._entries.pop(entry.task_id, None)
            return
        entry.task = tg.create_task(
            self._run_entry(entry),
            name=f"bgtask[{entry.name}:{entry.task_id}]",
            context=contextvars.Context(),
        )

    # -- running one task ------------------------------------------------------------

    async def _run_entry(self, entry: _Entry) -> None:
        try:
            with entry.context.applied():
                await self._execute(entry)
        finally:
            if self._entries.get(entry.task_id) is entry:
                del self._entries[entry.task_id]
            self._dirty.pop(entry.task_id, None)
            entry.reporter.release_waiters()
            entry.done.set()

    async def _execute(self, entry: _Entry) -> None:
        task = asyncio.current_task()
        assert task is not None
        if entry.closed:  # stopped before it began (the stop wrote its outcome)
            return
        if self._slots is not None:
            entry.acquiring = True
            try:
                await self._slots.acquire()
            except asyncio.CancelledError:
                if entry.stop is None or not self._uncancel(task, entry):
                    raise
                return  # stopped while waiting for a slot; _stop() wrote the outcome
            finally:
                entry.acquiring = False
        try:
            if entry.closed:
                return
            if entry.stop is not None:
                await self._end_unstarted(entry)
                return
            entry.phase = "starting"
            record = await self._mark_running(entry)
            if record is None:
                return
            if entry.stop is not None:
                await self._end_unstarted(entry)
                return
            await self._run_handler(entry, task)
        finally:
            if self._slots is not None:
                self._slots.release()

    async def _mark_running(self, entry: _Entry) -> TaskRecord | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.lease_ttl
        while True:
            try:
                return await self._store.mark_running(entry.lease, lease_ttl=self._config.lease_ttl)
            except _LOST_ERRORS as exc:
                log.warning("bgtask %s: not started, the lease is gone: %s", entry.task_id, exc)
                self._counts["lost"] += 1
                entry.closed = True
                return None
            except BgtaskError as exc:
                self._counts["store_errors"] += 1
                if loop.time() >= deadline or entry.stop is not None:
                    log.error("bgtask %s: could not start it: %s", entry.task_id, exc)
                    entry.closed = True
                    return None
                await asyncio.sleep(self._config.effective_heartbeat_interval)

    async def _run_handler(self, entry: _Entry, task: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        if self._metrics is not None:
            self._metrics.task_started(entry.name, resumed=entry.resumed)
        started = loop.time()
        status = "bgtask_lost"
        error_code: ErrorCode | None = None
        try:
            entry.phase = "running"
            outcome = await self._invoke(entry, task)
            entry.phase = "ending"
            if outcome is None:
                status = "bgtask_lost"
            elif outcome == _RELEASE:
                status = "bgtask_handed_over"
                await self._release(entry)
            else:
                assert isinstance(outcome, TaskOutcome)
                status = str(outcome.state.bgtask_status)
                if outcome.error_code is not None:
                    error_code = ErrorCode.parse(outcome.error_code)
                await self._finalize(entry, outcome)
        finally:
            if self._metrics is not None:
                self._metrics.task_stopped(
                    entry.name,
                    status=status,
                    duration=loop.time() - started,
                    error_code=error_code,
                )

    async def _invoke(
        self, entry: _Entry, task: asyncio.Task[None]
    ) -> TaskOutcome | Literal["release"] | None:
        try:
            returned = await entry.call(entry.reporter)
        except asyncio.CancelledError:
            entry.phase = "ending"
            if entry.stop is None or not self._uncancel(task, entry):
                raise
            return self._outcome_for_stop(entry)
        except Exception as exc:
            entry.phase = "ending"
            if entry.stop is not None:
                self._uncancel(task, entry)
                return self._outcome_for_stop(entry)
            log.warning("bgtask %s (%s) failed", entry.task_id, entry.name, exc_info=exc)
            code = exc.error_code() if isinstance(exc, BackendAIError) else _INTERNAL
            return TaskOutcome(
                TaskState.FAILED, message=f"{type(exc).__name__}: {exc}", error_code=str(code)
            )
        entry.phase = "ending"
        if entry.stop is not None:
            # The handler caught the cancellation (to clean up) and returned: the stop still
            # decides the outcome (cancelled, failed, handed over), never its return value.
            self._uncancel(task, entry)
            return self._outcome_for_stop(entry)
        return _outcome_of(returned)

    @staticmethod
    def _uncancel(task: asyncio.Task[None], entry: _Entry) -> bool:
        """Withdraw the cancellations this manager sent; False if someone else cancelled too."""
        remaining = task.cancelling()
        for _ in range(entry.cancels_sent):
            remaining = task.uncancel()
        entry.cancels_sent = 0
        return remaining == 0

    def _outcome_for_stop(self, entry: _Entry) -> TaskOutcome | Literal["release"] | None:
        match entry.stop:
            case _Stop.LOST | None:
                return None
            case _Stop.HANDOVER:
                if entry.resumable or entry.phase == "waiting":
                    return _RELEASE
                return TaskOutcome(
                    TaskState.FAILED,
                    message=f"{entry.stop_message} while the task was running, and handler "
                    f"{entry.name!r} is not resumable",
                    error_code=str(_INTERNAL),
                )
            case _Stop.SHUTDOWN_FAIL:
                return TaskOutcome(
                    TaskState.FAILED, message=entry.stop_message, error_code=str(_INTERNAL)
                )
            case _Stop.CANCEL | _Stop.SHUTDOWN_CANCEL:
                return TaskOutcome(
                    TaskState.CANCELLED, message=entry.stop_message, error_code=str(_CANCELLED)
                )

    async def _end_unstarted(self, entry: _Entry) -> None:
        outcome = self._outcome_for_stop(entry)
        if outcome is None:
            entry.closed = True
        elif outcome == _RELEASE:
            await self._release(entry)
        else:
            assert isinstance(outcome, TaskOutcome)
            await self._finalize(entry, outcome)

    # -- writes ----------------------------------------------------------------------

    async def _finalize(self, entry: _Entry, outcome: TaskOutcome) -> TaskRecord | None:
        """The final write and event of a task this node holds (once)."""
        async with entry.lock:
            if entry.closed:
                return None
            entry.closed = True
            self._dirty.pop(entry.task_id, None)
            snap = entry.reporter.snapshot()
            record = await self._write_final(entry.lease, outcome, snap.current, snap.total)
            if record is None:
                return None
            if entry.reporter.unflushed:
                await self._publish(
                    BgtaskUpdatedEvent(
                        task_id=entry.task_id,
                        current_progress=snap.current,
                        total_progress=snap.total,
                        message=snap.message,
                    ),
                    entry.context,
                )
            entry.reporter.mark_flushed(snap.seq)
            await self._publish(event_of_record(record), entry.context)
            return record

    async def _write_final(
        self,
        lease: Lease,
        outcome: TaskOutcome,
        current: float | None = None,
        total: float | None = None,
    ) -> TaskRecord | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.lease_ttl
        while True:
            try:
                record = await self._store.finish(lease, outcome, current=current, total=total)
            except _LOST_ERRORS as exc:
                log.warning("bgtask %s: final state not written: %s", lease.task_id, exc)
                self._counts["lost"] += 1
                return None
            except BgtaskError as exc:
                self._counts["store_errors"] += 1
                if loop.time() >= deadline:
                    log.error(
                        "bgtask %s: could not write its final state %s (its lease will expire "
                        "and another node adopts it): %s",
                        lease.task_id,
                        outcome.state,
                        exc,
                    )
                    return None
                await asyncio.sleep(self._config.effective_heartbeat_interval)
                continue
            self._counts["finished"] += 1
            return record

    async def _release(self, entry: _Entry) -> None:
        async with entry.lock:
            if entry.closed:
                return
            entry.closed = True
            self._dirty.pop(entry.task_id, None)
            try:
                await self._store.release(entry.lease)
            except _LOST_ERRORS:
                return
            except BgtaskError as exc:
                # Not released: the lease expires by itself and the task is adopted anyway.
                self._counts["store_errors"] += 1
                log.warning("bgtask %s: release failed: %s", entry.task_id, exc)
                return
            self._counts["handed_over"] += 1
            snap = entry.reporter.snapshot()
            await self._publish(
                BgtaskUpdatedEvent(
                    task_id=entry.task_id,
                    current_progress=snap.current,
                    total_progress=snap.total,
                    message=f"handed over: {entry.stop_message}",
                ),
                entry.context,
            )

    async def _publish(self, event: BgtaskEvent, context: ContextBundle | None) -> None:
        if self._producer is None:
            return
        try:
            async with self._publish_gate:
                await self._producer.broadcast_event_with_cache(event, context=context)
        except (MessageQueueError, BackendAIError) as exc:
            self._counts["event_errors"] += 1
            log.warning("bgtask %s: %s not broadcast: %s", event.task_id, event.event_name, exc)

    # -- the reporters' sink -------------------------------------------------------------

    def _progress_changed(self, entry: _Entry) -> None:
        """A reporter's ``update()``: schedule a (coalesced) write of its entry."""
        if self._entries.get(entry.task_id) is not entry:
            return  # an older run of a task this node adopted again: never written
        if entry.closed or entry.flushing or entry.task_id in self._dirty:
            return  # a running flush re-schedules itself if it left something unwritten
        self._dirty[entry.task_id] = entry
        self._pump_wakeup.set()

    async def _save_checkpoint(self, entry: _Entry, value: Any) -> None:
        """A reporter's ``save_checkpoint()``: write it (with the progress) at once, fenced."""
        if entry.closed:
            raise TaskAlreadyFinished(
                f"background task {entry.task_id} (fencing token {entry.lease.token}) is not "
                f"running on node {self._node_id!r} any more",
                data={"task_id": str(entry.task_id), "token": entry.lease.token},
            )
        async with entry.lock:
            snap = entry.reporter.snapshot()
            try:
                await self._store.update_progress(
                    entry.lease,
                    current=snap.current,
                    total=snap.total,
                    message=snap.message,
                    checkpoint=value,
                    save_checkpoint=True,
                )
            except _LOST_ERRORS:
                self._lose(entry)
                raise

    async def _progress_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._pump_wakeup.wait()
            self._pump_wakeup.clear()
            while self._dirty:
                now = loop.time()
                due = [e for e in self._dirty.values() if e.next_flush <= now]
                if not due:
                    delay = min(e.next_flush for e in self._dirty.values()) - now
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._pump_wakeup.wait()
                    self._pump_wakeup.clear()
                    continue
                for entry in due:
                    del self._dirty[entry.task_id]
                    entry.flushing = True
                    self._spawn(self._flush_progress(entry), f"bgtask.progress[{entry.task_id}]")

    async def _flush_progress(self, entry: _Entry) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with entry.lock:
                if entry.closed or not entry.reporter.unflushed:
                    return
                snap = entry.reporter.snapshot()
                now = loop.time()
                if now >= entry.next_store_write:
                    try:
                        await self._store.update_progress(
                            entry.lease,
                            current=snap.current,
                            total=snap.total,
                            message=snap.message,
                        )
                    except _LOST_ERRORS:
                        self._lose(entry)
                        return
                    except BgtaskError as exc:
                        # The event still goes out; the store gets the values next time.
                        self._counts["store_errors"] += 1
                        log.warning("bgtask %s: progress not stored: %s", entry.task_id, exc)
                    else:
                        self._counts["progress_store_writes"] += 1
                        entry.next_store_write = now + self._config.store_progress_interval
                self._counts["progress_writes"] += 1
                await self._publish(
                    BgtaskUpdatedEvent(
                        task_id=entry.task_id,
                        current_progress=snap.current,
                        total_progress=snap.total,
                        message=snap.message,
                    ),
                    entry.context,
                )
                entry.reporter.mark_flushed(snap.seq)
                entry.next_flush = loop.time() + self._config.progress_interval
        finally:
            entry.flushing = False
        if entry.reporter.unflushed:
            self._progress_changed(entry)

    # -- stopping tasks --------------------------------------------------------------

    def _lose(self, entry: _Entry) -> None:
        """Another node owns the task now: stop the handler here and write nothing."""
        if entry.stop is _Stop.LOST:
            return
        self._counts["lost"] += 1
        log.warning(
            "bgtask %s (%s): lease lost (token %d); stopping it on node %s",
            entry.task_id,
            entry.name,
            entry.lease.token,
            self._node_id,
        )
        entry.closed = True
        if entry.stop is None:
            entry.stop = _Stop.LOST
            entry.stop_message = "lease lost"
            self._cancel_task(entry)

    def _cancel_task(self, entry: _Entry) -> None:
        """Cancel the entry's task where it awaits a handler or a slot (never its own writes,
        and never before it started: a task cancelled before its first step skips its
        cleanup)."""
        if entry.task is None or entry.task.done():
            return
        if entry.phase == "running" or (entry.phase == "waiting" and entry.acquiring):
            entry.cancels_sent += 1
            entry.task.cancel()

    async def _stop(self, entry: _Entry, reason: _Stop, message: str) -> None:
        """Stop a task this node holds and record why (within ``cancel_grace``)."""
        if entry.stop is None:
            entry.stop = reason
            entry.stop_message = message
            if reason is _Stop.CANCEL:
                entry.reporter.request_cancel()
            phase = entry.phase
            self._cancel_task(entry)
            if phase == "waiting":
                await self._end_unstarted(entry)
        if entry.task is None:
            return
        try:
            async with asyncio.timeout(self._config.cancel_grace):
                await entry.done.wait()
        except TimeoutError:
            # The handler ignores its cancellation: record the stop now; its later result is
            # discarded (the entry is closed).
            log.warning(
                "bgtask %s (%s) did not stop within %.1f s",
                entry.task_id,
                entry.name,
                self._config.cancel_grace,
            )
            entry.stop_message = (
                f"{entry.stop_message} (the handler did not stop within the "
                f"{self._config.cancel_grace:g} s grace period)"
            )
            outcome = self._outcome_for_stop(entry)
            if outcome == _RELEASE:
                await self._release(entry)
            elif isinstance(outcome, TaskOutcome):
                await self._finalize(entry, outcome)

    async def cancel(self, task_id: TaskId) -> TaskRecord:
        """Cancel a task, wherever it runs; returns its record.

        On the owner node this returns once the task ended (``cancelled``, or whatever it
        reached first), within ``cancel_grace``; from another node it returns once the request
        is recorded, and the owner cancels the handler on the notification or its next
        heartbeat. A final task is returned unchanged; an unknown id raises ``TaskNotFound``.
        If this call is cancelled, the request may already be recorded (the owner acts on it).
        """
        record = await self._store.request_cancel(task_id)
        entry = self._entries.get(task_id)
        if entry is not None and not record.state.is_final:
            await self._stop(entry, _Stop.CANCEL, "cancelled on request")
            latest = await self._store.get(task_id)
            return latest if latest is not None else record
        return record

    # -- reading ---------------------------------------------------------------------

    async def get(self, task_id: TaskId) -> TaskRecord:
        """The task's record; ``TaskNotFound`` if it does not exist (or was purged)."""
        record = await self._store.get(task_id)
        if record is None:
            raise TaskNotFound(
                f"background task {task_id} not found", data={"task_id": str(task_id)}
            )
        return record

    async def list_tasks(
        self,
        *,
        owner: str | None = None,
        tag: str | None = None,
        states: Collection[TaskState] | None = None,
    ) -> list[TaskRecord]:
        """Tasks by owner node and/or tag (all when neither), optionally only in ``states``."""
        return await self._store.list_tasks(owner=owner, tag=tag, states=states)

    async def wait(self, task_id: TaskId, *, poll_interval: float = 0.5) -> TaskRecord:
        """Wait until the task is final (wherever it runs) and return its record.

        Raises ``TaskNotFound`` if it does not exist; cancelling just stops waiting.
        """
        while True:
            entry = self._entries.get(task_id)
            if entry is not None:
                await entry.done.wait()
            record = await self.get(task_id)
            if record.state.is_final:
                return record
            if self._entries.get(task_id) is None:
                await asyncio.sleep(poll_interval)

    def owned(self) -> list[TaskId]:
        """Ids of the tasks this node holds now."""
        return list(self._entries)

    def statistics(self) -> ManagerStatistics:
        """A snapshot of this manager's counters."""
        return ManagerStatistics(
            owned=len(self._entries),
            running=sum(1 for e in self._entries.values() if e.phase == "running"),
            **self._counts,
        )

    # -- loops -----------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self._config.effective_heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            await self.renew_leases()

    async def renew_leases(self) -> None:
        """Renew every lease this node holds now (the heartbeat does this periodically);
        stops the tasks whose lease was lost and cancels those with a cancel request."""
        entries = [e for e in self._entries.values() if not e.closed]
        if not entries:
            return
        try:
            statuses = await self._store.renew(
                self._node_id, [e.lease for e in entries], lease_ttl=self._config.lease_ttl
            )
        except BgtaskError as exc:
            self._counts["store_errors"] += 1
            log.warning("bgtask heartbeat of node %s failed: %s", self._node_id, exc)
            return
        for entry in entries:
            status = statuses.get(entry.task_id, LeaseStatus.LOST)
            if status is LeaseStatus.LOST:
                if not entry.closed:  # else finished or released here meanwhile: not lost
                    self._lose(entry)
            elif status is LeaseStatus.CANCEL_REQUESTED and entry.stop is None:
                self._spawn(
                    self._stop(entry, _Stop.CANCEL, "cancelled on request"),
                    f"bgtask.cancel[{entry.task_id}]",
                )

    async def _cancel_listener(self) -> None:
        while True:
            try:
                async with contextlib.aclosing(self._store.cancellations()) as notifications:
                    async for task_id in notifications:
                        entry = self._entries.get(task_id)
                        if entry is not None and entry.stop is None:
                            self._spawn(
                                self._stop(entry, _Stop.CANCEL, "cancelled on request"),
                                f"bgtask.cancel[{task_id}]",
                            )
                return  # the store closed
            except BgtaskError as exc:
                # Notifications are a hint; the heartbeat reports cancel requests anyway.
                self._counts["store_errors"] += 1
                log.warning("bgtask cancel notifications interrupted: %s", exc)
                await asyncio.sleep(self._config.effective_heartbeat_interval)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.sweep_interval)
            try:
                await self.purge_expired()
            except BgtaskError as exc:
                self._counts["store_errors"] += 1
                log.warning("bgtask purge failed: %s", exc)

    async def purge_expired(self) -> int:
        """Remove every final task past its retention (the sweep does this periodically);
        returns how many were removed."""
        total = 0
        batch = self._config.sweep_batch
        while True:
            removed = await self._store.purge(limit=batch)
            total += removed
            if removed < batch:
                return total

    async def _adopt_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.effective_adopt_interval)
            if self._state != "running":
                continue
            try:
                await self.adopt_expired()
            except BgtaskError as exc:
                self._counts["store_errors"] += 1
                log.warning("bgtask adoption scan failed: %s", exc)

    async def adopt_expired(self) -> list[TaskId]:
        """Adopt the tasks whose lease expired (the adoption loop does this periodically);
        returns the ids adopted here. If cancelled, a task adopted but not yet handled keeps
        this node's lease until it expires again and another scan adopts it."""
        if self._state != "running":
            return []
        adopted: list[TaskId] = []
        grace = self._config.effective_unknown_name_grace
        for expired in await self._store.expired(limit=self._config.adopt_batch):
            if expired.task_id in self._entries:
                continue  # ours and still running here: the next heartbeat renews it
            definition = self._registry.get(expired.name)
            if definition is None and expired.overdue < grace:
                continue  # leave it to a node that has the handler
            if await self._adopt(expired):
                adopted.append(expired.task_id)
        return adopted

    async def _adopt(self, expired: ExpiredLease) -> bool:
        record = await self._store.adopt(
            expired.task_id, self._node_id, lease_ttl=self._config.lease_ttl
        )
        if record is None:
            return False
        self._counts["adopted"] += 1
        previous = record.previous_owner
        lost = f"owner {previous!r} stopped renewing its lease"
        definition = self._registry.get(record.name)
        outcome: TaskOutcome | None = None
        action = "failed"
        if record.cancel_requested:
            action = "cancelled"
            outcome = TaskOutcome(
                TaskState.CANCELLED,
                message=f"cancelled on request; {lost} before the task stopped",
                error_code=str(_CANCELLED),
            )
        elif definition is None:
            outcome = TaskOutcome(
                TaskState.FAILED,
                message=f"{lost}, and no handler named {record.name!r} is registered on node "
                f"{self._node_id!r} (a coroutine started without a name cannot be resumed)",
                error_code=str(_INTERNAL),
            )
        elif record.run_count > 0 and not definition.resumable:
            outcome = TaskOutcome(
                TaskState.FAILED,
                message=f"{lost} while the task was running, and handler {record.name!r} is "
                "not resumable",
                error_code=str(_INTERNAL),
            )
        else:
            try:
                model = definition.validate(record.args)
            except InvalidTaskArgs as exc:
                outcome = TaskOutcome(
                    TaskState.FAILED,
                    message=f"{lost}, and its stored arguments no longer validate: {exc}",
                    error_code=str(exc.error_code()),
                )
            else:
                action = "resumed" if record.run_count > 0 else "started"

                async def call(reporter: ProgressReporter) -> HandlerResult:
                    return await definition.handler(reporter, model)

                log.info(
                    "bgtask %s (%s): adopted from %s (token %d), %s",
                    record.task_id,
                    record.name,
                    previous,
                    record.token,
                    action,
                )
                entry = self._new_entry(record, call, ContextBundle(), definition.resumable)
                self._spawn_entry(entry)
        if self._metrics is not None:
            self._metrics.task_adopted(record.name, action=action)
        if outcome is not None:
            log.warning(
                "bgtask %s (%s): adopted and %s: %s",
                record.task_id,
                record.name,
                action,
                outcome.message,
            )
            final = await self._write_final(record.lease, outcome)
            if final is not None:
                await self._publish(event_of_record(final), None)
        return True


class _EntrySink:
    """What one run's reporter writes through: bound to that run (its lease), not the id."""

    __slots__ = ("_entry", "_manager")

    def __init__(self, manager: BackgroundTaskManager, entry: _Entry) -> None:
        self._manager = manager
        self._entry = entry

    def progress_changed(self, task_id: TaskId) -> None:
        self._manager._progress_changed(self._entry)

    async def save_checkpoint(self, task_id: TaskId, value: Any) -> None:
        await self._manager._save_checkpoint(self._entry, value)


def _name_of_callable(func: object) -> str:
    """A bounded name for an ad-hoc task function: the same for every call of it."""
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__qualname__", None)
    if isinstance(name, str) and name:
        return name
    return type(func).__qualname__  # a callable object: its class


def _outcome_of(returned: object) -> TaskOutcome:
    if returned is None:
        return TaskOutcome(TaskState.SUCCEEDED)
    if isinstance(returned, str):
        return TaskOutcome(TaskState.SUCCEEDED, message=returned)
    if isinstance(returned, TaskResult):
        if returned.errors:
            return TaskOutcome(
                TaskState.PARTIALLY_SUCCEEDED,
                message=returned.message,
                result=returned.data,
                errors=tuple(returned.errors),
            )
        return TaskOutcome(TaskState.SUCCEEDED, message=returned.message, result=returned.data)
    return TaskOutcome(TaskState.SUCCEEDED, result=returned)
