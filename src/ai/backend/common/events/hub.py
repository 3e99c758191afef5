"""Fan-out of events to in-process listeners such as server-sent-event streams.

:class:`EventHub` hands each event to the propagators registered for its ``(domain, id)``
(``event.event_domain``, ``event.domain_id()``) or for the whole domain (id :data:`ALL_IDS`).
It remembers the latest event of each ``(domain, id)``, so a propagator registered late for an
id first receives that event, then the ones after it. :class:`QueuePropagator` buffers events
for one reader (``async for event in propagator``). Feed the hub from a dispatcher with
``dispatcher.subscribe(SomeEvent, None, hub.on_event)``. :class:`EventFetcher` reads a broadcast
cached in the message queue (``bgtask.<uuid>``) for readers in another process.

Guarantees:
- a propagator receives exactly the events of its aliases, in the order they were propagated
  [tests/events/test_hub.py::test_propagators_receive_matching_events];
- a propagator registered after an event of its ``(domain, id)`` first receives the latest such
  event, before anything newer [tests/events/test_hub.py::test_late_subscriber_gets_cached_event];
- unregistering closes the propagator and drops every alias and reference to it
  [tests/events/test_hub.py::test_unregister_releases_everything];
- a full :class:`QueuePropagator` drops its oldest event and counts it, so a slow reader never
  blocks the hub [tests/events/test_hub.py::test_queue_propagator_drops_oldest_when_full].

Limits:
- the cache is per process and bounded (least recently updated ids go first); a wildcard
  registration receives no cached event [tests/events/test_hub.py::test_cache_is_bounded];
- events without a ``domain_id()`` reach wildcard propagators only and are not cached
  [tests/events/test_hub.py::test_propagators_receive_matching_events].
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from ..exception import InvalidArgument
from ..message_queue import AbstractMessageQueue
from .codec import EventCodec, EventEnvelope
from .event import AbstractEvent
from .types import ALL_IDS, DeliveryPattern, EventDomain

__all__ = (
    "EventFetcher",
    "EventHub",
    "EventPropagator",
    "HubStatistics",
    "QueuePropagator",
)

log = logging.getLogger(__spec__.name if __spec__ else __name__)

Alias = tuple[EventDomain, str]


class EventPropagator(abc.ABC):
    """A listener of the hub (upstream's interface): an id, a sink for events, and a close."""

    @abc.abstractmethod
    def id(self) -> uuid.UUID:
        """The unique id this propagator is registered under."""

    @abc.abstractmethod
    async def propagate_event(self, event: AbstractEvent) -> None:
        """Take one event; should return quickly (the hub waits for it)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """No more events will come; release the reader. Idempotent."""


class QueuePropagator(EventPropagator):
    """Buffers events for one reader: ``async for event in propagator`` until it is closed.

    Holds at most ``maxsize`` events; when full, the oldest is dropped (``dropped`` counts them).
    """

    def __init__(self, *, maxsize: int = 1024) -> None:
        if maxsize < 1:
            raise InvalidArgument(f"QueuePropagator maxsize must be >= 1, got {maxsize}")
        self._id = uuid.uuid4()
        self._buffer: collections.deque[AbstractEvent] = collections.deque()
        self._maxsize = maxsize
        self._wakeup = asyncio.Event()
        self._closed = False
        self.dropped = 0
        """Events discarded because the reader was too slow."""

    def id(self) -> uuid.UUID:
        """The propagator's id."""
        return self._id

    async def propagate_event(self, event: AbstractEvent) -> None:
        """Buffer ``event`` (dropping the oldest one if full); ignored once closed."""
        if self._closed:
            return
        if len(self._buffer) >= self._maxsize:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(event)
        self._wakeup.set()

    async def close(self) -> None:
        """End the iteration once the buffered events are read."""
        self._closed = True
        self._wakeup.set()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __aiter__(self) -> AsyncIterator[AbstractEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[AbstractEvent]:
        while True:
            while self._buffer:
                yield self._buffer.popleft()
            if self._closed:
                return
            self._wakeup.clear()
            await self._wakeup.wait()


@dataclass(frozen=True, slots=True)
class HubStatistics:
    """A snapshot of an event hub."""

    propagators: int
    aliases: int
    """Distinct ``(domain, id)`` keys with at least one propagator."""
    cached: int
    """``(domain, id)`` keys whose latest event is remembered."""
    propagated: int
    """Events propagated since the hub was created."""


class EventHub:
    """Routes events to propagators by ``(domain, id)`` and remembers the latest per key."""

    def __init__(self, *, cache_size: int = 4096) -> None:
        if cache_size < 0:
            raise InvalidArgument(f"EventHub cache_size must be >= 0, got {cache_size}")
        self._cache_size = cache_size
        self._propagators: dict[uuid.UUID, tuple[EventPropagator, tuple[Alias, ...]]] = {}
        self._by_alias: dict[Alias, dict[uuid.UUID, EventPropagator]] = {}
        self._cache: collections.OrderedDict[Alias, AbstractEvent] = collections.OrderedDict()
        self._lock = asyncio.Lock()
        self._propagated = 0

    async def register(self, propagator: EventPropagator, aliases: Iterable[Alias]) -> None:
        """Route the events of ``aliases`` (``(domain, id)`` or ``(domain, ALL_IDS)``) to
        ``propagator``; it first receives the cached latest event of each exact alias.

        An id registered twice raises ``InvalidArgument``. If cancelled while handing over
        cached events, the propagator stays registered.
        """
        keys = tuple(dict.fromkeys((EventDomain(d), str(i)) for d, i in aliases))
        pid = propagator.id()
        async with self._lock:
            if pid in self._propagators:
                raise InvalidArgument(
                    f"propagator {pid} is already registered", data={"propagator_id": str(pid)}
                )
            self._propagators[pid] = (propagator, keys)
            for key in keys:
                self._by_alias.setdefault(key, {})[pid] = propagator
            # Under the lock: nothing newer can be propagated before the cached events.
            for key in keys:
                cached = self._cache.get(key) if key[1] != ALL_IDS else None
                if cached is not None:
                    await self._deliver(propagator, cached)

    async def unregister(self, propagator_id: uuid.UUID) -> None:
        """Drop a propagator and all its aliases, and close it; unknown ids are ignored."""
        async with self._lock:
            entry = self._propagators.pop(propagator_id, None)
            if entry is None:
                return
            propagator, keys = entry
            for key in keys:
                targets = self._by_alias.get(key)
                if targets is not None:
                    targets.pop(propagator_id, None)
                    if not targets:
                        del self._by_alias[key]
        await propagator.close()

    async def propagate_event(self, event: AbstractEvent) -> None:
        """Remember ``event`` as the latest of its ``(domain, id)`` and hand it to every
        propagator of that alias and of its domain's wildcard."""
        domain = event.event_domain
        domain_id = event.domain_id()
        async with self._lock:
            self._propagated += 1
            targets: dict[uuid.UUID, EventPropagator] = {}
            if domain_id is not None:
                key = (domain, domain_id)
                if self._cache_size:
                    self._cache[key] = event
                    self._cache.move_to_end(key)
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
                targets.update(self._by_alias.get(key, {}))
            targets.update(self._by_alias.get((domain, ALL_IDS), {}))
            for propagator in targets.values():
                await self._deliver(propagator, event)

    async def on_event(self, context: object, source: str, event: AbstractEvent) -> None:
        """A dispatcher callback: ``dispatcher.subscribe(E, None, hub.on_event)``."""
        await self.propagate_event(event)

    async def close_by_alias(self, domain: EventDomain, domain_id: str) -> None:
        """Close (and unregister) every propagator registered for ``(domain, domain_id)``."""
        targets = list(self._by_alias.get((domain, domain_id), {}))
        for pid in targets:
            await self.unregister(pid)

    def cached_event(self, domain: EventDomain, domain_id: str) -> AbstractEvent | None:
        """The latest event seen for ``(domain, domain_id)``, if remembered."""
        return self._cache.get((domain, domain_id))

    def forget(self, domain: EventDomain, domain_id: str) -> None:
        """Drop the remembered event of ``(domain, domain_id)``."""
        self._cache.pop((domain, domain_id), None)

    async def aclose(self) -> None:
        """Unregister and close every propagator and clear the cache; idempotent."""
        for pid in list(self._propagators):
            await self.unregister(pid)
        self._cache.clear()

    def statistics(self) -> HubStatistics:
        """A snapshot of the hub."""
        return HubStatistics(
            propagators=len(self._propagators),
            aliases=len(self._by_alias),
            cached=len(self._cache),
            propagated=self._propagated,
        )

    @staticmethod
    async def _deliver(propagator: EventPropagator, event: AbstractEvent) -> None:
        try:
            await propagator.propagate_event(event)
        except Exception:
            log.exception("EventHub: propagator %s failed on %s", propagator.id(), event)


class EventFetcher:
    """Reads broadcasts cached in the message queue (``broadcast_event_with_cache``)."""

    def __init__(self, queue: AbstractMessageQueue, *, codec: EventCodec | None = None) -> None:
        self._queue = queue
        self._codec = codec if codec is not None else EventCodec()

    async def fetch_cached_event(self, cache_id: str) -> AbstractEvent | None:
        """The event cached under ``cache_id`` (e.g. ``bgtask.<uuid>``), or ``None``."""
        envelope = await self.fetch_cached_envelope(cache_id)
        return None if envelope is None else envelope.event

    async def fetch_cached_envelope(self, cache_id: str) -> EventEnvelope | None:
        """Like :meth:`fetch_cached_event`, with the source and context of the message."""
        fields = await self._queue.fetch_cached_broadcast(cache_id)
        if fields is None:
            return None
        return self._codec.decode_fields(fields, delivery=DeliveryPattern.BROADCAST)
