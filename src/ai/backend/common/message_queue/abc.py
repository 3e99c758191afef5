"""The message-queue interface: anycast to consumer groups, broadcast to every subscriber.

Backends: :class:`~.redis.RedisMessageQueue` (Redis Streams + pub/sub, DESIGN.md section 3)
and :class:`~.memory.MemoryMessageQueue` (in process). Both pass the same conformance suite,
``tests/message_queue/test_queue_conformance.py``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, Mapping, Sequence

from ..aio import AsyncResource
from .types import AnycastMessage, BroadcastMessage, DeadLetter, QueueStatistics

__all__ = ("AbstractMessageQueue",)


class AbstractMessageQueue(AsyncResource):
    """One component's connection to the event bus.

    Anycast: every message sent reaches every consumer group, and inside a group exactly one
    live consumer at a time. Delivery is at-least-once with no silent loss: a message stays
    pending until it is acked, a dead consumer's pending messages are reclaimed (keeping their
    id), a nacked message is delivered again after ``retry_delay``, and after
    ``max_deliveries`` it is moved to the dead-letter stream with its error history. Messages
    are delivered in stream order, redeliveries aside. ``consume()`` never has more than
    ``max_in_flight`` unacked messages out.

    Broadcast: every subscriber receives every broadcast sent while it is subscribed, in
    order. In durable mode it also receives, on (re)subscribing under the same
    ``subscriber_id``, those sent while it was away (within the retention), in order and with
    no gap: at least once, and once only if the position of the last one it saw was stored
    (not when a crash cut its handling, or the store failed).

    ``async with`` opens the client; ``aclose()`` closes it and is idempotent. Errors are
    :class:`~.exceptions.MessageQueueError` subclasses, never a backend's own.
    """

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and start background work (heartbeat, reclaimer); idempotent.

        If it fails or is cancelled, nothing stays open."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop intake, stop background work, release connections; idempotent.

        A ``consume()`` iterator hands out nothing once this began and ends by itself; a read
        it had in flight is waited for (bounded) before the consumer leaves its group.
        Messages delivered and not acked stay pending and are reclaimed by other consumers;
        none is lost.
        """

    @abc.abstractmethod
    async def abort(self) -> None:
        """Stop at once without any cleanup, as if the process had died (crash tests, fatal
        exits): the heartbeat is left to expire, so this consumer's pending messages are
        reclaimed only after ``heartbeat_ttl``. Idempotent; ``aclose()`` after it is a no-op."""

    # -- anycast: produce -------------------------------------------------------------

    @abc.abstractmethod
    async def send(self, fields: Mapping[str, str]) -> str:
        """Append one anycast message; returns its id once the backend has accepted it.

        A failure raises (``QueueUnavailable``); it is never swallowed. If cancelled, the
        message may or may not have been written.
        """

    @abc.abstractmethod
    async def send_batch(self, batch: Sequence[Mapping[str, str]]) -> list[str]:
        """Append several anycast messages in one round trip, in order; returns their ids.

        If it fails or is cancelled, any prefix of the batch may have been written."""

    # -- anycast: consume -------------------------------------------------------------

    @abc.abstractmethod
    def consume(self) -> AsyncGenerator[AnycastMessage, None]:
        """Yield anycast messages for this client's group until the client closes.

        Each must be settled with :meth:`ack`, :meth:`nack` or :meth:`dead_letter`. Reading
        pauses while ``max_in_flight`` messages are unsettled. Raises ``QueueConfigError``
        when the client has no group. Close the generator when you stop early (``async with
        contextlib.aclosing(q.consume()) as it``); messages it read but did not hand out are
        delivered again on the next ``consume()``. One ``consume()`` at a time per client: an
        iterator takes that slot on its first step, so one closed before it ever ran leaves
        the client free.
        """

    @abc.abstractmethod
    async def ack(self, *msg_ids: str) -> None:
        """Settle messages as handled (one round trip for all); they are never delivered again
        to this group. Acking an unknown or already acked id is a no-op.

        Every id is checked first: if one is not a message id (``<ms>-<seq>``, maybe with the
        replay prefix), ``InvalidMessage`` is raised and nothing is settled."""

    @abc.abstractmethod
    async def nack(self, msg_id: str, error: str) -> None:
        """Settle a message as failed: deliver it again after ``retry_delay``, or move it to
        the dead-letter stream if it has been delivered ``max_deliveries`` times.

        If cancelled, the redelivery is still scheduled (its error may be missing from the
        history); a dead-letter move that fails or is cancelled is retried as
        :meth:`dead_letter`'s is. Raises ``UnknownMessage`` for an id not in flight at this
        client."""

    @abc.abstractmethod
    async def dead_letter(self, msg_id: str, error: str) -> None:
        """Move a message to the dead-letter stream at once (undecodable, malformed).

        Atomic: if it fails (raised) or is cancelled, the message is either dead-lettered and
        acked, or still pending; in the latter case it no longer counts as in flight and the
        move is retried after ``retry_delay`` (it is not handed out again)."""

    @abc.abstractmethod
    async def mark_handled(self, msg_id: str, handler: str) -> None:
        """Record that ``handler`` succeeded on ``msg_id`` (kept until the message is acked).

        If cancelled, the record may or may not have been stored."""

    @abc.abstractmethod
    async def handled(self, msg_id: str) -> frozenset[str]:
        """The handlers recorded by :meth:`mark_handled` for a message of this group."""

    # -- broadcast --------------------------------------------------------------------

    @abc.abstractmethod
    async def broadcast(self, fields: Mapping[str, str], *, cache_id: str | None = None) -> None:
        """Send a broadcast to every subscriber (and to the durable stream).

        With ``cache_id`` the message is also kept under that key for
        ``BROADCAST_CACHE_TTL`` seconds for :meth:`fetch_cached_broadcast`. A failure raises
        (``QueueUnavailable``); if cancelled, it may or may not have been sent.
        """

    @abc.abstractmethod
    async def fetch_cached_broadcast(self, cache_id: str) -> Mapping[str, str] | None:
        """The last broadcast sent with ``cache_id``, or ``None`` if absent or expired."""

    @abc.abstractmethod
    def subscribe(self) -> AsyncGenerator[BroadcastMessage, None]:
        """Yield broadcasts (in this client's ``broadcast_mode``) until the client closes.

        The iterator registers with the server on its first step (its first ``anext``), not
        when ``subscribe()`` returns, and an iterator closed before that holds nothing: in
        volatile mode a broadcast sent before the first step is not received.
        ``statistics().subscriptions`` counts the iterators registered with the server: a
        broadcast sent after it went up is received. In durable mode a message counts as seen
        once the subscriber asks for the next one or closes the iterator; one whose handling
        was cut by a crash comes again. One durable ``subscribe()`` at a time per client (taken
        on the iterator's first step, like ``consume()``'s)."""

    # -- dead letters -----------------------------------------------------------------

    @abc.abstractmethod
    async def list_dead_letters(
        self, *, limit: int = 100, after: str | None = None
    ) -> list[DeadLetter]:
        """Dead letters oldest first, ``limit`` at most, starting after the id ``after``."""

    @abc.abstractmethod
    async def replay_dead_letters(self, dlq_ids: Sequence[str] | None = None) -> list[str]:
        """Deliver dead letters (all when ``None``) again to the group that gave up on them,
        and to no other group, as new messages; remove them from the dead-letter stream and
        return the new message ids. Each letter moves atomically: if cancelled, those moved so
        far are replayed and the rest stay dead letters."""

    @abc.abstractmethod
    async def purge_dead_letters(self, dlq_ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (all when ``None``); returns how many were deleted."""

    # -- introspection ----------------------------------------------------------------

    @abc.abstractmethod
    def statistics(self) -> QueueStatistics:
        """A snapshot of this client's consumer counters."""
