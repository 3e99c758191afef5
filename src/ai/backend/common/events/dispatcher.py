"""Handling events: :class:`EventDispatcher` runs registered handlers for queue messages.

Anycast messages (``consume``) are settled per handler: each handler has a stable id; when a
message has handlers left to run after one succeeds (or another failed), the success is
recorded with ``queue.mark_handled``, and a redelivered message runs only the handlers not
recorded. A message is acked once every handler succeeded, nacked with the errors otherwise
(the queue redelivers it, and dead-letters it after ``max_deliveries``). Broadcasts
(``subscribe``) are handed to every subscriber handler; there is nothing to settle.

Durable broadcasts (those the queue hands out with a stream id, ``BroadcastMode.DURABLE``) are
handled one at a time, in order: the queue stores a durable subscriber's position when it is
asked for the next broadcast, so the pump asks for the next one only after every subscriber
handler of the current one has finished. A subscriber closed, or killed, and restarted under
the same ``subscriber_id`` thus receives each broadcast exactly once, in order (only one whose
handler the kill cut short comes again). Volatile broadcasts are handled side by side, like
anycast messages.

How it runs: one pump task per delivery pattern reads the queue and puts messages on a job
queue, ``max_concurrency`` worker tasks take them (no task per message), and one acker task
acks finished messages in batches (a worker acks its message itself when no ack is under way,
which saves a loop turn when messages come one at a time). All of them live in a TaskGroup
owned by the dispatcher.

Callbacks are ``callback(context, source, event)`` (upstream's signature), sync or async.
An async callback is awaited by a worker. A sync callback is called directly on the event loop,
so it must be quick; register it with ``run_in_thread=True`` to run it in a thread instead.

Guarantees:
- the context bundle of the message (request id, users, traceparent) is bound around each
  handler, and nothing else is (workers start from an empty context)
  [tests/events/test_dispatcher.py::test_context_is_restored_in_handlers];
- a redelivered message re-runs only the handlers that did not succeed
  [tests/events/test_dispatcher.py::test_redelivery_runs_only_failed_handlers];
- a handler that always fails leaves the message in the dead-letter stream after
  ``max_deliveries``, with its error; it can be listed and replayed
  [tests/events/test_dispatcher.py::test_always_failing_handler_dead_letters];
- a handler error is reported (observers, ``on_failure``, counters) and never stops the pump
  [tests/events/test_dispatcher.py::test_handler_errors_are_reported_and_pump_goes_on];
- when reading the queue fails (a lost connection, even mid-stream), the failure is reported
  (``on_failure``, stage ``pump``) and the pump reads again with backoff; nothing is lost
  [tests/events/test_dispatcher.py::test_pump_recovers_after_consume_errors];
- an undecodable payload is dead-lettered with the reason
  [tests/events/test_dispatcher.py::test_undecodable_payload_is_dead_lettered];
- messages coalesced into one handler call are all acked
  [tests/events/test_dispatcher.py::test_coalescing_acks_every_message];
- at most ``max_concurrency`` handler calls run at once
  [tests/events/test_dispatcher.py::test_concurrency_is_bounded];
- ``aclose()`` lets running handlers finish within ``close_timeout``, nacks what it had to
  cancel or never started, and leaves no task behind
  [tests/events/test_dispatcher.py::test_close_drains_then_cancels];
- a consumer process killed with SIGKILL mid-batch loses no event, and a handler that recorded
  its success never runs again [tests/events/test_dispatcher_kill.py::test_kill_9_mid_batch];
- durable broadcasts reach the subscriber handlers in order, and a subscriber closed
  mid-stream or killed between two broadcasts (its queue aborted) and restarted under the
  same ``subscriber_id`` receives every broadcast exactly once; ``aclose()`` lets the
  broadcast being handled finish first
  [tests/events/test_dispatcher_durable.py::test_durable_broadcasts_survive_close_exactly_once_in_order]
  [tests/events/test_dispatcher_durable.py::test_durable_broadcasts_survive_abort_exactly_once_in_order].

Limits:
- at-least-once: a handler that succeeded but whose success was not yet recorded (process
  killed in between) runs again
  [tests/events/test_dispatcher_kill.py::test_kill_9_mid_batch];
- an anycast message whose name has no handler here (or no event class) is acked without
  decoding: every group sees every anycast event, and peers may send names this version does
  not know (upstream does the same)
  [tests/events/test_dispatcher.py::test_unhandled_names_are_acked];
- anycast messages and volatile broadcasts are handled concurrently, so their order is kept
  only with ``max_concurrency=1``; the handlers of one message run one after another, in
  registration order [tests/events/test_dispatcher.py::test_handlers_of_a_message_run_in_order];
- a broadcast handler that raises is reported and not retried (broadcasts have no nack): the
  broadcast counts as seen
  [tests/events/test_dispatcher_durable.py::test_failing_durable_broadcast_handler_is_not_retried];
- a durable broadcast whose handler was running when the process died comes again after the
  restart (at-least-once for that one; nothing after it was taken)
  [tests/events/test_dispatcher_durable.py::test_durable_broadcast_in_progress_at_kill_may_come_again];
- a durable broadcast whose handler is still running when ``close_timeout`` runs out is
  cancelled and counts as seen
  [tests/events/test_dispatcher_durable.py::test_durable_broadcast_cut_at_close_counts_as_seen];
- a coalescing handler is called once per batch with the latest event of the batch
  [tests/events/test_dispatcher.py::test_coalescing_acks_every_message].
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Generic, Literal, Protocol, Self, TypeVar, cast, runtime_checkable

from pydantic import ValidationError

from ..contexts import (
    ContextBundle,
    current_client_ip,
    current_request_id,
    current_traceparent,
    current_triggered_user,
    current_user,
)
from ..exception import InvalidArgument
from ..message_queue import (
    AbstractMessageQueue,
    AnycastMessage,
    BroadcastMessage,
    QueueClosed,
    QueueConfigError,
)
from ._jobs import JobQueue
from .codec import EMPTY_CONTEXT, EventCodec
from .event import AbstractEvent
from .exceptions import DispatcherStateError, EventDecodeError, HandlerConflict
from .types import DeliveryPattern, HandlerId

__all__ = (
    "CoalescingOptions",
    "DispatchFailure",
    "DispatcherStatistics",
    "EventCounts",
    "EventDispatcher",
    "EventHandler",
    "EventObserver",
    "FailureStage",
)

log = logging.getLogger(__spec__.name if __spec__ else __name__)

E = TypeVar("E", bound=AbstractEvent)
C = TypeVar("C")

FailureStage = Literal["handler", "decode", "settle", "pump", "observer"]
"""Where a failure happened: a handler raised; a message could not be decoded; an ack, nack,
dead-letter or mark failed; reading the queue failed; an observer raised."""

_PUMP_BACKOFF = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


@dataclass(frozen=True, slots=True)
class CoalescingOptions:
    """Debounce for one handler: wait up to ``max_wait`` seconds after the first event for more,
    or until ``max_batch_size`` events are waiting, then call the handler once (latest event)."""

    max_wait: float
    max_batch_size: int

    def __post_init__(self) -> None:
        if self.max_wait < 0:
            raise InvalidArgument(f"CoalescingOptions.max_wait must be >= 0, got {self.max_wait}")
        if self.max_batch_size < 1:
            raise InvalidArgument(
                f"CoalescingOptions.max_batch_size must be >= 1, got {self.max_batch_size}"
            )


@runtime_checkable
class EventObserver(Protocol):
    """Receives one call per handler run (upstream's ``EventMetricObserver`` has this shape,
    so :class:`ai.backend.common.metrics.EventMetricObserver` and its ``backendai_event_*``
    metrics plug in as they are).

    Two more hooks are called when the observer has them: ``observe_event_redelivered(*,
    event_type)`` for each message delivered again, and ``observe_event_dead_lettered(*,
    event_type)`` for each message this dispatcher dead-letters (undecodable ones).
    """

    def observe_event_success(self, *, event_type: str, duration: float) -> None:
        """A handler of ``event_type`` (the event name) succeeded in ``duration`` seconds."""
        ...

    def observe_event_failure(
        self, *, event_type: str, duration: float, exception: BaseException
    ) -> None:
        """A handler of ``event_type`` raised ``exception`` after ``duration`` seconds."""
        ...


@dataclass(frozen=True, slots=True)
class DispatchFailure:
    """What went wrong, handed to the ``on_failure`` callback."""

    stage: FailureStage
    exception: BaseException
    event_name: str | None = None
    handler_id: HandlerId | None = None
    msg_id: str | None = None
    delivery_count: int = 0


@dataclass(frozen=True, slots=True)
class EventCounts:
    """Handler runs of one event name."""

    handled: int
    failed: int


@dataclass(frozen=True, slots=True)
class DispatcherStatistics:
    """A snapshot of a dispatcher's state and counters (since it was created)."""

    running: bool
    in_flight: int
    """Jobs (messages, coalesced batches) a worker is handling now."""
    queued: int
    """Jobs waiting for a worker."""
    max_concurrency: int
    received: int
    """Anycast messages read from the queue (redeliveries included)."""
    broadcasts_received: int
    acked: int
    nacked: int
    dead_lettered: int
    """Messages this dispatcher dead-lettered because they could not be decoded."""
    unhandled: int
    """Anycast messages acked without running anything (no handler for their name)."""
    coalesced: int
    """Messages whose coalescing handler ran as part of a batch rather than for them alone."""
    handled: int
    """Handler runs that succeeded."""
    failed: int
    """Handler runs that raised."""
    failures: int
    """Failures of any stage reported (handler, decode, settle, pump, observer)."""
    per_event: Mapping[str, EventCounts] = field(default_factory=dict)


