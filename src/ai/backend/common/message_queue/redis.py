"""Redis Streams backend of message_queue (upstream wire format, DESIGN.md sections 3 and 4).

Anycast: stream ``events``, one consumer group per component kind (``XGROUP CREATE .. $
MKSTREAM``), read with ``XREADGROUP`` in batches; acks issued by concurrent handlers are
coalesced into one ``XACK`` per turn; sends are pipelined. Each consumer refreshes a heartbeat
key (``events:hb:<group>:<consumer>``, TTL ``heartbeat_ttl``); the reader takes over the
pending entries of consumers whose heartbeat is gone (a server-side script claims only what
that consumer still owns, ids kept) and never those of a live consumer. A nack schedules an
``XCLAIM`` of the same entry to this consumer after ``retry_delay``; after ``max_deliveries``
the entry goes to ``events:dlq`` with its error history and is acked in the same transaction.
Replayed dead letters go to ``events:replay:<group>``, which only that group reads. Retention
(``trim_retained``) never removes an entry pending or undelivered in any group.

Broadcast: ``PUBLISH events_all <upstream JSON>`` (+ ``SET <cache_id> <json> EX 300``) and, in
the same round trip, ``XADD events:broadcast MAXLEN ~ broadcast_retention``. A durable
subscriber reads that stream from the id stored under ``events:broadcast:cursor:<id>``; the
cursor moves to a message once the subscriber asks for the next one or stops iterating, so
across disconnects and restarts it gets every message once, in order (the one it was handling
when its process died comes again).

Guarantees: the conformance suite [tests/message_queue/test_queue_conformance.py] and
[tests/message_queue/test_redis.py]: byte-identical upstream fields and JSON
[test_redis.py::test_wire_format_byte_for_byte]; nothing pending is trimmed
[test_redis.py::test_trim_never_drops_pending]; a SIGKILLed consumer process loses nothing
[test_redis.py::test_kill_9_consumer_loses_nothing]; malformed entries are dead-lettered
[test_redis.py::test_malformed_entries_dead_lettered]; the flow resumes after a Sentinel
failover and, with ``wait_replicas``, no acknowledged publish is lost
[test_redis.py::test_sentinel_failover_during_flow].

Limits:
- standalone and Sentinel targets only: its keys span several slots, so a Cluster target is
  refused [tests/clients/valkey/test_cluster.py::test_cluster_target];
- a consumer without a heartbeat key (an upstream component in the same group) counts as dead:
  its entries idle longer than ``heartbeat_ttl`` are taken over
  [test_redis.py::test_consumer_without_heartbeat_is_taken_over];
- a group that stops consuming holds back trimming until it resumes or is destroyed
  [test_redis.py::test_trim_never_drops_pending];
- a nacked message comes back after ``retry_delay`` plus at most ``block_seconds``, and a
  replayed dead letter within ``reclaim_interval``
  [test_queue_conformance.py::test_replay_reaches_only_that_group];
- upstream producers on the same Redis trim ``events`` to ~128 entries on every add; that
  cannot be prevented from here, so do not mix them with consumers that need the guarantee.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ai.backend.common.clients.valkey import (
    CallHook,
    StreamEntry,
    ValkeyAuthenticationError,
    ValkeyClient,
    ValkeyClosed,
    ValkeyConnectionError,
    ValkeyError,
    ValkeyMode,
    ValkeyStreamClient,
    ValkeyTarget,
    ValkeyTimeout,
)
from ai.backend.common.json import dump_json_str, load_json

from ._common import (
    check_outgoing,
    entry_id,
    malformed_reason,
    parse_id,
    replay_stream,
    split_msg_id,
)
from .abc import AbstractMessageQueue
from .exceptions import (
    InvalidMessage,
    MessageQueueError,
    QueueClosed,
    QueueConfigError,
    QueueTimeout,
    QueueUnavailable,
    UnknownMessage,
)
from .types import (
    ANYCAST_STREAM,
    BROADCAST_CACHE_TTL,
    BROADCAST_CHANNEL,
    BROADCAST_STREAM,
    DEAD_LETTER_STREAM,
    AnycastMessage,
    BroadcastMessage,
    BroadcastMode,
    DeadLetter,
    QueueConfig,
    QueueStatistics,
)

__all__ = ("RedisMessageQueue", "heartbeat_key")

log = logging.getLogger(__name__)

_CLOSED = b"closed"
_DLQ_FIELD_PREFIX = b"f:"
_CLOSE_GRACE = 5.0


def heartbeat_key(group: str, consumer: str) -> str:
    """Key of a consumer's heartbeat (``alive``, or ``closed`` after a clean close)."""
    return f"events:hb:{group}:{consumer}"


def _handled_key(group: str, msg_id: str) -> str:
    return f"events:handled:{group}:{msg_id}"


def _errors_key(group: str, msg_id: str) -> str:
    return f"events:errors:{group}:{msg_id}"


def _cursor_key(subscriber: str) -> str:
    return f"events:broadcast:cursor:{subscriber}"


def _queue_error(exc: ValkeyError, what: str) -> MessageQueueError:
    if isinstance(exc, ValkeyTimeout):
        return QueueTimeout(f"{what}: {exc}")
    if isinstance(exc, ValkeyClosed):
        return QueueClosed(f"{what}: {exc}")
    if isinstance(exc, (ValkeyConnectionError, ValkeyAuthenticationError)):
        return QueueUnavailable(f"{what}: {exc}")
    return MessageQueueError(f"{what}: {exc}")


