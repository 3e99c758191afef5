"""Publishing events: :class:`EventProducer` turns events into queue messages.

Guarantees:
- the metadata of every message is the context bundle bound where the event is published
  (request id, user, triggered user, traceparent)
  [tests/events/test_producer.py::test_metadata_is_captured_from_the_context];
- a publish that the queue rejects raises (the queue's error), and is counted as failed,
  never swallowed [tests/events/test_producer.py::test_failed_publish_raises_and_counts];
- a batch is written in one queue call, in order
  [tests/events/test_producer.py::test_batch_is_one_call_in_order].
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from ..contexts import ContextBundle
from ..exception import InvalidArgument
from ..message_queue import AbstractMessageQueue
from .codec import EventCodec
from .event import AbstractEvent
from .types import DeliveryPattern

__all__ = ("EventProducer", "ProducerStatistics")


@dataclass(frozen=True, slots=True)
class ProducerStatistics:
    """Counters of one producer since it was created."""

    published: Mapping[str, int]
    """Events accepted by the queue, per event name."""
    failed: Mapping[str, int]
    """Events whose publish raised, per event name."""


class EventProducer:
    """Publishes events on a message queue as ``source`` (the component id).

    The producer does not own the queue: opening and closing it is the caller's job. Every
    method captures the context bundle of the calling task (or takes ``context``) into the
    message metadata. Cancelling a publish may or may not have written the message.
    """

    def __init__(
        self,
        queue: AbstractMessageQueue,
        source: str,
        *,
        codec: EventCodec | None = None,
    ) -> None:
        self._queue = queue
        self._source = source
        self._codec = codec if codec is not None else EventCodec()
        self._published: defaultdict[str, int] = defaultdict(int)
        self._failed: defaultdict[str, int] = defaultdict(int)

    @property
    def source(self) -> str:
        """The producer id written as ``source``."""
        return self._source

    def encode(
        self, event: AbstractEvent, *, context: ContextBundle | None = None
    ) -> dict[str, str]:
        """The message fields this producer would write for ``event`` (no I/O)."""
        return self._codec.encode_fields(event, source=self._source, context=context)

    async def anycast_event(
        self, event: AbstractEvent, *, context: ContextBundle | None = None
    ) -> str:
        """Append ``event`` to the anycast stream; returns the message id."""
        fields = self.encode(event, context=context)
        try:
            msg_id = await self._queue.send(fields)
        except Exception:
            self._failed[event.event_name] += 1
            raise
        self._published[event.event_name] += 1
        return msg_id

    async def anycast_events_batch(
        self, events: Sequence[AbstractEvent], *, context: ContextBundle | None = None
    ) -> list[str]:
        """Append several events in one round trip, in order; returns their message ids."""
        if not events:
            return []
        bundle = ContextBundle.capture() if context is None else context
        batch = [self.encode(event, context=bundle) for event in events]
        try:
            ids = await self._queue.send_batch(batch)
        except Exception:
            for event in events:
                self._failed[event.event_name] += 1
            raise
        for event in events:
            self._published[event.event_name] += 1
        return ids

    async def broadcast_event(
        self, event: AbstractEvent, *, context: ContextBundle | None = None
    ) -> None:
        """Send ``event`` to every subscriber."""
        await self._broadcast(event, None, context)

    async def broadcast_event_with_cache(
        self,
        event: AbstractEvent,
        *,
        cache_id: str | None = None,
        context: ContextBundle | None = None,
    ) -> None:
        """Broadcast ``event`` and keep it under ``cache_id`` (default ``event.cache_id()``,
        e.g. ``bgtask.<uuid>``) for late readers, for ``BROADCAST_CACHE_TTL`` seconds."""
        key = cache_id if cache_id is not None else event.cache_id()
        if not key:
            raise InvalidArgument(
                f"event {event.event_name!r} has no cache id; pass cache_id=",
                data={"field": "cache_id", "event_name": event.event_name},
            )
        await self._broadcast(event, key, context)

    async def produce_event(
        self, event: AbstractEvent, *, context: ContextBundle | None = None
    ) -> None:
        """Publish ``event`` the way its class declares (anycast, or broadcast with its cache
        id when it has one)."""
        if event.delivery_pattern is DeliveryPattern.ANYCAST:
            await self.anycast_event(event, context=context)
        else:
            await self._broadcast(event, event.cache_id(), context)

    async def _broadcast(
        self, event: AbstractEvent, cache_id: str | None, context: ContextBundle | None
    ) -> None:
        fields = self.encode(event, context=context)
        try:
            await self._queue.broadcast(fields, cache_id=cache_id)
        except Exception:
            self._failed[event.event_name] += 1
            raise
        self._published[event.event_name] += 1

    def statistics(self) -> ProducerStatistics:
        """A snapshot of the publish counters."""
        return ProducerStatistics(
            published=MappingProxyType(dict(self._published)),
            failed=MappingProxyType(dict(self._failed)),
        )
