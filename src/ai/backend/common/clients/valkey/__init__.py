"""Valkey/Redis client on redis-py asyncio + hiredis: single server, Sentinel or Cluster.

:class:`ValkeyTarget` says where to connect (and the logical db, TLS, request timeout);
:class:`ValkeyClient` is the pooled client whose every call passes through a
:class:`CallHook` (the resilience layer's seam), under ``asyncio.timeout``, with redis errors
mapped to :class:`ValkeyError` subclasses; :class:`ValkeyStreamClient` adds the typed Streams
commands the message queue uses; :class:`ValkeyBreakerStateStore` shares circuit breakers'
open state between processes (the resilience layer's ``BreakerStateStore`` on Redis).

Guarantees:
- no ``redis.*`` error leaves a public call
  [tests/clients/valkey/test_client.py::test_errors_are_mapped];
- the request timeout is enforced without redis-py's ``socket_timeout`` (no ``wait_for``
  around each command) [tests/clients/valkey/test_client.py::test_request_timeout];
- reconnects by itself after a server restart
  [tests/clients/valkey/test_client.py::test_reconnects_after_server_restart];
- Sentinel: follows a failover and only uses a server whose ``ROLE`` is master
  [tests/clients/valkey/test_client.py::test_sentinel_follows_failover]
  [tests/clients/valkey/test_client.py::test_role_check_refuses_a_replica];
- at most ``max_connections`` calls use a connection at once; the others wait for a free one
  within their time limit, then raise ``ValkeyPoolExhausted`` naming the pool size
  [tests/clients/valkey/test_client.py::test_pool_waits_for_a_free_connection]
  [tests/clients/valkey/test_client.py::test_pool_wait_timeout_names_the_pool];
- every call goes through the hook (but the breaker state store's), which sees mapped errors
  [tests/clients/valkey/test_client.py::test_hook_sees_every_call];
- breakers of one name in several processes share their open state through
  ``ValkeyBreakerStateStore``, which passes the store conformance suite
  [tests/resilience/test_store_conformance.py::test_trip_expires]
  [tests/clients/valkey/test_breaker_store.py::test_two_breakers_share_the_open_state];
- stream trimming never removes an entry pending or undelivered in any group
  [tests/clients/valkey/test_stream.py::test_trim_retained_keeps_pending_and_undelivered].

- TLS verifies the server against the given CA (or not, when told)
  [tests/clients/valkey/test_tls.py::test_tls_connection_verifies_the_server];
- a Cluster target routes each command by its key through redis-py's cluster client
  [tests/clients/valkey/test_cluster.py::test_cluster_target].

Limits: on a Cluster, multi-key commands must stay in one slot and there is no logical db
[tests/clients/valkey/test_types.py::test_cluster_target_rejects_db].
"""

from __future__ import annotations

from .breaker_store import DEFAULT_BREAKER_PREFIX, ValkeyBreakerStateStore
from .client import (
    DEFAULT,
    RAW_REPLY_COMMANDS,
    ValkeyClient,
    ValkeySubscription,
    map_redis_error,
    pack_command,
)
from .exceptions import (
    ValkeyAuthenticationError,
    ValkeyClosed,
    ValkeyConfigError,
    ValkeyConnectionError,
    ValkeyError,
    ValkeyNoGroup,
    ValkeyPoolExhausted,
    ValkeyReadOnly,
    ValkeyResponseError,
    ValkeyTimeout,
)
from .hooks import CallHook, passthrough
from .stream import (
    ClaimedEntry,
    GroupInfo,
    PendingEntry,
    PendingSummary,
    StreamEntry,
    ValkeyStreamClient,
)
from .types import TLSOptions, ValkeyClientStatistics, ValkeyMode, ValkeyTarget

__all__ = (
    "DEFAULT",
    "DEFAULT_BREAKER_PREFIX",
    "RAW_REPLY_COMMANDS",
    "CallHook",
    "ClaimedEntry",
    "GroupInfo",
    "PendingEntry",
    "PendingSummary",
    "StreamEntry",
    "TLSOptions",
    "ValkeyAuthenticationError",
    "ValkeyBreakerStateStore",
    "ValkeyClient",
    "ValkeyClientStatistics",
    "ValkeyClosed",
    "ValkeyConfigError",
    "ValkeyConnectionError",
    "ValkeyError",
    "ValkeyMode",
    "ValkeyNoGroup",
    "ValkeyPoolExhausted",
    "ValkeyReadOnly",
    "ValkeyResponseError",
    "ValkeyStreamClient",
    "ValkeySubscription",
    "ValkeyTarget",
    "ValkeyTimeout",
    "map_redis_error",
    "pack_command",
    "passthrough",
)
