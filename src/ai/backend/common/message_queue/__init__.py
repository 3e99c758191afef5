"""The event bus transport: anycast to consumer groups and broadcast to subscribers.

:class:`AbstractMessageQueue` is the interface; :class:`~.redis.RedisMessageQueue` (Redis
Streams + pub/sub, the upstream wire format of DESIGN.md section 3) and
:class:`MemoryMessageQueue` (one process, a :class:`MemoryBroker` as the server) implement it.
``RedisMessageQueue`` is imported from ``ai.backend.common.message_queue.redis`` so that this
package can be imported without touching redis.

Guarantees (both backends unless marked):
- every consumer group receives every anycast message, and one consumer per group handles it
  [tests/message_queue/test_queue_conformance.py::test_every_group_sees_every_message]
  [tests/message_queue/test_queue_conformance.py::test_one_consumer_per_group];
- messages are delivered in stream order, redeliveries aside
  [tests/message_queue/test_queue_conformance.py::test_stream_order];
- a message stays pending until acked; a nacked one comes back with the same id and a growing
  ``delivery_count`` after ``retry_delay``
  [tests/message_queue/test_queue_conformance.py::test_nack_redelivers_same_id];
- after ``max_deliveries`` a message is dead-lettered with its error, attempt count and error
  history; dead letters can be listed, replayed to the group that gave up only, and purged
  [tests/message_queue/test_queue_conformance.py::test_dead_letter_after_max_deliveries]
  [tests/message_queue/test_queue_conformance.py::test_replay_reaches_only_that_group]
  [tests/message_queue/test_queue_conformance.py::test_list_and_purge_dead_letters];
- a dead consumer's pending messages are reclaimed (same id); a live consumer's slow handler is
  never stolen [tests/message_queue/test_queue_conformance.py::test_dead_consumer_is_reclaimed]
  [tests/message_queue/test_queue_conformance.py::test_live_slow_consumer_is_not_stolen];
  one restarted under the same ``consumer_id`` gets its own pending messages back
  [tests/message_queue/test_queue_conformance.py::test_restarted_consumer_gets_its_own_pending_back];
- per-handler progress (``mark_handled``/``handled``) survives a redelivery and is dropped on
  ack [tests/message_queue/test_queue_conformance.py::test_handled_survives_redelivery];
- ``consume()`` never has more than ``max_in_flight`` unsettled messages out
  [tests/message_queue/test_queue_conformance.py::test_backpressure_bounds_in_flight]
  [tests/message_queue/test_queue_conformance.py::test_redeliveries_respect_backpressure];
- closing a consumer at any point of a steady flow loses nothing, and its iterator hands out
  nothing after ``aclose()``
  [tests/message_queue/test_queue_conformance.py::test_close_under_flow_loses_nothing]
  [tests/message_queue/test_redis.py::test_close_during_a_blocked_read_loses_nothing] (Redis);
- closing a ``consume()`` or durable ``subscribe()`` iterator that never ran leaves the client
  free to start another
  [tests/message_queue/test_queue_conformance.py::test_closing_an_unstarted_iterator_frees_the_client];
- durable broadcast: a subscriber that comes back under the same ``subscriber_id`` gets what it
  missed, in order, with no gap, each message once when its position was stored
  [tests/message_queue/test_queue_conformance.py::test_durable_broadcast_resumes];
- entries of the upstream format (with and without ``_retry_count``) are decoded, and the same
  fields / broadcast JSON are written for the same input
  [tests/message_queue/test_queue_conformance.py::test_upstream_envelopes_round_trip]
  [tests/message_queue/test_redis.py::test_wire_format_byte_for_byte] (Redis);
- Redis: retention never trims an entry pending (or not yet delivered) in any group
  [tests/message_queue/test_redis.py::test_trim_never_drops_pending];
- Redis: a stall of the server longer than ``heartbeat_ttl`` does not make live consumers'
  work be taken over
  [tests/message_queue/test_redis.py::test_outage_longer_than_heartbeat_ttl_steals_nothing];
- Redis: a consumer process killed with SIGKILL mid-batch loses nothing
  [tests/message_queue/test_redis.py::test_kill_9_consumer_loses_nothing];
- Redis: malformed entries (missing fields, non-UTF-8) are dead-lettered with a reason and the
  consumer keeps going [tests/message_queue/test_redis.py::test_malformed_entries_dead_lettered].

Limits:
- delivery is at-least-once: a handler may see a message again after a crash or a failover
  [tests/message_queue/test_redis.py::test_kill_9_consumer_loses_nothing];
- a volatile subscriber misses what is broadcast while it is away (upstream pub/sub)
  [tests/message_queue/test_queue_conformance.py::test_volatile_broadcast_misses_while_away];
- durable broadcast is at-least-once, not exactly-once: a message whose handling a crash cut,
  or whose position could not be stored (Redis unreachable at that moment), comes again after
  a restart
  [tests/message_queue/test_redis.py::test_durable_broadcast_repeats_when_its_cursor_is_not_stored];
- Redis: without ``wait_replicas`` a failover can lose publishes acknowledged just before it;
  with it none is lost [tests/message_queue/test_redis.py::test_sentinel_failover_during_flow].
"""

from __future__ import annotations

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
from .memory import ManualClock, MemoryBroker, MemoryMessageQueue
from .types import (
    ANYCAST_STREAM,
    BROADCAST_CACHE_TTL,
    BROADCAST_CHANNEL,
    BROADCAST_STREAM,
    DEAD_LETTER_STREAM,
    REPLAY_ID_PREFIX,
    REPLAY_STREAM_PREFIX,
    AnycastMessage,
    BroadcastMessage,
    BroadcastMode,
    DeadLetter,
    QueueConfig,
    QueueStatistics,
)

__all__ = (
    "ANYCAST_STREAM",
    "BROADCAST_CACHE_TTL",
    "BROADCAST_CHANNEL",
    "BROADCAST_STREAM",
    "DEAD_LETTER_STREAM",
    "REPLAY_ID_PREFIX",
    "REPLAY_STREAM_PREFIX",
    "AbstractMessageQueue",
    "AnycastMessage",
    "BroadcastMessage",
    "BroadcastMode",
    "DeadLetter",
    "InvalidMessage",
    "ManualClock",
    "MemoryBroker",
    "MemoryMessageQueue",
    "MessageQueueError",
    "QueueClosed",
    "QueueConfig",
    "QueueConfigError",
    "QueueStatistics",
    "QueueTimeout",
    "QueueUnavailable",
    "UnknownMessage",
)
