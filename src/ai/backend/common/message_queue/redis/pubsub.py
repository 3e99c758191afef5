"""The pub/sub half of RedisMessageQueue: broadcast, cache, durable broadcast stream."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from ai.backend.common.clients.valkey import (
    StreamEntry,
    ValkeyClosed,
    ValkeyConnectionError,
    ValkeyError,
    ValkeyStreamClient,
    ValkeyTimeout,
)
from ai.backend.common.json import dump_json_str, load_json

from .._common import check_outgoing
from ..exceptions import (
    MessageQueueError,
    QueueConfigError,
)
from ..types import (
    BROADCAST_CACHE_TTL,
    BROADCAST_CHANNEL,
    BROADCAST_STREAM,
    BroadcastMessage,
    BroadcastMode,
)
from ._base import RedisQueueBase, _cursor_key, _decode_fields, _Streak, _translated

log = logging.getLogger(__name__)

__all__ = ("BroadcastMixin",)


class BroadcastMixin(RedisQueueBase):
    """Broadcast on ``events_all`` (+ cache), durable copies on ``events:broadcast``."""

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
        ttl_ms = max(1, int(self._config.durable_cursor_ttl * 1000))
        # Taken on the first step (see _consume): a never-run iterator holds nothing.
        if self._durable_subscribing:
            raise MessageQueueError("a durable subscribe() is already running on this client")
        self._durable_subscribing = True
        try:
            with _translated("subscribe"):
                stored = await self._client.execute("GET", key)
                cursor = stored.decode() if stored else await streams.last_id(BROADCAST_STREAM)
                await self._client.execute("SET", key, cursor, "PX", ttl_ms)
            self._subscriptions += 1
            try:
                async with contextlib.aclosing(self._durable_messages(streams, cursor)) as it:
                    async for message in it:
                        try:
                            yield message
                        finally:
                            # Seen once the subscriber asks for the next one or stops.
                            assert message.msg_id is not None
                            await self._store_cursor(key, message.msg_id, ttl_ms)
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

    async def _store_cursor(self, key: str, cursor: str, ttl_ms: int) -> None:
        try:
            await self._client.execute("SET", key, cursor, "PX", ttl_ms)
        except ValkeyError as exc:
            # The subscriber goes on from its in-memory position; a restart before the next
            # successful store sees this message again (at-least-once, never a gap).
            log.warning("storing durable cursor %s failed: %s", key, exc)
