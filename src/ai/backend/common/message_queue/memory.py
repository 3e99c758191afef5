"""In-process backend of message_queue: a :class:`MemoryBroker` plays the server, each
:class:`MemoryMessageQueue` is one component's client of it (stdlib asyncio only).

It implements the same algorithm as the Redis backend (entry ids, consumer groups with a
pending list, heartbeats, reclaim, retry delay, dead letters, per-group replay streams,
durable broadcast cursors), so several clients sharing one broker behave as several processes
sharing one Redis. Time (heartbeat expiry, cache TTL, retry delay) comes from an injectable
clock: pass a :class:`ManualClock` and move it with :meth:`ManualClock.advance`.

Guarantees:
- the whole conformance suite of the interface [tests/message_queue/test_queue_conformance.py];
- liveness follows heartbeats on the broker's clock, as on Redis: a client with a group beats
  on every move of a :class:`ManualClock` (synchronously, so however far the clock jumps a
  live client keeps its work) or, on another clock, every ``heartbeat_ttl / 3`` seconds from
  a task it owns; it counts as dead ``heartbeat_ttl`` after its last beat
  [tests/message_queue/test_queue_conformance.py::test_live_slow_consumer_is_not_stolen]
  [tests/message_queue/test_memory.py::test_liveness_follows_the_heartbeat_task_on_a_real_clock];
- a client stopped with :meth:`MemoryMessageQueue.abort` (a simulated crash) stops beating and
  keeps its pending messages until its heartbeat expires on the clock
  [tests/message_queue/test_queue_conformance.py::test_dead_consumer_is_reclaimed];
- a cached broadcast expires after ``BROADCAST_CACHE_TTL`` seconds of the clock
  [tests/message_queue/test_memory.py::test_cached_broadcast_expires_on_the_clock], and the
  other records Redis keeps with a TTL expire like them on the clock: per-handler progress and
  error history after ``handled_ttl``
  [tests/message_queue/test_queue_conformance.py::test_handled_records_expire_after_handled_ttl],
  a durable subscriber's position after ``durable_cursor_ttl``
  [tests/message_queue/test_queue_conformance.py::test_durable_cursor_expires_after_its_ttl];
- trimming follows the Redis policy: never an entry pending or undelivered in a group
  [tests/message_queue/test_memory.py::test_trim_keeps_pending_and_undelivered].

Limits: state lives in one process and is lost with it; the broker is not thread-safe (one
event loop) [tests/message_queue/test_memory.py::test_abort_then_aclose_is_a_no_op].
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ._common import (
    check_outgoing,
    checked_id,
    checked_msg_id,
    entry_id,
    format_id,
    malformed_reason,
    parse_id,
    replay_stream,
    split_msg_id,
)
from .abc import AbstractMessageQueue
from .exceptions import MessageQueueError, QueueClosed, QueueConfigError, UnknownMessage
from .types import (
    ANYCAST_STREAM,
    BROADCAST_CACHE_TTL,
    AnycastMessage,
    BroadcastMessage,
    BroadcastMode,
    DeadLetter,
    QueueConfig,
    QueueStatistics,
)

__all__ = ("Clock", "ManualClock", "MemoryBroker", "MemoryMessageQueue", "SystemClock")

T = TypeVar("T")
K = TypeVar("K")
EntryId = tuple[int, int]


class Clock(Protocol):
    """A source of wall-clock seconds."""

    def time(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    """The real clock (``time.time``)."""

    def time(self) -> float:
        """Seconds since the epoch."""
        return time.time()


class ManualClock:
    """A clock that moves only when told to; brokers using it wake their waiters on a move."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._listeners: list[Callable[[], None]] = []

    def time(self) -> float:
        """The current (fake) time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake everything waiting on it."""
        if seconds < 0:
            raise ValueError(f"ManualClock.advance: seconds must be >= 0, got {seconds}")
        self._now += seconds
        for listener in list(self._listeners):
            listener()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every :meth:`advance`."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener`` (no-op if it is not registered)."""
        if listener in self._listeners:
            self._listeners.remove(listener)


@dataclass
class _Pending:
    consumer: str
    count: int
    delivered_at: float