class EventHandler(Generic[C, E]):
    """One registered callback; returned by :meth:`EventDispatcher.consume` / ``subscribe``."""

    __slots__ = (
        "callback",
        "coalescing",
        "context",
        "delivery",
        "event_cls",
        "id",
        "is_async",
        "run_in_thread",
    )

    def __init__(
        self,
        handler_id: HandlerId,
        event_cls: type[E],
        delivery: DeliveryPattern,
        context: C,
        callback: Callable[[C, str, E], Awaitable[None] | None],
        coalescing: CoalescingOptions | None,
        run_in_thread: bool,
    ) -> None:
        self.id = handler_id
        self.event_cls = event_cls
        self.delivery = delivery
        self.context = context
        self.callback = callback
        self.coalescing = coalescing
        self.run_in_thread = run_in_thread
        self.is_async = inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
            getattr(callback, "__call__", None)  # noqa: B004 - callable objects
        )

    def __repr__(self) -> str:
        return f"<EventHandler {self.id!r} for {self.event_cls.event_name!r} ({self.delivery})>"


class _Route:
    """The handlers of one event name on one delivery pattern."""

    __slots__ = ("classes", "handlers", "single")

    def __init__(self) -> None:
        self.handlers: list[EventHandler[Any, Any]] = []
        self.classes: list[type[AbstractEvent]] = []
        self.single: EventHandler[Any, Any] | None = None
        """The only handler, when there is one and it does not coalesce (the fast path)."""

    def rebuild(self) -> None:
        seen: list[type[AbstractEvent]] = []
        for handler in self.handlers:
            if handler.event_cls not in seen:
                seen.append(handler.event_cls)
        self.classes = seen
        only = self.handlers[0] if len(self.handlers) == 1 else None
        self.single = only if only is not None and only.coalescing is None else None


