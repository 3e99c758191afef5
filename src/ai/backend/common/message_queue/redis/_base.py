"""The shared half of RedisMessageQueue: state, lifecycle, heartbeat, trimmer, acker (private)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ai.backend.common.clients.valkey import (
    CallHook,
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

from .._common import replay_stream
from ..abc import AbstractMessageQueue
from ..exceptions import (
    MessageQueueError,
    QueueClosed,
    QueueConfigError,
    QueueTimeout,
    QueueUnavailable,
)
from ..types import (
    ANYCAST_STREAM,
    QueueConfig,
    QueueStatistics,
)

__all__ = ("RedisQueueBase", "heartbeat_key")

log = logging.getLogger(__name__)

_CLOSED = b"closed"
_DLQ_FIELD_PREFIX = b"f:"
_CLOSE_GRACE = 5.0


# KEYS: heartbeat key, stream keys...; ARGV: group, consumer, ttl of the closed mark (ms).
# One step, so no entry can be handed to this consumer between the look and the delete.
_LEAVE_SCRIPT = """
local group, consumer = ARGV[1], ARGV[2]
for i = 2, #KEYS do
  local mine = redis.pcall('XPENDING', KEYS[i], group, '-', '+', 1, consumer)
  if type(mine) == 'table' and mine.err == nil and #mine > 0 then
    redis.call('SET', KEYS[1], 'closed', 'PX', ARGV[3])
    return 1
  end
end
for i = 2, #KEYS do
  redis.pcall('XGROUP', 'DELCONSUMER', KEYS[i], group, consumer)