@dataclass
class _Group:
    last_delivered: EntryId
    pel: dict[EntryId, _Pending] = field(default_factory=dict)


class _Stream(Generic[T]):
    """An append-only log with ``<ms>-<seq>`` ids, like a Redis stream."""

    def __init__(self) -> None:
        self.ids: list[EntryId] = []
        self.entries: dict[EntryId, T] = {}
        self.last: EntryId = (0, 0)
        self.groups: dict[str, _Group] = {}

    def add(self, value: T, now: float) -> EntryId:
        ms = int(now * 1000)
        new = (ms, 0) if ms > self.last[0] else (self.last[0], self.last[1] + 1)
        self.last = new
        self.ids.append(new)
        self.entries[new] = value
        return new

    def after(self, start: EntryId, count: int) -> list[EntryId]:
        index = bisect.bisect_right(self.ids, start)
        return self.ids[index : index + count]

    def delete(self, entry: EntryId) -> bool:
        if self.entries.pop(entry, None) is None:
            return False
        index = bisect.bisect_left(self.ids, entry)
        del self.ids[index]
        return True

    def trim_below(self, bound: EntryId) -> None:
        index = bisect.bisect_left(self.ids, bound)
        for entry in self.ids[:index]:
            del self.entries[entry]
        del self.ids[:index]


@dataclass
class _ConsumerRecord:
    beat: float
    """When the consumer last beat (clock time); it is dead ``ttl`` later."""
    ttl: float


