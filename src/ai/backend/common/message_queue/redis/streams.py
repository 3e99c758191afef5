"""The Streams half of RedisMessageQueue: anycast send/consume/settle, reclaim, dead letters."""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import deque
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from typing import Any

from ai.backend.common.clients.valkey import (
    StreamEntry,
    ValkeyError,
    ValkeyStreamClient,
)
from ai.backend.common.json import dump_json_str, load_json

from .._common import (
    check_outgoing,
    checked_id,
    checked_msg_id,
    entry_id,
    malformed_reason,
    replay_stream,
    split_msg_id,
)
from ..exceptions import (
    MessageQueueError,
    UnknownMessage,
)
from ..types import (
    ANYCAST_STREAM,
    DEAD_LETTER_STREAM,
    AnycastMessage,
    DeadLetter,
)
from ._base import (
    _CLOSED,
    _DLQ_FIELD_PREFIX,
    RawFields,
    RedisQueueBase,
    _Delivery,
    _errors_key,
    _handled_key,
    _pairs,
    _Streak,
    _translated,
    heartbeat_key,
)

log = logging.getLogger(__name__)

__all__ = ("StreamsMixin",)


class StreamsMixin(RedisQueueBase):
    """Anycast over ``events`` (and ``events:replay:<group>``), dead letters on ``events:dlq``."""

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

    # -- anycast: consume ---------------------------------------------------------

    def consume(self) -> AsyncGenerator[AnycastMessage, None]:
        """Yield this group's messages until the client closes (see the interface)."""
        group = self._require_group()
        self._check_open()
        if self._consuming:
            raise MessageQueueError("RedisMessageQueue: consume() is already running")
        return self._consume(group)

    async def _consume(self, group: str) -> AsyncGenerator[AnycastMessage, None]:
        # The flag is taken on the first step, not in consume(): an iterator closed before
        # it ever ran executes no code at all, so it could never give the flag back.
        if self._consuming:
            raise MessageQueueError("RedisMessageQueue: consume() is already running")
        self._consuming = True
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
                self._intake_idle.clear()  # aclose() waits for this call before leaving
                try:
                    batch.extend(await self._next_batch(group, room))
                except ValkeyError as exc:
                    self._intake_idle.set()
                    if self._closed:
                        break
                    self._note_failure(exc)
                    streak.failed(exc)
                    await self._pause(backoff)
                    backoff = min(backoff * 2, 1.0)
                    continue
                finally:
                    self._intake_idle.set()
                backoff = 0.05
                streak.ok()
                # Checked before each message: nothing is handed out once aclose() began
                # (what is left stays pending under this consumer, reclaimed by peers).
                while batch and not self._closed:
                    yield batch.popleft()
        finally:
            self._consuming = False
            self._hand_back(batch)

    def _hand_back(self, messages: Iterable[AnycastMessage]) -> None:
        """Messages read but never handed out: deliver them again (to the next consume())."""
        now = asyncio.get_running_loop().time()
        for message in messages:
            delivery = self._in_flight.pop(message.msg_id, None)
            if delivery is not None:
                self._waiting[message.msg_id] = delivery
                heapq.heappush(self._retries, (now, message.msg_id))

    async def _next_batch(self, group: str, room: int) -> list[AnycastMessage]:
        assert self._streams is not None
        loop = asyncio.get_running_loop()
        out: list[AnycastMessage] = []
        if self._closed:
            return out
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
        except BaseException:
            self._hand_back(out)  # cancelled: what was taken so far is not stranded in flight
            raise
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
        await self._dead_letter_quietly(group, msg_id, delivery, reason, attempts=count)

    async def _redeliver_due(
        self, group: str, room: int, out: list[AnycastMessage], now: float
    ) -> None:
        assert self._streams is not None
        due: dict[str, list[str]] = {}
        popped: list[str] = []
        taken = len(out)
        while self._retries and self._retries[0][0] <= now and taken < room:
            _, msg_id = heapq.heappop(self._retries)
            delivery = self._waiting.get(msg_id)
            if delivery is not None:
                due.setdefault(delivery.key, []).append(msg_id)
                popped.append(msg_id)
                taken += 1
        done: set[str] = set()
        try:
            for key, msg_ids in due.items():
                entries = [d.entry for m in msg_ids if (d := self._waiting.get(m)) is not None]
                # Only what is still ours: a peer that took it over (it thought us dead)
                # keeps it, and the count is the pending list's, not ours.
                claimed = {
                    e.id: e
                    for e in await self._streams.claim_owned(key, group, self._consumer, entries)
                }
                for msg_id in msg_ids:
                    done.add(msg_id)
                    delivery = self._waiting.pop(msg_id, None)
                    if delivery is None:
                        continue  # acked while the claim was on its way
                    got = claimed.get(delivery.entry)
                    if got is None:
                        continue  # acked meanwhile, or taken over by a peer
                    if delivery.dead is not None:  # a dead-letter move that failed: again
                        self._in_flight[msg_id] = delivery
                        error, attempts = delivery.dead
                        await self._dead_letter_quietly(
                            group, msg_id, delivery, error, attempts=attempts
                        )
                        continue
                    await self._accept(group, key, delivery.entry, got.fields, got.deliveries, out)
        except BaseException:
            # Failed or cancelled half-way: what was taken off the schedule and not dealt
            # with goes back on it, or it would wait in ``_waiting`` for ever.
            for msg_id in popped:
                if msg_id not in done and msg_id in self._waiting:
                    heapq.heappush(self._retries, (now, msg_id))
            raise

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
                silent_dead = self._may_reclaim_silent()
                for consumer, beat in zip(others, beats, strict=True):
                    if len(out) >= room:
                        break
                    if beat == _CLOSED:  # it left and said so: take its work at once
                        min_idle = 0
                    elif beat is None and silent_dead:  # no heartbeat, and we can tell
                        min_idle = int(self._config.heartbeat_ttl * 1000)
                    else:
                        continue  # alive: never steal a live consumer's work
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
            await self._dead_letter_quietly(group, msg_id, delivery, error, attempts=deliveries - 1)
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
        ids = [p.id for p in orphans]
        for item in await self._streams.claim_owned(key, group, self._consumer, ids):
            await self._take_over(group, key, item.id, item.fields, item.deliveries, out)

    # -- anycast: settle ----------------------------------------------------------

    async def ack(self, *msg_ids: str) -> None:
        """Settle as handled: one ``XACK`` for all the ids; acks issued while another write is
        in flight are coalesced into one ``XACK`` per stream.

        Returns once Redis confirmed. If cancelled, the ack may or may not have reached Redis;
        a message whose ack was lost is handed back to this consumer later (at-least-once). A
        malformed id raises ``InvalidMessage`` before anything is sent: one bad id would make
        Redis refuse the whole ``XACK`` while the same pipeline dropped the others' records.
        """
        self._check_open()
        group = self._require_group()
        if not msg_ids:
            return
        in_flight, waiting = self._in_flight, self._waiting
        for msg_id in msg_ids:  # all checked before anything is sent or forgotten
            if msg_id not in in_flight and msg_id not in waiting:
                checked_msg_id(msg_id, "ack")
        ops: list[tuple[str, str, str, bool]] = []
        for msg_id in msg_ids:
            delivery = in_flight.pop(msg_id, None) or waiting.pop(msg_id, None)
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
        after ``max_deliveries``. The retry is scheduled even if recording the error fails; a
        dead-letter move that fails (raised) or is cancelled is retried after ``retry_delay``."""
        self._check_open()
        group = self._require_group()
        delivery = self._in_flight.get(msg_id)
        if delivery is None:
            raise UnknownMessage(f"nack: message {msg_id!r} is not in flight at this consumer")
        if delivery.count >= self._config.max_deliveries:
            with _translated("nack"):
                await self._dead_letter(group, msg_id, delivery, error, attempts=delivery.count)
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
        """Move a message to ``events:dlq`` at once and ack it (one transaction). If that fails
        (raised) or is cancelled, the move is retried after ``retry_delay``."""
        self._check_open()
        group = self._require_group()
        delivery = self._in_flight.get(msg_id)
        if delivery is None:
            raise UnknownMessage(
                f"dead_letter: message {msg_id!r} is not in flight at this consumer"
            )
        with _translated("dead_letter"):
            await self._dead_letter(group, msg_id, delivery, error, attempts=delivery.count)

    async def _dead_letter(
        self, group: str, msg_id: str, delivery: _Delivery, error: str, *, attempts: int
    ) -> None:
        """:meth:`_move_to_dlq`; if that fails or is cancelled the message is not stranded in
        flight: it leaves it (freeing its slot) for the retry path, which claims it after
        ``retry_delay`` and moves it again (it is never handed out again)."""
        try:
            await self._move_to_dlq(group, msg_id, delivery, error, attempts=attempts)
        except BaseException:
            if self._in_flight.pop(msg_id, None) is not None:
                delivery.dead = (error, attempts)
                self._waiting[msg_id] = delivery
                due = asyncio.get_running_loop().time() + self._config.retry_delay
                heapq.heappush(self._retries, (due, msg_id))
                self._settled.set()
            raise

    async def _dead_letter_quietly(
        self, group: str, msg_id: str, delivery: _Delivery, error: str, *, attempts: int
    ) -> None:
        """:meth:`_dead_letter` for the reader's own moves: a Redis error is logged (the move is
        retried), so the rest of the batch is still handed out."""
        try:
            await self._dead_letter(group, msg_id, delivery, error, attempts=attempts)
        except ValkeyError as exc:
            log.warning(
                "dead-lettering %s failed, retrying in %s s: %s",
                msg_id,
                self._config.retry_delay,
                exc,
            )

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

    # -- dead letters -------------------------------------------------------------

    async def list_dead_letters(
        self, *, limit: int = 100, after: str | None = None
    ) -> list[DeadLetter]:
        """``XRANGE events:dlq`` oldest first."""
        streams = self._check_open()
        if after is not None:
            checked_id(after, "list_dead_letters")
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
        for dlq_id in dlq_ids:
            checked_id(dlq_id, "replay_dead_letters")
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
                checked_id(dlq_id, "purge_dead_letters")
            return await streams.delete(DEAD_LETTER_STREAM, *dlq_ids)