async def _cancel_and_wait(task: asyncio.Task[Any]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we are being cancelled ourselves
    except Exception as exc:
        log.warning("background work ended with %r while aborting", exc)


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except ValkeyError as exc:
        raise _queue_error(exc, what) from exc


def _decode_fields(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


RawFields = dict[bytes, bytes] | list[bytes]
"""Entry fields as read: a dict, or the server's flat ``[name, value, ...]`` list."""


def _pairs(raw: RawFields) -> list[tuple[bytes, bytes]]:
    if isinstance(raw, dict):
        return list(raw.items())
    it = iter(raw)
    return list(zip(it, it, strict=True))


class _Streak:
    """Logs the first failure of a streak as a warning, the next ones at debug level, and
    the recovery, so an outage does not flood the log."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        level = logging.WARNING if self.failures == 1 else logging.DEBUG
        log.log(level, "%s failed (%d in a row, retrying): %s", self.what, self.failures, exc)

    def ok(self) -> None:
        if self.failures:
            log.info("%s works again after %d failures", self.what, self.failures)
            self.failures = 0


@dataclass(slots=True)
class _Delivery:
    key: str
    entry: str
    count: int
    raw: RawFields
    marks: set[str] = field(default_factory=set)
    dirty: bool = False
    """Records (handled marks, error history) may exist under this message's keys."""


class RedisMessageQueue(AbstractMessageQueue):
    """The Redis Streams message queue; see :class:`~.abc.AbstractMessageQueue`.

    Pass a :class:`ValkeyTarget` (the queue opens and closes its own client) or an open
    :class:`ValkeyClient` (shared; the queue never closes it).
    """

    def __init__(
        self,
        target: ValkeyTarget | ValkeyClient,
        config: QueueConfig | None = None,
        *,
        hook: CallHook | None = None,
    ) -> None:
        self._config = config if config is not None else QueueConfig()
        if isinstance(target, ValkeyClient):
            self._client, self._owns_client = target, False
        else:
            self._client, self._owns_client = ValkeyClient(target, hook=hook), True
        self._streams: ValkeyStreamClient | None = None
        self._group = self._config.group
        self._consumer = self._config.consumer_id or f"{self._config.source}-{uuid.uuid4().hex}"
        self._replay_key = replay_stream(self._group) if self._group is not None else ""
        self._opened = False
        self._closed = False
        self._consuming = False
        self._durable_subscribing = False
        self._stopping = asyncio.Event()
        self._settled = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._in_flight: dict[str, _Delivery] = {}
        self._waiting: dict[str, _Delivery] = {}
        self._retries: list[tuple[float, str]] = []
        self._acking: set[str] = set()
        self._ack_ops: list[tuple[str, str, str, bool]] = []
        self._mark_ops: list[tuple[str, str]] = []
        self._flush_future: asyncio.Future[None] | None = None
        self._flush_wanted = asyncio.Event()
        self._flushing = False
        self._next_maintenance = 0.0
        self._delivered = 0
        self._acked = 0
        self._dead_lettered = 0
        self._reclaimed = 0
        self._subscriptions = 0

    @property
    def consumer_id(self) -> str:
        """This client's consumer name inside its group."""
        return self._consumer

    @property
    def client(self) -> ValkeyClient:
        """The Valkey client this queue talks through."""
        return self._client

    # -- lifecycle ----------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create the group (``MKSTREAM``), start heartbeat, acker and trimmer.

        Raises ``QueueUnavailable`` when Redis cannot be reached; idempotent.
        """
        if self._closed:
            raise QueueClosed("RedisMessageQueue: a closed client cannot be reopened")
        if self._opened:
            return
        if self._client.target.mode is ValkeyMode.CLUSTER:
            raise QueueConfigError(
                "RedisMessageQueue needs a standalone or Sentinel target, not a cluster "
                f"({self._client.target.describe()}): its keys span several slots",
                data={"field": "target"},
            )
        with _translated("open"):
            if self._owns_client:
                await self._client.open()
            try:
                self._streams = ValkeyStreamClient(self._client)
                if self._group is not None:
                    await self._streams.create_group(ANYCAST_STREAM, self._group, "$")
                    await self._streams.create_group(self._replay_key, self._group, "0")
                    await self._beat()
            except BaseException:
                if self._owns_client:
                    await self._client.aclose()
                raise
        self._opened = True
        self._runner = asyncio.create_task(self._run_background(), name="mq-background")

    async def aclose(self) -> None:
        """Stop intake, flush pending acks, stop background work, leave the group cleanly.

        This consumer's unacked messages stay pending and are reclaimed by the others at once
        (the heartbeat is replaced by a ``closed`` mark).
        """
        if self._closed:
            return
        self._shutdown()
        failure: BaseException | None = None
        if self._runner is not None:
            try:
                async with asyncio.timeout(_CLOSE_GRACE):
                    await asyncio.shield(self._runner)
            except TimeoutError:
                await _cancel_and_wait(self._runner)
            except Exception as exc:  # a background loop crashed: report it to the owner
                failure = exc
        try:
            if self._group is not None and self._opened:
                await self._leave_group()
        except ValkeyError as exc:
            log.warning("leaving group %s as %s failed: %s", self._group, self._consumer, exc)
        finally:
            if self._owns_client:
                await self._client.aclose()
        if failure is not None:
            raise MessageQueueError(f"background work of the queue failed: {failure}") from failure

    async def abort(self) -> None:
        """Stop as a killed process would: no flush, no leave; the heartbeat expires."""
        if self._closed:
            return
        self._shutdown()
        if self._runner is not None:
            await _cancel_and_wait(self._runner)
        if self._owns_client:
            await self._client.aclose()

    def _shutdown(self) -> None:
        self._closed = True
        self._stopping.set()
        self._settled.set()
        self._flush_wanted.set()

    async def _leave_group(self) -> None:
        assert self._group is not None
        assert self._streams is not None
        group, streams = self._group, self._streams
        mine = 0
        for key in (ANYCAST_STREAM, self._replay_key):
            summary = await streams.pending_summary(key, group)
            mine += summary.consumers.get(self._consumer, 0)
        hb = heartbeat_key(group, self._consumer)
        if mine:
            ttl_ms = int(self._config.heartbeat_ttl * 1000)
            await self._client.execute("SET", hb, _CLOSED, "PX", ttl_ms)
        else:
            await self._client.pipeline(
                [
                    ["XGROUP", "DELCONSUMER", ANYCAST_STREAM, group, self._consumer],
                    ["XGROUP", "DELCONSUMER", self._replay_key, group, self._consumer],
                    ["DEL", hb],
                ],
                operation="leave",
                raise_on_error=False,
            )

    def _check_open(self) -> ValkeyStreamClient:
        if self._closed:
            raise QueueClosed("RedisMessageQueue is closed")
        if not self._opened or self._streams is None:
            raise QueueClosed("RedisMessageQueue is not open (use `async with`)")
        return self._streams

    def _require_group(self) -> str:
        if self._group is None:
            raise QueueConfigError(
                "QueueConfig.group is None: consuming needs a consumer group",
                data={"field": "group"},
            )
        return self._group

    # -- background work ----------------------------------------------------------

    async def _run_background(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._flush_loop(), name="mq-acker")
            if self._group is not None:
                tasks.create_task(self._heartbeat_loop(), name="mq-heartbeat")
                tasks.create_task(self._trim_loop(), name="mq-trimmer")

    async def _pause(self, seconds: float) -> bool:
        """Sleep unless stopping; True when the queue is stopping."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        return self._stopping.is_set()

    async def _beat(self) -> None:
        assert self._group is not None
        ttl_ms = max(1, int(self._config.heartbeat_ttl * 1000))
        await self._client.execute(
            "SET", heartbeat_key(self._group, self._consumer), b"alive", "PX", ttl_ms
        )

    async def _heartbeat_loop(self) -> None:
        streak = _Streak(f"heartbeat of {self._consumer}")
        while not await self._pause(self._config.heartbeat_ttl / 3):
            try:
                await self._beat()
            except ValkeyError as exc:
                streak.failed(exc)
            else:
                streak.ok()

    async def _trim_loop(self) -> None:
        assert self._group is not None
        assert self._streams is not None
        streak = _Streak(f"trimming for group {self._group}")
        while not await self._pause(self._config.reclaim_interval):
            try:
                cutoff = None
                if self._config.anycast_trim_max_age is not None:
                    seconds, micros = await self._client.execute("TIME")  # the server's clock
                    now_ms = int(seconds) * 1000 + int(micros) // 1000
                    cutoff = f"{now_ms - int(self._config.anycast_trim_max_age * 1000)}-0"
                for key in (ANYCAST_STREAM, self._replay_key):
                    await self._streams.trim_retained(
                        key, maxlen=self._config.anycast_trim_maxlen, cutoff_id=cutoff
                    )
            except ValkeyError as exc:
                streak.failed(exc)
            else:
                streak.ok()

    async def _flush_loop(self) -> None:
        """Writes the acks and marks queued while another write was in flight, all in one
        pipeline, one batch at a time."""
        while True:
            if self._flushing or (not self._ack_ops and not self._mark_ops):
                if self._stopping.is_set() and not self._flushing:
                    return
                await self._flush_wanted.wait()
                self._flush_wanted.clear()
                continue
            acks, marks = self._ack_ops, self._mark_ops
            self._ack_ops, self._mark_ops = [], []
            future, self._flush_future = self._flush_future, None
            self._flushing = True
            try:
                await self._flush(acks, marks)
            except ValkeyError as exc:
                if future is not None:
                    future.set_exception(_queue_error(exc, "ack"))
            else:
                if future is not None:
                    future.set_result(None)
            finally:
                self._flushing = False
                for _, _, msg_id, _ in acks:
                    self._acking.discard(msg_id)

    async def _write(
        self, acks: list[tuple[str, str, str, bool]], marks: list[tuple[str, str]]
    ) -> None:
        """Write acks/marks: at once when no other write is in flight (no task hop on the
        sequential path), else queued for the flusher, which coalesces them."""
        if self._flushing or self._ack_ops or self._mark_ops:
            self._ack_ops += acks
            self._mark_ops += marks
            await asyncio.shield(self._enqueue())
            return
        self._flushing = True
        try:
            with _translated("ack" if acks else "mark_handled"):
                await self._flush(acks, marks)
        finally:
            self._flushing = False
            for _, _, msg_id, _ in acks:
                self._acking.discard(msg_id)
            if self._ack_ops or self._mark_ops:
                self._flush_wanted.set()

    async def _flush(
        self, acks: list[tuple[str, str, str, bool]], marks: list[tuple[str, str]]
    ) -> None:
        assert self._group is not None
        group = self._group
        ttl_ms = int(self._config.handled_ttl * 1000)
        commands: list[list[Any]] = []
        for msg_id, handler in marks:
            key = _handled_key(group, msg_id)
            commands.append(["SADD", key, handler])
            commands.append(["PEXPIRE", key, ttl_ms])
        by_stream: dict[str, list[str]] = {}
        stale: list[str] = []
        for key, entry, msg_id, dirty in acks:
            by_stream.setdefault(key, []).append(entry)
            if dirty:
                stale += [_handled_key(group, msg_id), _errors_key(group, msg_id)]
        ack_positions = []
        for key, entries in by_stream.items():
            ack_positions.append(len(commands))
            commands.append(["XACK", key, group, *entries])
        if stale:
            commands.append(["DEL", *stale])
        results = await self._client.execute_many(commands, operation="xack")
        self._acked += sum(int(results[i]) for i in ack_positions)

    def _enqueue(self) -> asyncio.Future[None]:
        if self._flush_future is None:
            self._flush_future = asyncio.get_running_loop().create_future()
            # mark a failure as retrieved even if every waiter was cancelled
            self._flush_future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._flush_wanted.set()
        return self._flush_future

    # -- anycast: produce ---------------------------------------------------------

    async def send(self, fields: Mapping[str, str]) -> str:
        """``XADD events * <fields>`` (plus ``WAIT`` with ``wait_replicas``); returns the id."""
        return (await self.send_batch([fields]))[0]

    async def send_batch(self, batch: Sequence[Mapping[str, str]]) -> list[str]:
        """Pipelined ``XADD`` of every message in one round trip; ids in order."""
        self._check_open()
        for fields in batch:
            check_outgoing(fields, "send")
        if not batch:
            return []
        pack = ValkeyStreamClient.pack_add
        commands: list[Any] = [pack(ANYCAST_STREAM, fields) for fields in batch]
        results = await self._publish(commands, "send")
        return [r.decode() if isinstance(r, bytes) else str(r) for r in results]

    async def _publish(self, commands: list[list[Any]], what: str) -> list[Any]:
        wait = self._config.wait_replicas
        if wait > 0:
            commands = [*commands, ["WAIT", wait, max(1, int(self._config.wait_timeout * 1000))]]
        with _translated(what):
            results = await self._client.execute_many(commands, operation=what)
        if wait > 0:
            acked = int(results.pop())
            if acked < wait:
                raise QueueUnavailable(
                    f"{what}: written on the master but acknowledged by {acked} of {wait} "
                    f"replica(s) within {self._config.wait_timeout} s; it may be lost on failover",
                    data={"replicas": acked, "wait_replicas": wait},
                )
        return results

    # -- anycast: consume ---------------------------------------------------------

    def consume(self) -> AsyncGenerator[AnycastMessage, None]:
        """Yield this group's messages until the client closes (see the interface)."""
        group = self._require_group()
        self._check_open()
        if self._consuming:
            raise MessageQueueError("RedisMessageQueue: consume() is already running")
        self._consuming = True
        return self._consume(group)

    async def _consume(self, group: str) -> AsyncGenerator[AnycastMessage, None]:
        batch: deque[AnycastMessage] = deque()
        backoff = 0.05
        streak = _Streak(f"reading group {group}")
        try:
            while not self._closed:
                room = min(
                    self._config.max_in_flight - len(self._in_flight), self._config.batch_size
                )
                if room <= 0:
                    self._settled.clear()
                    await self._settled.wait()
                    continue
                try:
                    batch.extend(await self._next_batch(group, room))
                    backoff = 0.05
                    streak.ok()
                except ValkeyError as exc:
                    if self._closed:
                        break
                    streak.failed(exc)
                    await self._pause(backoff)
                    backoff = min(backoff * 2, 1.0)
                    continue
                while batch:
                    yield batch.popleft()
                    if self._closed:
                        break
        finally:
            self._consuming = False
            now = asyncio.get_running_loop().time()
            for message in batch:  # read but never handed out: deliver them again later
                delivery = self._in_flight.pop(message.msg_id, None)
                if delivery is not None:
                    self._waiting[message.msg_id] = delivery
                    heapq.heappush(self._retries, (now, message.msg_id))

    async def _next_batch(self, group: str, room: int) -> list[AnycastMessage]:
        assert self._streams is not None
        loop = asyncio.get_running_loop()
        out: list[AnycastMessage] = []
        now = loop.time()
        try:
            if now >= self._next_maintenance:
                self._next_maintenance = now + self._config.reclaim_interval
                await self._maintain(group, room, out)
            if len(out) < room and self._retries and self._retries[0][0] <= now:
                await self._redeliver_due(group, room, out, now)
        except ValkeyError as exc:
            if not out:
                raise
            # hand out what is already tracked; the rest is retried on the next turn
            log.warning("maintenance of group %s failed: %s", group, exc)
        if out or self._closed:
            return out
        block = self._config.block_seconds
        if self._retries:
            block = min(block, self._retries[0][0] - now)
        block = min(block, self._next_maintenance - now)
        block_ms = max(1, int(block * 1000))
        reply = await self._streams.read_group_raw(
            group, self._consumer, {ANYCAST_STREAM: ">"}, count=room, block_ms=block_ms
        )
        if not reply:
            return out
        in_flight = self._in_flight
        # RESP3 answers a map {key: entries}, RESP2 a list of [key, entries]
        for _, entries in reply.items() if isinstance(reply, dict) else reply:
            for raw_id, flat in entries:
                entry = raw_id.decode()
                if flat:  # the hot path: a well-formed first delivery, decoded inline
                    it = iter(flat)
                    try:
                        fields = {k.decode(): v.decode() for k, v in zip(it, it, strict=True)}
                    except ValueError:  # not UTF-8: the slow path says why
                        fields = {}
                    if "name" in fields and "payload" in fields:
                        in_flight[entry] = _Delivery(ANYCAST_STREAM, entry, 1, flat)
                        self._delivered += 1
                        out.append(AnycastMessage(entry, fields, 1))
                        continue
                await self._accept(group, ANYCAST_STREAM, entry, flat, 1, out)
        return out

    async def _accept(
        self,
        group: str,
        key: str,
        entry: str,
        raw: RawFields | None,
        count: int,
        out: list[AnycastMessage],
    ) -> None:
        """Track one delivered entry and hand it out, or dead-letter it if it is unusable."""
        msg_id = entry_id(key != ANYCAST_STREAM, entry)
        delivery = _Delivery(key, entry, count, raw or {}, dirty=count > 1)
        self._in_flight[msg_id] = delivery
        self._delivered += 1
        reason: str | None
        fields: dict[str, str] = {}
        if raw is None:
            reason = "entry was deleted from the stream while pending"
        else:
            try:
                fields = {k.decode(): v.decode() for k, v in _pairs(raw)}
                reason = malformed_reason(fields)
            except UnicodeDecodeError as exc:
                reason = f"malformed entry: a field is not UTF-8 ({exc})"
        if reason is None:
            out.append(AnycastMessage(msg_id, fields, count))
            return
        try:
            await self._move_to_dlq(group, msg_id, delivery, reason, attempts=count)
        except ValkeyError:
            # left pending: the orphan sweep hands it back and we try again
            self._in_flight.pop(msg_id, None)
            raise

    async def _redeliver_due(
        self, group: str, room: int, out: list[AnycastMessage], now: float
    ) -> None:
        assert self._streams is not None
        due: dict[str, list[str]] = {}
        while self._retries and self._retries[0][0] <= now and len(out) + len(due) < room:
            _, msg_id = heapq.heappop(self._retries)
            delivery = self._waiting.get(msg_id)
            if delivery is not None:
                due.setdefault(delivery.key, []).append(msg_id)
        for key, msg_ids in due.items():
            entries = [self._waiting[m].entry for m in msg_ids]
            claimed = {
                e.id: e for e in await self._streams.claim(key, group, self._consumer, entries)
            }
            for msg_id in msg_ids:
                delivery = self._waiting.pop(msg_id)
                got = claimed.get(delivery.entry)
                if got is None:
                    continue  # acked meanwhile, or deleted and dropped from the pending list
                await self._accept(group, key, delivery.entry, got.fields, delivery.count + 1, out)

    async def _maintain(self, group: str, room: int, out: list[AnycastMessage]) -> None:
        """Reclaim dead consumers' entries, hand back our orphans, read the replay stream."""
        assert self._streams is not None
        streams = self._streams
        for key in (ANYCAST_STREAM, self._replay_key):
            summary = await streams.pending_summary(key, group)
            others = [c for c, n in summary.consumers.items() if n and c != self._consumer]
            if others:
                beats = await self._client.execute(
                    "MGET", *(heartbeat_key(group, c) for c in others)
                )
                for consumer, beat in zip(others, beats, strict=True):
                    if (beat is not None and beat != _CLOSED) or len(out) >= room:
                        continue  # alive (never steal a live consumer's work), or no room
                    min_idle = 0 if beat == _CLOSED else int(self._config.heartbeat_ttl * 1000)
                    claimed = await streams.claim_from(
                        key,
                        group,
                        consumer,
                        self._consumer,
                        count=room - len(out),
                        min_idle_ms=min_idle,
                    )
                    for item in claimed:
                        self._reclaimed += 1
                        await self._take_over(
                            group, key, item.id, item.fields, item.deliveries, out
                        )
            if summary.consumers.get(self._consumer) and len(out) < room:
                await self._sweep_orphans(group, key, room, out)
        if len(out) < room:
            reply = await streams.read_group(
                group, self._consumer, {self._replay_key: ">"}, count=room - len(out)
            )
            for _, entries in reply:
                for entry in entries:
                    await self._accept(group, self._replay_key, entry.id, entry.fields, 1, out)

    async def _take_over(
        self,
        group: str,
        key: str,
        entry: str,
        raw: dict[bytes, bytes] | None,
        deliveries: int,
        out: list[AnycastMessage],
    ) -> None:
        if deliveries > self._config.max_deliveries:
            msg_id = entry_id(key != ANYCAST_STREAM, entry)
            delivery = _Delivery(key, entry, deliveries, raw or {}, dirty=True)
            self._in_flight[msg_id] = delivery
            error = f"delivered {deliveries - 1} times, never settled (consumers died)"
            await self._move_to_dlq(group, msg_id, delivery, error, attempts=deliveries - 1)
            return
        await self._accept(group, key, entry, raw, deliveries, out)

    async def _sweep_orphans(
        self, group: str, key: str, room: int, out: list[AnycastMessage]
    ) -> None:
        """Hand back entries pending under our name that we do not track (a previous life of
        this consumer id, an ack lost to a failover or a failed flush)."""
        assert self._streams is not None
        pending = await self._streams.pending(
            key,
            group,
            consumer=self._consumer,
            count=room - len(out),
            min_idle_ms=int(self._config.reclaim_interval * 1000),
        )
        known = self._in_flight.keys() | self._waiting.keys() | self._acking
        orphans = [p for p in pending if entry_id(key != ANYCAST_STREAM, p.id) not in known]
        if not orphans:
            return
        counts = {p.id: p.deliveries for p in orphans}
        claimed = await self._streams.claim(key, group, self._consumer, [p.id for p in orphans])
        for item in claimed:
            await self._take_over(group, key, item.id, item.fields, counts[item.id] + 1, out)

    # -- anycast: settle ----------------------------------------------------------

    async def ack(self, *msg_ids: str) -> None:
        """Settle as handled: one ``XACK`` for all the ids; acks issued while another write is
        in flight are coalesced into one ``XACK`` per stream.

        Returns once Redis confirmed. If cancelled, the ack may or may not have reached Redis;
        a message whose ack was lost is handed back to this consumer later (at-least-once).
        """
        self._check_open()
        group = self._require_group()
        if not msg_ids:
            return
        ops: list[tuple[str, str, str, bool]] = []
        for msg_id in msg_ids:
            delivery = self._in_flight.pop(msg_id, None) or self._waiting.pop(msg_id, None)
            if delivery is not None:
                key, entry, dirty = delivery.key, delivery.entry, delivery.dirty
            else:
                replay, entry = split_msg_id(msg_id)
                key, dirty = (replay_stream(group) if replay else ANYCAST_STREAM), True
            ops.append((key, entry, msg_id, dirty))
            self._acking.add(msg_id)
        self._settled.set()
        await self._write(ops, [])

    async def nack(self, msg_id: str, error: str) -> None:
        """Deliver again after ``retry_delay`` (an ``XCLAIM`` of the same entry), or dead-letter
        after ``max_deliveries``. The retry is scheduled even if recording the error fails."""
        self._check_open()
        group = self._require_group()
        delivery = self._in_flight.get(msg_id)
        if delivery is None:
            raise UnknownMessage(f"nack: message {msg_id!r} is not in flight at this consumer")
        if delivery.count >= self._config.max_deliveries:
            with _translated("nack"):
                await self._move_to_dlq(group, msg_id, delivery, error, attempts=delivery.count)
            return
        del self._in_flight[msg_id]
        delivery.dirty = True
        self._waiting[msg_id] = delivery
        due = asyncio.get_running_loop().time() + self._config.retry_delay
        heapq.heappush(self._retries, (due, msg_id))
        self._settled.set()
        key = _errors_key(group, msg_id)
        limit = self._config.error_history_limit
        with _translated("nack"):
            await self._client.pipeline(
                [
                    ["RPUSH", key, error],
                    ["LTRIM", key, -limit, -1],
                    ["PEXPIRE", key, int(self._config.handled_ttl * 1000)],
                ],
                operation="nack",
            )

    async def dead_letter(self, msg_id: str, error: str) -> None:
        """Move a message to ``events:dlq`` at once and ack it (one transaction)."""
        self._check_open()
        group = self._require_group()
        delivery = self._in_flight.get(msg_id)
        if delivery is None:
            raise UnknownMessage(
                f"dead_letter: message {msg_id!r} is not in flight at this consumer"
            )
        with _translated("dead_letter"):
            await self._move_to_dlq(group, msg_id, delivery, error, attempts=delivery.count)

    async def _move_to_dlq(
        self, group: str, msg_id: str, delivery: _Delivery, error: str, *, attempts: int
    ) -> None:
        errors_key = _errors_key(group, msg_id)
        history: list[str] = []
        if delivery.dirty:
            raw_history = await self._client.execute("LRANGE", errors_key, 0, -1)
            history = [h.decode(errors="backslashreplace") for h in raw_history]
        fields: list[Any] = [
            b"group", group,
            b"original_id", msg_id,
            b"error", error,
            b"attempts", str(attempts),
            b"history", dump_json_str(history[-self._config.error_history_limit :]),
            b"consumer", self._consumer,
        ]  # fmt: skip
        for name, value in _pairs(delivery.raw):
            fields += [_DLQ_FIELD_PREFIX + name, value]
        await self._client.pipeline(
            [
                ["XADD", DEAD_LETTER_STREAM, "MAXLEN", "~", self._config.dead_letter_maxlen, "*",
                 *fields],
                ["XACK", delivery.key, group, delivery.entry],
                ["DEL", errors_key, _handled_key(group, msg_id)],
            ],
            transaction=True,
            operation="dead_letter",
        )  # fmt: skip
        self._in_flight.pop(msg_id, None)
        self._dead_lettered += 1
        self._settled.set()

    async def mark_handled(self, msg_id: str, handler: str) -> None:
        """``SADD events:handled:<group>:<id> <handler>`` (coalesced like acks, TTL
        ``handled_ttl``); returns once stored."""
        self._check_open()
        self._require_group()
        delivery = self._in_flight.get(msg_id)
        if delivery is not None:
            delivery.marks.add(handler)
            delivery.dirty = True
        await self._write([], [(msg_id, handler)])

    async def handled(self, msg_id: str) -> frozenset[str]:
        """Handlers recorded for ``msg_id`` (no round trip on a first delivery)."""
        self._check_open()
        group = self._require_group()
        delivery = self._in_flight.get(msg_id)
        if delivery is not None and not delivery.dirty:
            return frozenset(delivery.marks)
        with _translated("handled"):
            members = await self._client.execute("SMEMBERS", _handled_key(group, msg_id))
        names = {m.decode() for m in members}
        if delivery is not None:
            names |= delivery.marks
        return frozenset(names)

    # -- broadcast ----------------------------------------------------------------

    async def broadcast(self, fields: Mapping[str, str], *, cache_id: str | None = None) -> None:
        """``PUBLISH events_all <json>``, ``XADD events:broadcast`` and, with ``cache_id``,
        ``SET <cache_id> <json> EX 300``: one round trip."""
        self._check_open()
        check_outgoing(fields, "broadcast")
        text = dump_json_str(dict(fields))
        commands: list[list[Any]] = [
            ["PUBLISH", BROADCAST_CHANNEL, text],
            ValkeyStreamClient.add_command(
                BROADCAST_STREAM, fields, maxlen=self._config.broadcast_retention
            ),
        ]
        if cache_id is not None:
            commands.append(["SET", cache_id, text, "EX", BROADCAST_CACHE_TTL])
        await self._publish(commands, "broadcast")

    async def fetch_cached_broadcast(self, cache_id: str) -> Mapping[str, str] | None:
        """``GET <cache_id>`` decoded, or ``None``."""
        self._check_open()
        with _translated("fetch_cached_broadcast"):
            raw = await self._client.execute("GET", cache_id)
        if raw is None:
            return None
        return self._decode_broadcast(raw, f"cache {cache_id!r}")

    @staticmethod
    def _decode_broadcast(raw: bytes, source: str) -> dict[str, str] | None:
        try:
            decoded = load_json(raw, source=source)
        except ValueError as exc:
            log.warning("ignoring undecodable broadcast from %s: %s", source, exc)
            return None
        if not isinstance(decoded, dict):
            log.warning("ignoring broadcast from %s: not a JSON object", source)
            return None
        return {str(k): v if isinstance(v, str) else dump_json_str(v) for k, v in decoded.items()}

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
            self._durable_subscribing = True
            return self._subscribe_durable(subscriber)
        return self._subscribe_volatile()

    async def _subscribe_volatile(self) -> AsyncGenerator[BroadcastMessage, None]:
        subscription = self._client.subscription(BROADCAST_CHANNEL)
        with _translated("subscribe"):
            await subscription.open()
        self._subscriptions += 1
        backoff = 0.05
        streak = _Streak("broadcast subscription")
        try:
            while not self._closed:
                try:
                    got = await subscription.get(self._config.block_seconds)
                    backoff = 0.05
                    streak.ok()
                except (ValkeyConnectionError, ValkeyTimeout) as exc:
                    if self._closed:
                        break
                    streak.failed(exc)
                    await self._pause(backoff)
                    backoff = min(backoff * 2, 1.0)
                    continue
                except ValkeyClosed:
                    break
                if got is None:
                    continue
                fields = self._decode_broadcast(got[1], BROADCAST_CHANNEL)
                if fields is not None:
                    yield BroadcastMessage(fields)
        finally:
            self._subscriptions -= 1
            await subscription.aclose()

    async def _subscribe_durable(self, subscriber: str) -> AsyncGenerator[BroadcastMessage, None]:
        assert self._streams is not None
        streams = self._streams
        key = _cursor_key(subscriber)
        ttl = max(1, int(self._config.durable_cursor_ttl))
        try:
            with _translated("subscribe"):
                stored = await self._client.execute("GET", key)
                cursor = stored.decode() if stored else await streams.last_id(BROADCAST_STREAM)
                await self._client.execute("SET", key, cursor, "EX", ttl)
            self._subscriptions += 1
            try:
                async with contextlib.aclosing(self._durable_messages(streams, cursor)) as it:
                    async for message in it:
                        try:
                            yield message
                        finally:
                            # Seen once the subscriber asks for the next one or stops.
                            assert message.msg_id is not None
                            await self._store_cursor(key, message.msg_id, ttl)
            finally:
                self._subscriptions -= 1
        finally:
            self._durable_subscribing = False

    async def _durable_messages(
        self, streams: ValkeyStreamClient, cursor: str
    ) -> AsyncGenerator[BroadcastMessage, None]:
        backoff = 0.05
        streak = _Streak("durable broadcast read")
        while not self._closed:
            try:
                reply = await streams.read(
                    {BROADCAST_STREAM: cursor},
                    count=self._config.batch_size,
                    block_ms=max(1, int(self._config.block_seconds * 1000)),
                )
                backoff = 0.05
                streak.ok()
            except ValkeyError as exc:
                if self._closed:
                    return
                streak.failed(exc)
                await self._pause(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            for _, entries in reply:
                for entry in entries:
                    cursor = entry.id
                    fields = self._decode_durable(entry)
                    if fields is not None:
                        yield BroadcastMessage(fields, entry.id)
                    if self._closed:
                        return

    @staticmethod
    def _decode_durable(entry: StreamEntry) -> dict[str, str] | None:
        if entry.fields is None:
            return None
        try:
            return _decode_fields(entry.fields)
        except UnicodeDecodeError as exc:
            log.warning("skipping undecodable durable broadcast %s: %s", entry.id, exc)
            return None

    async def _store_cursor(self, key: str, cursor: str, ttl: int) -> None:
        try:
            await self._client.execute("SET", key, cursor, "EX", ttl)
        except ValkeyError as exc:
            # The subscriber goes on from its in-memory position; a restart before the next
            # successful store sees this message again (at-least-once, never a gap).
            log.warning("storing durable cursor %s failed: %s", key, exc)

    # -- dead letters -------------------------------------------------------------

    async def list_dead_letters(
        self, *, limit: int = 100, after: str | None = None
    ) -> list[DeadLetter]:
        """``XRANGE events:dlq`` oldest first."""
        streams = self._check_open()
        start = f"({after}" if after is not None else "-"
        with _translated("list_dead_letters"):
            entries = await streams.range(DEAD_LETTER_STREAM, start, "+", count=limit)
        return [self._dead_letter_of(entry) for entry in entries if entry.fields is not None]

    @staticmethod
    def _dead_letter_of(entry: StreamEntry) -> DeadLetter:
        raw = entry.fields or {}

        def text(name: bytes) -> str:
            return raw.get(name, b"").decode(errors="backslashreplace")

        original = {
            k[len(_DLQ_FIELD_PREFIX) :].decode(errors="backslashreplace"): v.decode(
                errors="backslashreplace"
            )
            for k, v in raw.items()
            if k.startswith(_DLQ_FIELD_PREFIX)
        }
        try:
            history = tuple(str(h) for h in load_json(raw.get(b"history", b"[]")))
        except ValueError:
            history = ()
        attempts = text(b"attempts")
        return DeadLetter(
            dlq_id=entry.id,
            original_id=text(b"original_id"),
            group=text(b"group"),
            fields=original,
            error=text(b"error"),
            attempts=int(attempts) if attempts.isdigit() else 0,
            history=history,
        )

    async def _dead_entries(self, dlq_ids: Sequence[str] | None) -> list[StreamEntry]:
        assert self._streams is not None
        if dlq_ids is None:
            return await self._streams.range(DEAD_LETTER_STREAM)
        out = []
        for dlq_id in dlq_ids:
            out += await self._streams.range(DEAD_LETTER_STREAM, dlq_id, dlq_id)
        return out

    async def replay_dead_letters(self, dlq_ids: Sequence[str] | None = None) -> list[str]:
        """Append each dead letter's original fields to ``events:replay:<its group>`` and
        delete it from ``events:dlq`` (one transaction per letter); returns the new ids."""
        self._check_open()
        new_ids: list[str] = []
        with _translated("replay_dead_letters"):
            for entry in await self._dead_entries(dlq_ids):
                raw = entry.fields or {}
                group = raw.get(b"group", b"").decode(errors="replace")
                original = {
                    k[len(_DLQ_FIELD_PREFIX) :]: v
                    for k, v in raw.items()
                    if k.startswith(_DLQ_FIELD_PREFIX)
                }
                if not group or not original:
                    continue
                replay_key = replay_stream(group)
                results = await self._client.pipeline(
                    [
                        ValkeyStreamClient.add_command(replay_key, original),
                        ["XDEL", DEAD_LETTER_STREAM, entry.id],
                    ],
                    transaction=True,
                    operation="replay_dead_letters",
                )
                new_id = results[0].decode() if isinstance(results[0], bytes) else str(results[0])
                new_ids.append(entry_id(True, new_id))
        return new_ids

    async def purge_dead_letters(self, dlq_ids: Sequence[str] | None = None) -> int:
        """``XDEL`` the given dead letters, or delete the whole stream; returns how many."""
        streams = self._check_open()
        with _translated("purge_dead_letters"):
            if dlq_ids is None:
                count, _ = await self._client.pipeline(
                    [["XLEN", DEAD_LETTER_STREAM], ["DEL", DEAD_LETTER_STREAM]],
                    transaction=True,
                    operation="purge_dead_letters",
                )
                return int(count)
            for dlq_id in dlq_ids:
                try:
                    parse_id(dlq_id)
                except ValueError as exc:
                    raise InvalidMessage(f"purge_dead_letters: bad id {dlq_id!r}") from exc
            return await streams.delete(DEAD_LETTER_STREAM, *dlq_ids)

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
