"""Records and wire names of the message queue (DESIGN.md section 3).

An anycast message is one Redis stream entry; its ``fields`` are the upstream entry fields
(``name``, ``source``, ``payload``, ``metadata`` and ``_retry_count`` when > 0), as text.
A broadcast message is the upstream ``events_all`` JSON object, decoded to the same four fields.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from .exceptions import QueueConfigError

__all__ = (
    "ANYCAST_STREAM",
    "BROADCAST_CACHE_TTL",
    "BROADCAST_CHANNEL",
    "BROADCAST_STREAM",
    "DEAD_LETTER_STREAM",
    "REPLAY_ID_PREFIX",
    "REPLAY_STREAM_PREFIX",
    "AnycastMessage",
    "BroadcastMessage",
    "BroadcastMode",
    "DeadLetter",
    "QueueConfig",
    "QueueStatistics",
)

ANYCAST_STREAM = "events"
"""Stream key of anycast events (upstream's)."""
BROADCAST_CHANNEL = "events_all"
"""Pub/sub channel of broadcast events (upstream's)."""
BROADCAST_CACHE_TTL = 300
"""Seconds a cached broadcast (``SET <cache_id> <json> EX 300``) lives (upstream's)."""
DEAD_LETTER_STREAM = "events:dlq"
"""Stream key of dead-lettered anycast messages (ours; invisible to upstream peers)."""
BROADCAST_STREAM = "events:broadcast"
"""Stream key of durable broadcasts (ours; invisible to upstream peers)."""
REPLAY_STREAM_PREFIX = "events:replay:"
"""Prefix of the per-group stream that replayed dead letters go to (ours): only consumers of
that group read ``events:replay:<group>``, so upstream peers and other groups never see them."""
REPLAY_ID_PREFIX = "replay:"
"""``AnycastMessage.msg_id`` of a message read from the replay stream is this prefix plus its
entry id there, so ids from the two streams never collide."""


class BroadcastMode(enum.StrEnum):
    """How a broadcast subscriber receives messages."""

    VOLATILE = "volatile"
    """Upstream pub/sub only: a subscriber that is down misses what was sent meanwhile."""
    DURABLE = "durable"
    """Read from the durable broadcast stream from the subscriber's last stored id: in order,
    nothing missed within the retention window, at least once per subscriber id (a message
    comes again if its handling was cut by a crash or its position could not be stored)."""


@dataclass(frozen=True, slots=True)
class AnycastMessage:
    """One delivery of an anycast stream entry to one consumer of a group."""

    msg_id: str
    """The stream entry id; it never changes across redeliveries."""
    fields: Mapping[str, str]
    """The entry fields as written by the producer."""
    delivery_count: int = 1
    """How many times the group has delivered this entry (1 on first delivery)."""


@dataclass(frozen=True, slots=True)
class BroadcastMessage:
    """One broadcast as seen by one subscriber."""

    fields: Mapping[str, str]
    """``name``, ``source``, ``payload``, ``metadata`` (text)."""
    msg_id: str | None = None
    """The durable stream id (durable mode), ``None`` for volatile pub/sub messages."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An anycast message that exhausted its deliveries, with why."""

    dlq_id: str
    """Id of the entry in the dead-letter stream (used to replay or delete it)."""
    original_id: str
    """Id the message had in the anycast stream."""
    group: str
    """The consumer group that gave up on it."""
    fields: Mapping[str, str]
    """The original entry fields, unchanged."""
    error: str
    """The last error reported for it (or why it could not be decoded)."""
    attempts: int
    """How many deliveries were made before giving up."""
    history: tuple[str, ...] = field(default=())
    """Errors of earlier attempts, oldest first (bounded)."""


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    """A snapshot of one queue client's consumer state (for tests and metrics)."""

    in_flight: int
    """Messages handed to the application and not yet acked or nacked."""
    max_in_flight: int
    """The backpressure bound: reading pauses while ``in_flight`` reaches it."""
    delivered: int
    """Messages delivered since the client opened (redeliveries included)."""
    acked: int
    """Messages acked since the client opened."""
    dead_lettered: int
    """Messages this client moved to the dead-letter stream."""
    retry_waiting: int = 0
    """Nacked messages waiting for ``retry_delay`` before their next delivery."""
    reclaimed: int = 0
    """Messages taken over from dead consumers since the client opened."""
    subscriptions: int = 0
    """Broadcast subscriptions currently registered with the server (``subscribe()`` iterators
    that will see every broadcast sent from now on)."""


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Settings of one message-queue client (one per process and component)."""

    source: str = "unknown"
    """Producer id written as ``source`` by callers that build fields (informational)."""
    group: str | None = None
    """Consumer group (component kind: ``manager``, ``agent``, ...); required to consume."""
    consumer_id: str | None = None
    """Unique consumer name inside the group; a random one when ``None``."""
    max_deliveries: int = 5
    """After this many deliveries a nacked message goes to the dead-letter stream."""
    max_in_flight: int = 256
    """Backpressure bound: messages delivered and not yet acked/nacked per consumer."""
    batch_size: int = 64
    """Entries read per XREADGROUP call."""
    block_seconds: float = 1.0
    """How long one read blocks waiting for new entries."""
    heartbeat_ttl: float = 10.0
    """A consumer whose heartbeat is older than this is dead; its pending entries are reclaimed."""
    reclaim_interval: float = 2.0
    """How often the reclaimer looks for pending entries of dead consumers."""
    retry_delay: float = 0.5
    """Delay before a nacked message is delivered again."""
    anycast_trim_maxlen: int = 10_000
    """When the anycast stream holds more entries than this, the trimmer removes the acked
    history: every entry below the oldest one a group still needs (pending or undelivered),
    so between 0 and about this many acked entries are kept; pending and undelivered entries
    are never trimmed, whatever the length."""
    broadcast_mode: BroadcastMode = BroadcastMode.VOLATILE
    """How ``subscribe()`` receives broadcasts; producers always write both forms."""
    subscriber_id: str | None = None
    """Durable subscribers resume from the last id seen under this name."""
    broadcast_retention: int = 10_000
    """Durable broadcast entries kept (approximate)."""
    dead_letter_maxlen: int = 100_000
    """Dead letters kept (approximate)."""
    anycast_trim_max_age: float | None = None
    """Also trim acked anycast history older than this many seconds (never a pending entry)."""
    handled_ttl: float = 86_400.0
    """Seconds a per-handler progress record (``mark_handled``) outlives an unacked message."""
    error_history_limit: int = 10
    """Errors kept per message for its dead letter's ``history``."""
    durable_cursor_ttl: float = 7 * 86_400.0
    """Seconds a durable subscriber's stored position outlives its last use."""
    wait_replicas: int = 0
    """After each send/broadcast, wait until this many replicas acknowledged it (Redis
    ``WAIT``); a publish that is not acknowledged in ``wait_timeout`` raises. 0 = no wait."""
    wait_timeout: float = 1.0
    """Seconds ``wait_replicas`` waits for the replicas."""

    def __post_init__(self) -> None:
        at_least_one = (
            "max_deliveries", "max_in_flight", "batch_size", "anycast_trim_maxlen",
            "broadcast_retention", "dead_letter_maxlen", "error_history_limit",
        )  # fmt: skip
        positive = (
            "heartbeat_ttl", "reclaim_interval", "handled_ttl", "durable_cursor_ttl",
            "wait_timeout",
        )  # fmt: skip
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise self._invalid(name, "must be >= 1")
        for name in positive:
            if not getattr(self, name) > 0:
                raise self._invalid(name, "must be > 0")
        for name in ("block_seconds", "retry_delay", "wait_replicas"):
            if getattr(self, name) < 0:
                raise self._invalid(name, "must be >= 0")
        if self.anycast_trim_max_age is not None and not self.anycast_trim_max_age > 0:
            raise self._invalid("anycast_trim_max_age", "must be > 0 or None")
        for name in ("group", "consumer_id", "subscriber_id"):
            if getattr(self, name) == "":
                raise self._invalid(name, "must not be empty")

    def _invalid(self, name: str, rule: str) -> QueueConfigError:
        value = getattr(self, name)
        return QueueConfigError(f"QueueConfig.{name} {rule}, got {value!r}", data={"field": name})
