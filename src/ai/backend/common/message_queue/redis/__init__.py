"""Redis Streams backend of message_queue (upstream wire format, DESIGN.md sections 3 and 4).

Anycast: stream ``events``, one consumer group per component kind (``XGROUP CREATE .. $
MKSTREAM``), read with ``XREADGROUP`` in batches; acks issued by concurrent handlers are
coalesced into one ``XACK`` per turn; sends are pipelined. Each consumer refreshes a heartbeat
key (``events:hb:<group>:<consumer>``, TTL ``heartbeat_ttl``); the reader takes over the
pending entries of consumers whose heartbeat is gone (a server-side script claims only what
that consumer still owns, ids kept) and never those of a live consumer. A nack schedules a
re-claim of the same entry after ``retry_delay`` by a script that takes it only if it is still
this consumer's (a peer that took it over meanwhile keeps it), with the delivery count of the
pending list; after ``max_deliveries`` the entry goes to ``events:dlq`` with its error history
and is acked in the same transaction.
Replayed dead letters go to ``events:replay:<group>``, which only that group reads. Retention
(``trim_retained``) never removes an entry pending or undelivered in any group.

Broadcast: ``PUBLISH events_all <upstream JSON>`` (+ ``SET <cache_id> <json> EX 300``) and, in
the same round trip, ``XADD events:broadcast MAXLEN ~ broadcast_retention``. A durable
subscriber reads that stream from the id stored under ``events:broadcast:cursor:<id>``; the
cursor moves to a message once the subscriber asks for the next one or stops iterating, so
across disconnects and restarts it gets every message in order with no gap, and once unless it
was being handled when the process died or its cursor could not be stored (then it comes again:
at-least-once).

Guarantees: the conformance suite [tests/message_queue/test_queue_conformance.py] and
[tests/message_queue/test_redis.py]: byte-identical upstream fields and JSON
[test_redis.py::test_wire_format_byte_for_byte]; nothing pending is trimmed
[test_redis.py::test_trim_never_drops_pending]; a SIGKILLed consumer process loses nothing
[test_redis.py::test_kill_9_consumer_loses_nothing]; malformed entries are dead-lettered
[test_redis.py::test_malformed_entries_dead_lettered]; a redelivery never takes a message
from the peer that took it over, and reports the pending list's count
[test_redis.py::test_retry_never_takes_back_a_reclaimed_message]
[test_redis.py::test_redelivery_count_comes_from_the_pending_list]; the flow resumes after a
Sentinel failover and, with ``wait_replicas``, no acknowledged publish is lost
[test_redis.py::test_sentinel_failover_during_flow].

Limits:
- standalone and Sentinel targets only: its keys span several slots, so a Cluster target is
  refused [tests/clients/valkey/test_cluster.py::test_cluster_target];
- a consumer without a heartbeat key (an upstream component in the same group) counts as dead:
  its entries idle longer than ``heartbeat_ttl`` are taken over
  [test_redis.py::test_consumer_without_heartbeat_is_taken_over];
- liveness is the heartbeat key: a consumer whose heartbeat cannot reach Redis for longer than
  ``heartbeat_ttl`` while its peers' can (a partition between it and Redis only) is taken for
  dead and a peer handles its messages again (it never takes them back)
  [test_redis.py::test_retry_never_takes_back_a_reclaimed_message];
- after a stall or outage of Redis longer than ``heartbeat_ttl`` every key expires; so after any
  failed call of its own, and after ``open()``, a consumer takes no work from a silent peer
  (no key, not marked ``closed``) until it has beaten without a gap for ``heartbeat_ttl``: live
  peers that beat again within that time keep their work, and a dead one's is taken that much
  later [test_redis.py::test_outage_longer_than_heartbeat_ttl_steals_nothing];
- a group that stops consuming holds back trimming until it resumes or is destroyed
  [test_redis.py::test_trim_never_drops_pending];
- a nacked message comes back after ``retry_delay`` plus at most ``block_seconds``, and a
  replayed dead letter within ``reclaim_interval``
  [test_queue_conformance.py::test_replay_reaches_only_that_group];
- upstream producers on the same Redis trim ``events`` to ~128 entries on every add; that
  cannot be prevented from here, so do not mix them with consumers that need the guarantee.
"""

from __future__ import annotations

from ._base import heartbeat_key
from .queue import RedisMessageQueue

__all__ = ("RedisMessageQueue", "heartbeat_key")