end
redis.call('DEL', KEYS[1])
return 0
"""


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
    dead: tuple[str, int] | None = None
    """``(error, attempts)`` of a dead-letter move that failed: the retry path moves it again
    instead of handing it out."""


class RedisQueueBase(AbstractMessageQueue):
    """State, lifecycle and background work shared by the stream and pub/sub halves."""

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
        self._intake_idle = asyncio.Event()
        """Clear while consume() is in a server call that can hand entries to this consumer."""
        self._intake_idle.set()
        self._beat_now = asyncio.Event()
        """Wakes the heartbeat loop early: a call failed, so beat as soon as Redis answers."""
        self._contact_lost = False
        """A call of ours failed (connection, timeout) since the last successful beat."""
        self._beat_issued: float | None = None
        """When the last successful beat was sent (loop time)."""
        self._healthy_since: float | None = None
        """Start of the current run of beats with no gap (loop time), ``None`` before one."""
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
        """Stop intake (wait for consume()'s read in flight, at most ``block_seconds`` + the
        request timeout), flush pending acks, stop background work, leave the group in one
        atomic step (deleted if nothing is pending under it, else marked ``closed``).

        This consumer's unacked messages stay pending and are reclaimed by the others at once
        (the heartbeat is replaced by a ``closed`` mark). Acks still queued when the writer is
        given up on (after a grace period) fail with ``QueueClosed``; those messages stay
        pending.
        """
        if self._closed:
            return
        self._shutdown()
        await self._stop_intake()
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
        self._beat_now.set()

    async def _stop_intake(self) -> None:
        """Wait until consume() is out of any server call that can hand it entries (a blocked
        ``XREADGROUP``, a claim), at most ``block_seconds`` + the request timeout: what it gets
        stays pending under this consumer, which the leave then sees. Past the bound the leave
        goes on; an entry handed over later stays pending under this consumer's name and is
        reclaimed once idle for ``heartbeat_ttl``."""
        if self._intake_idle.is_set():
            return
        request_timeout = self._client.target.request_timeout
        limit = self._config.block_seconds + (
            request_timeout if request_timeout is not None else _CLOSE_GRACE
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                await self._intake_idle.wait()

    async def _leave_group(self) -> None:
        """Delete this consumer from its group if it has nothing pending, else mark its
        heartbeat ``closed`` so that peers take its entries at once: one atomic script."""
        assert self._group is not None
        keys = [heartbeat_key(self._group, self._consumer), ANYCAST_STREAM, self._replay_key]
        args: list[str | int] = [
            self._group,
            self._consumer,
            max(1, int(self._config.heartbeat_ttl * 1000)),
        ]
        script = self._client.raw.register_script(_LEAVE_SCRIPT)
        await self._client.call("leave", lambda _: script(keys=keys, args=args))

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
        ttl = self._config.heartbeat_ttl
        loop = asyncio.get_running_loop()
        issued = loop.time()
        await self._client.execute(
            "SET",
            heartbeat_key(self._group, self._consumer),
            b"alive",
            "PX",
            max(1, int(ttl * 1000)),
        )
        done = loop.time()
        previous = self._beat_issued
        if self._contact_lost or previous is None or done - previous > ttl:
            # Our own key may have lapsed (an outage, a stall): so may every peer's, through
            # no fault of theirs. Start a new run of continuous connectivity.
            self._healthy_since = done
        self._contact_lost = False
        self._beat_issued = issued

    def _note_failure(self, exc: ValkeyError) -> None:
        """A call failed: if Redis is unreachable or slow, beat as soon as it answers again,
        and take no silent peer's work until connectivity has lasted ``heartbeat_ttl``."""
        if isinstance(exc, (ValkeyConnectionError, ValkeyTimeout)):
            self._contact_lost = True
            self._beat_now.set()

    def _may_reclaim_silent(self) -> bool:
        """Whether a peer whose heartbeat key is gone (not marked ``closed``) counts as dead.

        Only when our own key is certainly alive (a beat sent less than ``heartbeat_ttl``
        ago) and has been for ``heartbeat_ttl`` without a gap and without failed calls: after
        an outage longer than ``heartbeat_ttl`` every key is gone, and the live peers get that
        long to beat again (they do at once) before their work is taken."""
        issued, since = self._beat_issued, self._healthy_since
        if self._contact_lost or issued is None or since is None:
            return False
        now = asyncio.get_running_loop().time()
        ttl = self._config.heartbeat_ttl
        return now - issued < ttl and now - since >= ttl

    async def _heartbeat_loop(self) -> None:
        streak = _Streak(f"heartbeat of {self._consumer}")
        interval = self._config.heartbeat_ttl / 3
        pause = interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._beat_now.wait()
            self._beat_now.clear()
            if self._stopping.is_set():
                return
            try:
                await self._beat()
            except ValkeyError as exc:
                self._note_failure(exc)
                self._beat_now.clear()  # retried below, soon: a beat the moment Redis is back
                streak.failed(exc)
                pause = min(interval, 0.05 * 2 ** min(streak.failures - 1, 10))
            else:
                streak.ok()
                pause = interval

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
                self._note_failure(exc)
                streak.failed(exc)
            else:
                streak.ok()

    async def _flush_loop(self) -> None:
        """Writes the acks and marks queued while another write was in flight, all in one
        pipeline, one batch at a time."""
        future: asyncio.Future[None] | None = None
        try:
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
                    self._note_failure(exc)
                    if future is not None:
                        future.set_exception(_queue_error(exc, "ack"))
                else:
                    if future is not None:
                        future.set_result(None)
                finally:
                    self._flushing = False
                    for _, _, msg_id, _ in acks:
                        self._acking.discard(msg_id)
                future = None
        finally:
            # Cancelled (close out of grace, abort) or crashed: nothing will write what is
            # queued, so its waiters must not wait for ever.
            self._fail_queued_writes(future)

    def _fail_queued_writes(self, in_flight: asyncio.Future[None] | None) -> None:
        if in_flight is not None and not in_flight.done():
            in_flight.set_exception(
                QueueClosed(
                    "ack: the queue closed while this write was in flight; "
                    "it may or may not have been applied"
                )
            )
        queued, self._flush_future = self._flush_future, None
        if queued is not None and not queued.done():
            queued.set_exception(QueueClosed("ack: the queue closed before this write was sent"))
        for _, _, msg_id, _ in self._ack_ops:
            self._acking.discard(msg_id)
        self._ack_ops, self._mark_ops = [], []

    async def _write(
        self, acks: list[tuple[str, str, str, bool]], marks: list[tuple[str, str]]
    ) -> None:
        """Write acks/marks: at once when no other write is in flight (no task hop on the
        sequential path), else queued for the flusher, which coalesces them."""
        if self._flushing or self._ack_ops or self._mark_ops:
            if self._runner is None or self._runner.done():
                for _, _, msg_id, _ in acks:
                    self._acking.discard(msg_id)
                raise QueueClosed("ack: the queue's writer has stopped (closed or crashed)")
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
            if self._ack_ops or self._mark_ops or self._stopping.is_set():
                self._flush_wanted.set()  # queued meanwhile, or the flusher may now stop

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