class _Settlement:
    """An anycast message whose settling waits for coalesced handler runs."""

    __slots__ = ("delivery_count", "errors", "msg_id", "name", "outstanding")

    def __init__(self, msg: AnycastMessage, name: str, outstanding: int) -> None:
        self.msg_id = msg.msg_id
        self.delivery_count = msg.delivery_count
        self.name = name
        self.outstanding = outstanding
        self.errors: list[str] = []


@dataclass(slots=True)
class _CoalesceItem:
    settlement: _Settlement | None
    source: str
    event: AbstractEvent
    context: ContextBundle


@dataclass(slots=True)
class _CoalesceBuffer:
    handler: EventHandler[Any, Any]
    items: list[_CoalesceItem] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class _CoalescedJob:
    handler: EventHandler[Any, Any]
    items: list[_CoalesceItem]


@dataclass(slots=True)
class _DurableBroadcastJob:
    """A durable broadcast; ``done`` resolves once all its handlers have run."""

    msg: BroadcastMessage
    route: _Route
    done: asyncio.Future[None]


class EventDispatcher:
    """Runs handlers for the anycast messages and broadcasts of one message-queue client.

    ``async with EventDispatcher(queue) as dispatcher:`` starts it; handlers may be added before
    or after. The dispatcher does not own the queue: open it before, close it after.
    """

    def __init__(
        self,
        queue: AbstractMessageQueue,
        *,
        max_concurrency: int = 32,
        close_timeout: float = 10.0,
        observers: Sequence[EventObserver] = (),
        on_failure: Callable[[DispatchFailure], None] | None = None,
        codec: EventCodec | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise InvalidArgument(f"max_concurrency must be >= 1, got {max_concurrency}")
        self._queue = queue
        self._max_concurrency = max_concurrency
        self._room_low = max_concurrency * 4
        self._close_timeout = close_timeout
        self._observers = tuple(observers)
        self._on_redelivered: tuple[Callable[..., None], ...] = tuple(
            hook
            for o in observers
            if callable(hook := getattr(o, "observe_event_redelivered", None))
        )
        self._on_dead_lettered: tuple[Callable[..., None], ...] = tuple(
            hook
            for o in observers
            if callable(hook := getattr(o, "observe_event_dead_lettered", None))
        )
        self._on_failure = on_failure
        self._codec = codec if codec is not None else EventCodec()
        self._routes: dict[DeliveryPattern, dict[str, _Route]] = {
            DeliveryPattern.ANYCAST: {},
            DeliveryPattern.BROADCAST: {},
        }
        self._jobs: JobQueue[Any] = JobQueue()
        self._active: dict[str, AnycastMessage] = {}
        self._coalesce: dict[int, _CoalesceBuffer] = {}
        self._ack_buffer: list[str] = []
        self._ack_wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self._acker_stop = False
        self._acking = False
        self._room = asyncio.Event()
        self._room_wanted = False
        self._runner: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._pumps: dict[DeliveryPattern, asyncio.Task[None]] = {}
        self._durable_job: _DurableBroadcastJob | None = None
        """The durable broadcast being handled; the broadcast pump waits for it."""
        self._workers: list[asyncio.Task[None]] = []
        self._state: Literal["new", "running", "closing", "closed"] = "new"
        self._busy = 0
        self._received = 0
        self._broadcasts = 0
        self._acked = 0
        self._nacked = 0
        self._dead_lettered = 0
        self._unhandled = 0
        self._coalesced = 0
        self._handled = 0
        self._failed = 0
        self._failures = 0
        self._per_event: dict[str, list[int]] = {}

    # -- registration -----------------------------------------------------------------

    def consume(
        self,
        event_cls: type[E],
        context: C,
        callback: Callable[[C, str, E], Awaitable[None] | None],
        *,
        name: str | None = None,
        coalescing: CoalescingOptions | None = None,
        run_in_thread: bool = False,
    ) -> EventHandler[C, E]:
        """Handle ``event_cls`` messages of the anycast stream (one consumer per group).

        ``name`` is the handler's stable id (default: the callback's module and qualified
        name); per-handler acknowledgement records it, so keep it across versions.
        """
        return self._add(
            DeliveryPattern.ANYCAST, event_cls, context, callback, name, coalescing, run_in_thread
        )

    def subscribe(
        self,
        event_cls: type[E],
        context: C,
        callback: Callable[[C, str, E], Awaitable[None] | None],
        *,
        name: str | None = None,
        coalescing: CoalescingOptions | None = None,
        run_in_thread: bool = False,
    ) -> EventHandler[C, E]:
        """Handle every ``event_cls`` broadcast (all subscribers receive each one)."""
        return self._add(
            DeliveryPattern.BROADCAST,
            event_cls,
            context,
            callback,
            name,
            coalescing,
            run_in_thread,
        )

    def remove(self, handler: EventHandler[Any, Any]) -> None:
        """Unregister a handler; a run in progress finishes. Unknown handlers are ignored."""
        route = self._routes[handler.delivery].get(handler.event_cls.event_name)
        if route is None or handler not in route.handlers:
            return
        route.handlers = [h for h in route.handlers if h is not handler]
        route.rebuild()
        if not route.handlers:
            del self._routes[handler.delivery][handler.event_cls.event_name]

    def _add(
        self,
        delivery: DeliveryPattern,
        event_cls: type[E],
        context: C,
        callback: Callable[[C, str, E], Awaitable[None] | None],
        name: str | None,
        coalescing: CoalescingOptions | None,
        run_in_thread: bool,
    ) -> EventHandler[C, E]:
        if self._state in ("closing", "closed"):
            raise DispatcherStateError("cannot add a handler to a closed EventDispatcher")
        if not (isinstance(event_cls, type) and issubclass(event_cls, AbstractEvent)) or (
            not event_cls.is_concrete
        ):
            raise InvalidArgument(f"{event_cls!r} is not a concrete event class")
        handler_id = HandlerId(name if name is not None else _default_id(callback))
        route = self._routes[delivery].setdefault(event_cls.event_name, _Route())
        for other in route.handlers:
            if other.id == handler_id:
                raise HandlerConflict(
                    f"handler id {handler_id!r} is already registered for "
                    f"{event_cls.event_name!r} ({delivery}); pass a distinct name=",
                    data={"handler_id": handler_id, "event_name": event_cls.event_name},
                )
        handler = EventHandler(
            handler_id, event_cls, delivery, context, callback, coalescing, run_in_thread
        )
        route.handlers = [*route.handlers, handler]
        route.rebuild()
        if self._state == "running":
            self._ensure_pump(delivery)
        return handler

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start the workers, the acker and the pumps of the registered delivery patterns."""
        if self._state != "new":
            raise DispatcherStateError(f"EventDispatcher.start(): dispatcher is {self._state}")
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A fresh, empty context: workers must not inherit the starter's request id or user.
        self._runner = asyncio.create_task(
            self._run(ready), name="EventDispatcher", context=contextvars.Context()
        )
        try:
            await asyncio.shield(ready)
        except BaseException:
            self._runner.cancel()
            self._state = "closed"
            await asyncio.wait([self._runner])  # let it unwind: no task left behind
            raise
        if self._runner.done():  # failed while starting
            self._state = "closed"
            await self._runner

    async def aclose(self) -> None:
        """Stop reading, let running handlers finish within ``close_timeout``, nack what had to
        be cancelled or never started, flush the acks, and stop every task; idempotent.

        If cancelled, the remaining tasks are cancelled too and unsettled messages stay
        pending (the queue redelivers them once this consumer is gone).
        """
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        runner = self._runner
        self._state = "closing"
        self._stop.set()
        if runner is None:
            return
        try:
            await asyncio.shield(runner)
        except asyncio.CancelledError:
            runner.cancel()
            raise
        finally:
            self._state = "closed"

    async def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for index in range(self._max_concurrency):
                    self._workers.append(
                        tg.create_task(
                            self._worker(),
                            name=f"EventDispatcher.worker-{index}",
                            context=contextvars.Context(),
                        )
                    )
                acker = tg.create_task(
                    self._acker(), name="EventDispatcher.acker", context=contextvars.Context()
                )
                self._state = "running"
                for delivery, routes in self._routes.items():
                    if routes:
                        self._ensure_pump(delivery)
                ready.set_result(None)
                await self._stop.wait()
                await self._drain()
                self._acker_stop = True
                self._ack_wakeup.set()
                await acker
        finally:
            self._tg = None
            if not ready.done():
                ready.set_result(None)
            await self._final_settle()

    def _ensure_pump(self, delivery: DeliveryPattern) -> None:
        if delivery in self._pumps or self._tg is None:
            return
        pump = self._anycast_pump if delivery is DeliveryPattern.ANYCAST else self._broadcast_pump
        self._pumps[delivery] = self._tg.create_task(
            pump(), name=f"EventDispatcher.{delivery}-pump", context=contextvars.Context()
        )

    async def _drain(self) -> None:
        broadcasts = self._pumps.get(DeliveryPattern.BROADCAST)
        if broadcasts is not None and self._durable_job is not None:
            # The pump stops by itself once the durable broadcast being handled is done, so
            # the subscriber's position is stored right after it (not after one never run).
            done, _ = await asyncio.wait([broadcasts], timeout=self._close_timeout)
            if not done:
                log.warning(
                    "EventDispatcher: a durable broadcast handler still runs after %.1fs; "
                    "cancelling it (the broadcast counts as seen)",
                    self._close_timeout,
                )
        for pump in self._pumps.values():
            pump.cancel()
        for pump in self._pumps.values():
            try:
                await pump
            except asyncio.CancelledError:
                if not pump.cancelled():  # we were cancelled, not the pump
                    raise
        for key in list(self._coalesce):
            self._flush_coalesced(key)
        try:
            async with asyncio.timeout(self._close_timeout):
                await self._jobs.join()
        except TimeoutError:
            log.warning(
                "EventDispatcher: %d job(s) still running after %.1fs, cancelling them",
                self._busy + self._jobs.qsize(),
                self._close_timeout,
            )
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            try:
                await worker
            except asyncio.CancelledError:
                if not worker.cancelled():
                    raise

    async def _final_settle(self) -> None:
        # Cancel leftovers: coalescing timers, jobs never started, messages whose handlers
        # were cancelled. Nack them so the queue hands them out again instead of keeping them
        # pending at this live consumer. Short cleanup, shielded from a cancelled close.
        for buffer in self._coalesce.values():
            if buffer.timer is not None:
                buffer.timer.cancel()
        self._coalesce.clear()
        while not self._jobs.empty():
            self._jobs.get_nowait()
            self._jobs.task_done()
        leftovers = list(self._active)
        self._active.clear()
        await asyncio.shield(self._settle_leftovers(leftovers))

    async def _settle_leftovers(self, leftovers: list[str]) -> None:
        if self._ack_buffer:
            await self._flush_acks()
        for msg_id in leftovers:
            try:
                await self._queue.nack(msg_id, "event dispatcher closed before handling it")
                self._nacked += 1
            except Exception as exc:
                self._report("settle", exc, msg_id=msg_id)

    # -- pumps ------------------------------------------------------------------------

    async def _anycast_pump(self) -> None:
        routes = self._routes[DeliveryPattern.ANYCAST]
        put = self._jobs.put_nowait
        active = self._active
        attempt = 0
        while True:
            try:
                async with aclosing(self._queue.consume()) as messages:
                    async for msg in messages:
                        attempt = 0
                        self._received += 1
                        name = msg.fields.get("name")
                        route = routes.get(name) if name else None
                        if route is None:
                            if not name:
                                active[msg.msg_id] = msg
                                put((msg, None))
                                continue
                            self._unhandled += 1
                            self._ack_later(msg.msg_id)
                            continue
                        active[msg.msg_id] = msg
                        put((msg, route))
                return  # the queue closed
            except (QueueClosed, QueueConfigError) as exc:
                self._report("pump", exc)
                return
            except Exception as exc:
                self._report("pump", exc)
                await asyncio.sleep(_PUMP_BACKOFF[min(attempt, len(_PUMP_BACKOFF) - 1)])
                attempt += 1

    async def _broadcast_pump(self) -> None:
        routes = self._routes[DeliveryPattern.BROADCAST]
        put = self._jobs.put_nowait
        limit = self._max_concurrency * 8
        attempt = 0
        while True:
            try:
                async with aclosing(self._queue.subscribe()) as messages:
                    async for msg in messages:
                        attempt = 0
                        self._broadcasts += 1
                        route = routes.get(msg.fields.get("name", ""))
                        if route is None:
                            continue
                        if msg.msg_id is not None:
                            # Durable: asking for the next one stores our position past this
                            # one, so wait until every handler of this one has finished.
                            await self._handle_durable(msg, route)
                            if self._stop.is_set():
                                return  # closing the iterator stores the position
                            continue
                        put((msg, route))
                        if self._jobs.qsize() >= limit:  # broadcasts have no queue bound
                            self._room.clear()
                            self._room_wanted = True
                            await self._room.wait()
                return
            except (QueueClosed, QueueConfigError) as exc:
                self._report("pump", exc)
                return
            except Exception as exc:
                self._report("pump", exc)
                await asyncio.sleep(_PUMP_BACKOFF[min(attempt, len(_PUMP_BACKOFF) - 1)])
                attempt += 1

    async def _handle_durable(self, msg: BroadcastMessage, route: _Route) -> None:
        job = _DurableBroadcastJob(msg, route, asyncio.get_running_loop().create_future())
        self._durable_job = job
        self._jobs.put_nowait(job)
        try:
            await job.done
        finally:
            self._durable_job = None

    # -- workers ----------------------------------------------------------------------

    async def _worker(self) -> None:
        jobs = self._jobs
        items = jobs.items
        get = jobs.get
        done = jobs.task_done
        while True:
            job = items.popleft() if items else await get()
            self._busy += 1
            if self._room_wanted and self._jobs.qsize() <= self._room_low:
                self._room_wanted = False
                self._room.set()
            try:
                if type(job) is _CoalescedJob:
                    await self._run_coalesced(job)
                elif type(job) is _DurableBroadcastJob:
                    try:
                        await self._handle_broadcast(job.msg, job.route)
                    finally:
                        if not job.done.done():
                            job.done.set_result(None)
                elif type(job[0]) is AnycastMessage:
                    await self._handle_anycast(job[0], job[1])
                else:
                    await self._handle_broadcast(job[0], job[1])
            except Exception as exc:  # a bug here must not kill the worker
                log.exception("EventDispatcher: unexpected error in a worker")
                self._report("pump", exc)
            finally:
                self._busy -= 1
                done()

    async def _handle_anycast(self, msg: AnycastMessage, route: _Route | None) -> None:
        msg_id = msg.msg_id
        fields = msg.fields
        name = fields.get("name", "")
        if route is None:
            await self._dead_letter(msg, name, EventDecodeError("entry has no 'name' field"))
            return
        single = route.single
        if single is not None and msg.delivery_count == 1:
            # The common case: one handler, first delivery. No record is needed: the ack is it.
            codec = self._codec
            try:
                metadata = fields.get("metadata")
                context = codec.known_metadata(metadata) or codec.decode_metadata(metadata)
                decoded = single.event_cls.model_validate_json(fields["payload"])
            except (EventDecodeError, ValidationError, KeyError):
                await self._dead_letter_undecodable(msg, name, single.event_cls)
                return
            error = await self._call(
                single, fields.get("source", ""), decoded, context, name, msg_id, 1
            )
            if error is None:
                if self._acking or self._ack_buffer:
                    self._ack_later(msg_id)
                else:
                    # Nothing else to ack: do it here rather than wake the acker (one hop less).
                    self._active.pop(msg_id, None)
                    self._ack_buffer.append(msg_id)
                    await self._flush_acks()
            else:
                await self._nack(msg_id, name, f"{single.id}: {type(error).__name__}: {error}")
            return
        handlers = route.handlers
        try:
            context = self._codec.decode_metadata(msg.fields.get("metadata"))
            payload = msg.fields.get("payload")
            if payload is None:
                raise EventDecodeError(f"entry of event {name!r} has no 'payload' field")
            event: AbstractEvent | None = None
            events: dict[type[AbstractEvent], AbstractEvent] | None = None
            if len(route.classes) == 1:
                event = self._codec.decode_event(route.classes[0], payload)
            else:
                events = {cls: self._codec.decode_event(cls, payload) for cls in route.classes}
        except EventDecodeError as exc:
            await self._dead_letter(msg, name, exc)
            return
        source = msg.fields.get("source", "")
        if msg.delivery_count > 1:
            self._notify(self._on_redelivered, name)
            try:
                done = await self._queue.handled(msg_id)
            except Exception as exc:
                # Without the records we could re-run a handler that succeeded: hand it back.
                self._report("settle", exc, event_name=name, msg_id=msg_id)
                await self._nack(msg_id, name, f"could not read handler records: {exc}")
                return
            if done:
                handlers = [h for h in handlers if h.id not in done]
        direct = [h for h in handlers if h.coalescing is None]
        coalesced = len(handlers) - len(direct)
        settlement = _Settlement(msg, name, coalesced) if coalesced else None
        errors: list[str] = []
        last = len(direct) - 1
        for index, handler in enumerate(direct):
            ev = events[handler.event_cls] if events is not None else event
            assert ev is not None
            error = await self._call(handler, source, ev, context, name, msg_id, msg.delivery_count)
            if error is not None:
                errors.append(f"{handler.id}: {type(error).__name__}: {error}")
            elif index < last or errors or coalesced:
                try:
                    await self._queue.mark_handled(msg_id, handler.id)
                except Exception as exc:
                    self._report("settle", exc, event_name=name, msg_id=msg_id)
                    errors.append(f"{handler.id}: success not recorded: {exc}")
        if settlement is not None:
            settlement.errors.extend(errors)
            for handler in handlers:
                if handler.coalescing is not None:
                    ev = events[handler.event_cls] if events is not None else event
                    assert ev is not None
                    self._add_coalesced(handler, _CoalesceItem(settlement, source, ev, context))
            return
        if errors:
            await self._nack(msg_id, name, "; ".join(errors))
        else:
            self._ack_later(msg_id)

    async def _handle_broadcast(self, msg: BroadcastMessage, route: _Route) -> None:
        name = msg.fields.get("name", "")
        try:
            context = self._codec.decode_metadata(msg.fields.get("metadata"))
            payload = msg.fields.get("payload")
            if payload is None:
                raise EventDecodeError(f"broadcast of event {name!r} has no 'payload' field")
            events = {cls: self._codec.decode_event(cls, payload) for cls in route.classes}
        except EventDecodeError as exc:
            self._report("decode", exc, event_name=name, msg_id=msg.msg_id)
            return
        source = msg.fields.get("source", "")
        for handler in route.handlers:
            event = events[handler.event_cls]
            if handler.coalescing is not None:
                self._add_coalesced(handler, _CoalesceItem(None, source, event, context))
            else:
                await self._call(handler, source, event, context, name, msg.msg_id, 0)

    async def _call(
        self,
        handler: EventHandler[Any, Any],
        source: str,
        event: AbstractEvent,
        context: ContextBundle,
        name: str,
        msg_id: str | None,
        delivery_count: int,
    ) -> BaseException | None:
        started = time.perf_counter() if self._observers else 0.0
        try:
            if handler.is_async:
                if context is EMPTY_CONTEXT and _context_is_empty():
                    await cast(Awaitable[None], handler.callback(handler.context, source, event))
                else:
                    with context.applied():
                        await cast(
                            Awaitable[None], handler.callback(handler.context, source, event)
                        )
            elif context is EMPTY_CONTEXT and _context_is_empty():
                await self._invoke_sync(handler, source, event)
            else:
                with context.applied():
                    await self._invoke_sync(handler, source, event)
        except Exception as exc:
            duration = time.perf_counter() - started if self._observers else 0.0
            self._failed += 1
            counts = self._per_event.get(name)
            if counts is None:
                counts = self._per_event[name] = [0, 0]
            counts[1] += 1
            for observer in self._observers:
                try:
                    observer.observe_event_failure(
                        event_type=name, duration=duration, exception=exc
                    )
                except Exception as obs_exc:
                    self._report("observer", obs_exc, event_name=name)
            self._report(
                "handler",
                exc,
                event_name=name,
                handler_id=handler.id,
                msg_id=msg_id,
                delivery_count=delivery_count,
            )
            return exc
        self._handled += 1
        counts = self._per_event.get(name)
        if counts is None:
            counts = self._per_event[name] = [0, 0]
        counts[0] += 1
        if self._observers:
            duration = time.perf_counter() - started
            for observer in self._observers:
                try:
                    observer.observe_event_success(event_type=name, duration=duration)
                except Exception as obs_exc:
                    self._report("observer", obs_exc, event_name=name)
        return None

    @staticmethod
    async def _invoke_sync(
        handler: EventHandler[Any, Any], source: str, event: AbstractEvent
    ) -> None:
        if handler.run_in_thread:
            result = await asyncio.to_thread(handler.callback, handler.context, source, event)
            if inspect.isawaitable(result):
                await result
        else:
            result = handler.callback(handler.context, source, event)
            if result is not None and inspect.isawaitable(result):
                await result

    # -- coalescing -------------------------------------------------------------------

    def _add_coalesced(self, handler: EventHandler[Any, Any], item: _CoalesceItem) -> None:
        options = handler.coalescing
        assert options is not None
        key = id(handler)
        buffer = self._coalesce.get(key)
        if buffer is None:
            buffer = self._coalesce[key] = _CoalesceBuffer(handler)
        buffer.items.append(item)
        if self._state != "running" or len(buffer.items) >= options.max_batch_size:
            self._flush_coalesced(key)
        elif buffer.timer is None:
            loop = asyncio.get_running_loop()
            buffer.timer = loop.call_later(options.max_wait, self._flush_coalesced, key)

    def _flush_coalesced(self, key: int) -> None:
        buffer = self._coalesce.pop(key, None)
        if buffer is None:
            return
        if buffer.timer is not None:
            buffer.timer.cancel()
        if buffer.items:
            self._jobs.put_nowait(_CoalescedJob(buffer.handler, buffer.items))

    async def _run_coalesced(self, job: _CoalescedJob) -> None:
        latest = job.items[-1]
        name = latest.event.event_name
        self._coalesced += len(job.items) - 1
        error = await self._call(
            job.handler,
            latest.source,
            latest.event,
            latest.context,
            name,
            latest.settlement.msg_id if latest.settlement else None,
            latest.settlement.delivery_count if latest.settlement else 0,
        )
        for item in job.items:
            settlement = item.settlement
            if settlement is None:
                continue
            settlement.outstanding -= 1
            if error is not None:
                settlement.errors.append(f"{job.handler.id}: {type(error).__name__}: {error}")
            elif settlement.outstanding or settlement.errors:
                try:
                    await self._queue.mark_handled(settlement.msg_id, job.handler.id)
                except Exception as exc:
                    self._report("settle", exc, event_name=name, msg_id=settlement.msg_id)
                    settlement.errors.append(f"{job.handler.id}: success not recorded: {exc}")
            if settlement.outstanding == 0:
                if settlement.errors:
                    await self._nack(settlement.msg_id, name, "; ".join(settlement.errors))
                else:
                    self._ack_later(settlement.msg_id)

    # -- settling ---------------------------------------------------------------------

    def _ack_later(self, msg_id: str) -> None:
        self._active.pop(msg_id, None)
        self._ack_buffer.append(msg_id)
        self._ack_wakeup.set()

    async def _acker(self) -> None:
        # Not cancelled on close (an ack cut in half would leave handled messages pending):
        # it flushes what is buffered and returns once asked to stop.
        while True:
            await self._ack_wakeup.wait()
            self._ack_wakeup.clear()
            while self._ack_buffer:
                await self._flush_acks()
            if self._acker_stop:
                return

    async def _flush_acks(self) -> None:
        ids, self._ack_buffer = self._ack_buffer, []
        self._acking = True
        try:
            await self._queue.ack(*ids)
        except Exception as exc:
            # They stay pending and come back; handlers recorded with mark_handled are skipped.
            self._report("settle", exc)
            return
        finally:
            self._acking = False
            if self._ack_buffer:
                self._ack_wakeup.set()
        self._acked += len(ids)

    async def _nack(self, msg_id: str, name: str, error: str) -> None:
        self._active.pop(msg_id, None)
        try:
            await self._queue.nack(msg_id, error)
        except Exception as exc:
            self._report("settle", exc, event_name=name, msg_id=msg_id)
            return
        self._nacked += 1

    async def _dead_letter_undecodable(
        self, msg: AnycastMessage, name: str, event_cls: type[AbstractEvent]
    ) -> None:
        # The fast path only knows that decoding failed: decode again for the full reason.
        try:
            self._codec.decode_metadata(msg.fields.get("metadata"))
            payload = msg.fields.get("payload")
            if payload is None:
                raise EventDecodeError(f"entry of event {name!r} has no 'payload' field")
            self._codec.decode_event(event_cls, payload)
        except EventDecodeError as exc:
            await self._dead_letter(msg, name, exc)
            return
        raise AssertionError("a payload failed to decode once and then decoded")

    async def _dead_letter(self, msg: AnycastMessage, name: str, exc: Exception) -> None:
        self._active.pop(msg.msg_id, None)
        self._report("decode", exc, event_name=name or None, msg_id=msg.msg_id)
        try:
            await self._queue.dead_letter(msg.msg_id, f"undecodable: {exc}")
        except Exception as settle_exc:
            self._report("settle", settle_exc, event_name=name or None, msg_id=msg.msg_id)
            return
        self._dead_lettered += 1
        self._notify(self._on_dead_lettered, name)

    def _notify(self, hooks: tuple[Callable[..., None], ...], name: str) -> None:
        for hook in hooks:
            try:
                hook(event_type=name)
            except Exception as exc:
                self._report("observer", exc, event_name=name)

    # -- reporting --------------------------------------------------------------------

    def _report(
        self,
        stage: FailureStage,
        exc: BaseException,
        *,
        event_name: str | None = None,
        handler_id: HandlerId | None = None,
        msg_id: str | None = None,
        delivery_count: int = 0,
    ) -> None:
        self._failures += 1
        if self._on_failure is None:
            if stage != "handler":
                log.warning("EventDispatcher %s failure: %r", stage, exc, exc_info=exc)
            return
        try:
            self._on_failure(
                DispatchFailure(stage, exc, event_name, handler_id, msg_id, delivery_count)
            )
        except Exception:
            log.exception("EventDispatcher: the on_failure callback raised")

    def statistics(self) -> DispatcherStatistics:
        """A snapshot of the dispatcher's state and counters."""
        return DispatcherStatistics(
            running=self._state == "running",
            in_flight=self._busy,
            queued=self._jobs.qsize(),
            max_concurrency=self._max_concurrency,
            received=self._received,
            broadcasts_received=self._broadcasts,
            acked=self._acked,
            nacked=self._nacked,
            dead_lettered=self._dead_lettered,
            unhandled=self._unhandled,
            coalesced=self._coalesced,
            handled=self._handled,
            failed=self._failed,
            failures=self._failures,
            per_event=MappingProxyType(
                {name: EventCounts(c[0], c[1]) for name, c in self._per_event.items()}
            ),
        )


def _context_is_empty() -> bool:
    return (
        current_request_id() is None
        and current_user() is None
        and current_triggered_user() is None
        and current_traceparent() is None
        and current_client_ip() is None
    )


def _default_id(callback: Callable[..., Any]) -> str:
    target = getattr(callback, "__func__", callback)
    qualname = getattr(target, "__qualname__", None) or type(callback).__qualname__
    module = getattr(target, "__module__", None) or type(callback).__module__
    return f"{module}.{qualname}"