class MemoryBroker:
    """The shared in-memory "server": streams, groups, heartbeats, pub/sub, cache, cursors."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._streams: dict[str, _Stream[Mapping[str, str]]] = {}
        self._dead: _Stream[DeadLetter] = _Stream()
        self._durable: _Stream[Mapping[str, str]] = _Stream()
        self._consumers: dict[tuple[str, str], _ConsumerRecord] = {}
        # records that expire like Redis keys with a TTL: (value, expiry on the clock)
        self._handled: dict[tuple[str, str], tuple[set[str], float]] = {}
        self._errors: dict[tuple[str, str], tuple[list[str], float]] = {}
        self._cache: dict[str, tuple[Mapping[str, str], float]] = {}
        self._cursors: dict[str, tuple[EntryId, float]] = {}
        self._subscribers: set[asyncio.Queue[Mapping[str, str] | None]] = set()
        self._changed = asyncio.Event()
        if isinstance(clock, ManualClock):
            clock.add_listener(self._notify)

    # -- the "server" side, used by MemoryMessageQueue -----------------------------

    def _now(self) -> float:
        return self.clock.time()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, max_wait: float | None) -> None:
        event = self._changed
        try:
            async with asyncio.timeout(max_wait):
                await event.wait()
        except TimeoutError:
            pass

    def _live(self, table: dict[K, tuple[T, float]], key: K) -> T | None:
        """The value stored under ``key`` unless it expired (then it is dropped)."""
        item = table.get(key)
        if item is None:
            return None
        value, expires = item
        if self._now() >= expires:
            del table[key]
            return None
        return value

    def _stream(self, key: str) -> _Stream[Mapping[str, str]]:
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream()
        return stream

    def _is_dead(self, group: str, consumer: str) -> bool:
        record = self._consumers.get((group, consumer))
        if record is None:  # left cleanly, or never had a heartbeat (an upstream consumer)
            return True
        return self._now() >= record.beat + record.ttl

    def stream_length(self, key: str = ANYCAST_STREAM) -> int:
        """Entries currently in a stream (for tests and diagnostics)."""
        stream = self._streams.get(key)
        return len(stream.ids) if stream else 0

    def pending_count(self, group: str) -> int:
        """Entries pending (delivered, not acked) in ``group`` over its streams."""
        total = 0
        for key in (ANYCAST_STREAM, replay_stream(group)):
            stream = self._streams.get(key)
            if stream and group in stream.groups:
                total += len(stream.groups[group].pel)
        return total


class MemoryMessageQueue(AbstractMessageQueue):
    """A client of a :class:`MemoryBroker`; see :class:`~.abc.AbstractMessageQueue`."""

    def __init__(self, broker: MemoryBroker, config: QueueConfig | None = None) -> None:
        self._broker = broker
        self._config = config if config is not None else QueueConfig()
        self._consumer = self._config.consumer_id or f"{self._config.source}-{uuid.uuid4().hex}"
        self._opened = False
        self._closed = False
        self._consuming = False
        self._durable_subscribing = False
        self._record: _ConsumerRecord | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._in_flight: dict[str, int] = {}
        self._retries: list[tuple[float, str]] = []
        self._waiting: set[str] = set()
        """Messages nacked (or read and not handed out) waiting for their redelivery; the
        retry heap may still hold stale entries for ids no longer here."""
        self._settled = asyncio.Event()
        self._wake_subscribers: set[asyncio.Queue[Mapping[str, str] | None]] = set()
        self._delivered = 0
        self._acked = 0
        self._dead_lettered = 0
        self._reclaimed = 0
        self._subscriptions = 0

    @property
    def consumer_id(self) -> str:
        """This client's consumer name inside its group."""
        return self._consumer

    # -- lifecycle ----------------------------------------------------------------

    async def open(self) -> None:
        """Register this consumer (and create its group) with the broker; idempotent."""
        if self._closed:
            raise QueueClosed("MemoryMessageQueue: a closed client cannot be reopened")
        if self._opened:
            return
        group = self._config.group
        if group is not None:
            events = self._broker._stream(ANYCAST_STREAM)
            events.groups.setdefault(group, _Group(last_delivered=events.last))
            replay = self._broker._stream(replay_stream(group))
            replay.groups.setdefault(group, _Group(last_delivered=(0, 0)))
            self._record = _ConsumerRecord(self._broker._now(), self._config.heartbeat_ttl)
            self._broker._consumers[(group, self._consumer)] = self._record
            self._start_heartbeat()
        self._opened = True

    async def aclose(self) -> None:
        """Stop intake and leave; this consumer's pending messages are reclaimable at once."""
        if self._closed:
            return
        self._shutdown()
        await self._stop_heartbeat()
        key = (self._config.group or "", self._consumer)
        if self._record is not None and self._broker._consumers.get(key) is self._record:
            del self._broker._consumers[key]  # not a later life's record under the same name
        self._broker._notify()

    async def abort(self) -> None:
        """Stop as if the process died: no cleanup, so this consumer's pending messages stay
        with it until its heartbeat expires (``heartbeat_ttl`` on the broker's clock)."""
        if self._closed:
            return
        self._shutdown()
        await self._stop_heartbeat()
        self._broker._notify()

    # -- heartbeat: liveness follows it, on the broker's clock, as on Redis --------

    def _beat(self) -> None:
        if self._record is not None:
            self._record.beat = self._broker._now()

    def _start_heartbeat(self) -> None:
        """Beat on every move of a :class:`ManualClock` (synchronously, so a live client
        never looks dead however far the clock jumps), else every ``heartbeat_ttl / 3``
        seconds from a task this client owns."""
        clock = self._broker.clock
        if isinstance(clock, ManualClock):
            clock.add_listener(self._beat)
        else:
            self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="mq-heartbeat")

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.heartbeat_ttl / 3)
            self._beat()

    async def _stop_heartbeat(self) -> None:
        clock = self._broker.clock
        if isinstance(clock, ManualClock):
            clock.remove_listener(self._beat)
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are being cancelled ourselves

    def _shutdown(self) -> None:
        self._closed = True
        self._settled.set()
        for queue in self._wake_subscribers:
            queue.put_nowait(None)

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosed("MemoryMessageQueue is closed")
        if not self._opened:
            raise QueueClosed("MemoryMessageQueue is not open (use `async with`)")

    def _require_group(self) -> str:
        if self._config.group is None:
            raise QueueConfigError(
                "QueueConfig.group is None: consuming needs a consumer group",
                data={"field": "group"},
            )
        return self._config.group

    # -- anycast: produce ---------------------------------------------------------

    async def send(self, fields: Mapping[str, str]) -> str:
        """Append one anycast message; returns its id."""
        return (await self.send_batch([fields]))[0]

    async def send_batch(self, batch: Sequence[Mapping[str, str]]) -> list[str]:
        """Append several anycast messages in order; returns their ids."""
        self._check_open()
        for fields in batch:
            check_outgoing(fields, "send")
        stream = self._broker._stream(ANYCAST_STREAM)
        now = self._broker._now()
        ids = [format_id(stream.add(dict(fields), now)) for fields in batch]
        self._trim(stream)
        self._broker._notify()
        return ids

    def _trim(self, stream: _Stream[Mapping[str, str]]) -> None:
        # The Redis backend's policy: past ``maxlen`` every acked entry may go; entries older
        # than the age bound go too; never one that a group still needs.
        bound: EntryId | None = None
        if len(stream.ids) > self._config.anycast_trim_maxlen:
            bound = stream.last
        elif self._config.anycast_trim_max_age is not None:
            cutoff = self._broker._now() - self._config.anycast_trim_max_age
            bound = (int(cutoff * 1000), 0)
        if bound is None:
            return
        for group in stream.groups.values():
            bound = min(bound, group.last_delivered, *group.pel.keys())
        stream.trim_below(bound)

    # -- anycast: consume ---------------------------------------------------------

    def consume(self) -> AsyncGenerator[AnycastMessage, None]:
        """Yield this group's messages until the client closes (see the interface)."""
        group = self._require_group()
        self._check_open()
        if self._consuming:
            raise MessageQueueError("MemoryMessageQueue: consume() is already running")
        return self._consume(group)

    async def _consume(self, group: str) -> AsyncGenerator[AnycastMessage, None]:
        # Taken on the first step: an iterator closed before it ran executes no code at all.
        if self._consuming:
            raise MessageQueueError("MemoryMessageQueue: consume() is already running")
        self._consuming = True
        batch: list[AnycastMessage] = []
        try:
            while not self._closed:
                room = self._config.max_in_flight - len(self._in_flight)
                if room <= 0:
                    self._settled.clear()
                    await self._settled.wait()
                    continue
                batch = self._collect(group, min(room, self._config.batch_size))
                if not batch:
                    await self._broker._wait_change(self._wait_time())
                    continue
                while batch and not self._closed:  # nothing handed out once closing began
                    yield batch.pop(0)
        finally:
            self._consuming = False
            # Collected but never handed out: deliver them again on the next read.
            for message in batch:
                if self._in_flight.pop(message.msg_id, None) is not None:
                    self._waiting.add(message.msg_id)
                    heapq.heappush(self._retries, (self._broker._now(), message.msg_id))

    def _wait_time(self) -> float:
        timeout = self._config.block_seconds
        if self._retries and not isinstance(self._broker.clock, ManualClock):
            timeout = min(timeout, max(0.0, self._retries[0][0] - self._broker._now()))
        return timeout

    def _locate(self, group: str, msg_id: str) -> tuple[_Stream[Mapping[str, str]], EntryId]:
        replay, entry = split_msg_id(msg_id)
        key = replay_stream(group) if replay else ANYCAST_STREAM
        return self._broker._stream(key), parse_id(entry)

    def _collect(self, group: str, room: int) -> list[AnycastMessage]:
        broker = self._broker
        now = broker._now()
        out: list[AnycastMessage] = []

        def deliver(msg_id: str, stream: _Stream[Mapping[str, str]], entry: EntryId) -> None:
            pending = stream.groups[group].pel[entry]
            fields = stream.entries.get(entry)
            self._in_flight[msg_id] = pending.count
            self._delivered += 1
            if fields is None:
                self._move_to_dlq(group, msg_id, {}, "entry was deleted from the stream")
                return
            reason = malformed_reason(fields)
            if reason is not None:
                self._move_to_dlq(group, msg_id, fields, reason)
                return
            out.append(AnycastMessage(msg_id, dict(fields), pending.count))

        # 1. take over the pending entries of dead consumers (ids and order kept), and hand
        #    back our own that we do not track (a previous life under the same consumer id)
        waiting = self._waiting
        for replay in (False, True):
            stream = broker._stream(replay_stream(group) if replay else ANYCAST_STREAM)
            pel = stream.groups[group].pel
            for entry in sorted(pel):
                if len(out) >= room:
                    break
                pending = pel[entry]
                msg_id = entry_id(replay, format_id(entry))
                if pending.consumer == self._consumer:
                    if msg_id in self._in_flight or msg_id in waiting:
                        continue
                elif broker._is_dead(group, pending.consumer):
                    self._reclaimed += 1
                else:
                    continue
                pending.consumer, pending.delivered_at = self._consumer, now
                pending.count += 1
                if pending.count > self._config.max_deliveries:
                    self._in_flight[msg_id] = pending.count
                    fields = stream.entries.get(entry, {})
                    error = f"delivered {pending.count - 1} times, never settled (consumer died)"
                    self._move_to_dlq(group, msg_id, fields, error, attempts=pending.count - 1)
                    continue
                deliver(msg_id, stream, entry)
        # 2. nacked messages whose retry delay has passed (and orphans handed back)
        while self._retries and self._retries[0][0] <= now and len(out) < room:
            _, msg_id = heapq.heappop(self._retries)
            if msg_id not in waiting:
                continue  # settled meanwhile: a stale heap entry
            waiting.discard(msg_id)
            stream, entry = self._locate(group, msg_id)
            retried = stream.groups[group].pel.get(entry)
            if retried is None or retried.consumer != self._consumer:
                continue
            retried.count += 1
            retried.delivered_at = now
            deliver(msg_id, stream, entry)
        # 3. new entries, in stream order
        for replay in (False, True):
            stream = broker._stream(replay_stream(group) if replay else ANYCAST_STREAM)
            state = stream.groups[group]
            for entry in stream.after(state.last_delivered, room - len(out)):
                state.last_delivered = entry
                state.pel[entry] = _Pending(self._consumer, 1, now)
                deliver(entry_id(replay, format_id(entry)), stream, entry)
        return out

    # -- anycast: settle ----------------------------------------------------------

    def _settle(self, msg_id: str) -> int:
        count = self._in_flight.pop(msg_id)
        self._settled.set()
        return count

    async def ack(self, *msg_ids: str) -> None:
        """Settle messages as handled; unknown or already acked ids are ignored, a malformed
        one raises ``InvalidMessage`` before any is settled."""
        self._check_open()
        group = self._require_group()
        for msg_id in msg_ids:  # all checked before anything is settled
            checked_msg_id(msg_id, "ack")
        for msg_id in msg_ids:
            stream, entry = self._locate(group, msg_id)
            if stream.groups[group].pel.pop(entry, None) is not None:
                self._acked += 1
            if msg_id in self._in_flight:
                self._settle(msg_id)
            self._waiting.discard(msg_id)
            self._broker._handled.pop((group, msg_id), None)
            self._broker._errors.pop((group, msg_id), None)
        self._broker._notify()

    async def nack(self, msg_id: str, error: str) -> None:
        """Deliver again after ``retry_delay``, or dead-letter after ``max_deliveries``."""
        self._check_open()
        group = self._require_group()
        if msg_id not in self._in_flight:
            raise UnknownMessage(f"nack: message {msg_id!r} is not in flight at this consumer")
        count = self._in_flight[msg_id]
        if count >= self._config.max_deliveries:
            stream, entry = self._locate(group, msg_id)
            fields = stream.entries.get(entry, {})
            self._move_to_dlq(group, msg_id, fields, error)
            return
        self._record_error(group, msg_id, error)
        self._settle(msg_id)
        self._waiting.add(msg_id)
        heapq.heappush(self._retries, (self._broker._now() + self._config.retry_delay, msg_id))
        self._broker._notify()

    async def dead_letter(self, msg_id: str, error: str) -> None:
        """Move a message to the dead-letter stream at once."""
        self._check_open()
        group = self._require_group()
        if msg_id not in self._in_flight:
            raise UnknownMessage(
                f"dead_letter: message {msg_id!r} is not in flight at this consumer"
            )
        stream, entry = self._locate(group, msg_id)
        self._move_to_dlq(group, msg_id, stream.entries.get(entry, {}), error)

    def _record_error(self, group: str, msg_id: str, error: str) -> None:
        # like Redis: RPUSH, LTRIM to the limit, PEXPIRE handled_ttl
        broker = self._broker
        errors = broker._live(broker._errors, (group, msg_id)) or []
        errors.append(error)
        del errors[: -self._config.error_history_limit]
        broker._errors[(group, msg_id)] = (errors, broker._now() + self._config.handled_ttl)

    def _move_to_dlq(
        self,
        group: str,
        msg_id: str,
        fields: Mapping[str, str],
        error: str,
        *,
        attempts: int | None = None,
    ) -> None:
        broker = self._broker
        # the errors of earlier attempts (the last ``error_history_limit``), not this one
        earlier = broker._live(broker._errors, (group, msg_id)) or []
        history = earlier[-self._config.error_history_limit :]
        count = self._settle(msg_id) if attempts is None else self._in_flight.pop(msg_id)
        self._waiting.discard(msg_id)
        letter_attempts = attempts if attempts is not None else count
        stream, entry = self._locate(group, msg_id)
        stream.groups[group].pel.pop(entry, None)
        broker._handled.pop((group, msg_id), None)
        broker._errors.pop((group, msg_id), None)
        letter = DeadLetter("", msg_id, group, dict(fields), error, letter_attempts, tuple(history))
        dlq_entry = broker._dead.add(letter, broker._now())
        broker._dead.entries[dlq_entry] = DeadLetter(
            format_id(dlq_entry),
            msg_id,
            group,
            dict(fields),
            error,
            letter_attempts,
            tuple(history),
        )
        excess = len(broker._dead.ids) - self._config.dead_letter_maxlen
        if excess > 0:
            broker._dead.trim_below(broker._dead.ids[excess])
        self._dead_lettered += 1
        self._settled.set()
        broker._notify()

    async def mark_handled(self, msg_id: str, handler: str) -> None:
        """Record that ``handler`` succeeded on ``msg_id`` (dropped when it is acked)."""
        self._check_open()
        group = self._require_group()
        broker = self._broker
        handlers = broker._live(broker._handled, (group, msg_id)) or set()
        handlers.add(handler)  # like Redis: SADD, PEXPIRE handled_ttl
        broker._handled[(group, msg_id)] = (handlers, broker._now() + self._config.handled_ttl)

    async def handled(self, msg_id: str) -> frozenset[str]:
        """Handlers recorded by :meth:`mark_handled` for ``msg_id`` in this group."""
        self._check_open()
        group = self._require_group()
        return frozenset(self._broker._live(self._broker._handled, (group, msg_id)) or ())

    # -- broadcast ----------------------------------------------------------------

    async def broadcast(self, fields: Mapping[str, str], *, cache_id: str | None = None) -> None:
        """Send to every subscriber, append to the durable stream, cache if asked."""
        self._check_open()
        check_outgoing(fields, "broadcast")
        broker = self._broker
        message = dict(fields)
        for queue in broker._subscribers:
            queue.put_nowait(message)
        broker._durable.add(message, broker._now())
        excess = len(broker._durable.ids) - self._config.broadcast_retention
        if excess > 0:
            broker._durable.trim_below(broker._durable.ids[excess])
        if cache_id is not None:
            broker._cache[cache_id] = (message, broker._now() + BROADCAST_CACHE_TTL)
        broker._notify()

    async def fetch_cached_broadcast(self, cache_id: str) -> Mapping[str, str] | None:
        """The last broadcast cached under ``cache_id`` unless it expired."""
        self._check_open()
        cached = self._broker._cache.get(cache_id)
        if cached is None:
            return None
        message, expires = cached
        if self._broker._now() >= expires:
            del self._broker._cache[cache_id]
            return None
        return dict(message)

    def subscribe(self) -> AsyncGenerator[BroadcastMessage, None]:
        """Yield broadcasts in this client's ``broadcast_mode`` until it closes."""
        self._check_open()
        if self._config.broadcast_mode is BroadcastMode.DURABLE:
            subscriber = self._config.subscriber_id or self._config.consumer_id
            if subscriber is None:
                raise QueueConfigError(
                    "durable broadcast needs QueueConfig.subscriber_id (or consumer_id)",
                    data={"field": "subscriber_id"},
                )
            if self._durable_subscribing:
                raise MessageQueueError("a durable subscribe() is already running on this client")
            return self._subscribe_durable(subscriber)
        return self._subscribe_volatile()

    async def _subscribe_volatile(self) -> AsyncGenerator[BroadcastMessage, None]:
        # Registered on the first step, as Redis subscribes then: an iterator never run
        # holds nothing, and a broadcast sent before it started is not received.
        queue: asyncio.Queue[Mapping[str, str] | None] = asyncio.Queue()
        self._broker._subscribers.add(queue)
        self._wake_subscribers.add(queue)
        self._subscriptions += 1
        try:
            while not self._closed:
                message = await queue.get()
                if message is None:
                    break
                yield BroadcastMessage(dict(message))
        finally:
            self._broker._subscribers.discard(queue)
            self._wake_subscribers.discard(queue)
            self._subscriptions -= 1

    async def _subscribe_durable(self, subscriber: str) -> AsyncGenerator[BroadcastMessage, None]:
        if self._durable_subscribing:  # taken on the first step, like _consume's flag
            raise MessageQueueError("a durable subscribe() is already running on this client")
        self._durable_subscribing = True
        broker = self._broker
        ttl = self._config.durable_cursor_ttl
        stored = broker._live(broker._cursors, subscriber)
        cursor = stored if stored is not None else broker._durable.last
        broker._cursors[subscriber] = (cursor, broker._now() + ttl)
        self._subscriptions += 1
        try:
            while not self._closed:
                entries = broker._durable.after(cursor, self._config.batch_size)
                if not entries:
                    await broker._wait_change(self._config.block_seconds)
                    continue
                for entry in entries:
                    try:
                        yield BroadcastMessage(
                            dict(broker._durable.entries[entry]), format_id(entry)
                        )
                    finally:
                        # Seen once the subscriber asks for the next one or stops iterating.
                        cursor = entry
                        broker._cursors[subscriber] = (entry, broker._now() + ttl)
                    if self._closed:
                        break
        finally:
            self._subscriptions -= 1
            self._durable_subscribing = False

    # -- dead letters -------------------------------------------------------------

    async def list_dead_letters(
        self, *, limit: int = 100, after: str | None = None
    ) -> list[DeadLetter]:
        """Dead letters oldest first."""
        self._check_open()
        dead = self._broker._dead
        start = checked_id(after, "list_dead_letters") if after is not None else (0, 0)
        return [dead.entries[entry] for entry in dead.after(start, limit)]

    async def replay_dead_letters(self, dlq_ids: Sequence[str] | None = None) -> list[str]:
        """Hand dead letters again to the group that gave up on them (only that group)."""
        self._check_open()
        broker = self._broker
        dead = broker._dead
        entries = (
            list(dead.ids)
            if dlq_ids is None
            else [checked_id(i, "replay_dead_letters") for i in dlq_ids]
        )
        new_ids = []
        for entry in entries:
            letter = dead.entries.get(entry)
            if letter is None:
                continue
            stream = broker._stream(replay_stream(letter.group))
            stream.groups.setdefault(letter.group, _Group(last_delivered=(0, 0)))
            new_ids.append(
                entry_id(True, format_id(stream.add(dict(letter.fields), broker._now())))
            )
            dead.delete(entry)
        broker._notify()
        return new_ids

    async def purge_dead_letters(self, dlq_ids: Sequence[str] | None = None) -> int:
        """Delete dead letters; returns how many were deleted."""
        self._check_open()
        dead = self._broker._dead
        entries = (
            list(dead.ids)
            if dlq_ids is None
            else [checked_id(i, "purge_dead_letters") for i in dlq_ids]
        )
        return sum(1 for entry in entries if dead.delete(entry))

    # -- introspection ------------------------------------------------------------

    def statistics(self) -> QueueStatistics:
        """A snapshot of this client's counters."""
        return QueueStatistics(
            in_flight=len(self._in_flight),
            max_in_flight=self._config.max_in_flight,
            delivered=self._delivered,
            acked=self._acked,
            dead_lettered=self._dead_lettered,
            retry_waiting=len(self._waiting),
            reclaimed=self._reclaimed,
            subscriptions=self._subscriptions,
        )
