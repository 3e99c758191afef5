"""etcd client: upstream Backend.AI's key layout and scopes on etcd v3, with real failover.

:class:`AsyncEtcd` is the interface; :class:`EtcdClient` talks to a real etcd (cluster) through
``aetcd``; :class:`MemoryEtcd` keeps the same semantics in process (revisions, prefix watches,
leases on an injectable clock). Keys live under ``/sorna/<namespace>/`` plus a scope prefix;
``put_prefix``/``get_prefix`` flatten nested dicts with quoted components, as upstream does.

Guarantees:
- reads in the ``MERGED`` scope see node over scaling group over global, nested dicts merged
  [tests/clients/etcd/test_etcd_conformance.py::test_merged_get_prefix_prefers_node];
- ``put_prefix`` then ``get_prefix`` returns the same nested dict, whatever the characters in its
  keys [tests/clients/etcd/test_etcd_conformance.py::test_put_prefix_round_trip_quotes_keys];
- a watch delivers every change after it is entered, in revision order, exactly once, also
  across a broken stream (it resumes at the last seen revision + 1)
  [tests/clients/etcd/test_memory.py::test_watch_resumes_without_gap_after_disconnect]
  [tests/clients/etcd/test_etcd_client.py::test_watch_survives_server_restart];
- a lease kept alive by its client outlives its TTL; once revoked or lost its keys are gone
  [tests/clients/etcd/test_etcd_conformance.py::test_keepalive_keeps_lease_past_ttl];
- a refused keep-alive (any ``EtcdError``, throttling included) is a failed attempt: the lease is
  declared lost only after a whole TTL without success, and other leases are not affected
  [tests/clients/etcd/test_memory.py::test_refused_keepalive_is_a_failed_attempt_not_a_crash]
  [tests/clients/etcd/test_memory.py::test_keepalive_refused_for_a_whole_ttl_marks_the_lease_lost];
- a lease nobody keeps alive any more is marked lost, and ``grant_lease`` then raises
  ``EtcdClosed``
  [tests/clients/etcd/test_memory.py::test_a_crashed_keepalive_loop_marks_its_leases_lost];
- ``replace`` is an atomic compare-and-swap
  [tests/clients/etcd/test_etcd_conformance.py::test_replace_is_compare_and_swap];
- with several endpoints, killing one member of a 3-member cluster does not fail calls, watches
  or keep-alives [tests/clients/etcd/test_etcd_client.py::test_cluster_member_kill_keeps_serving];
- a config watched in etcd is re-validated and swapped atomically on change; a bad value is
  rejected and the old config stays
  [tests/clients/etcd/test_config.py::test_bad_value_is_rejected_and_old_config_stays];
- only :mod:`~.exceptions` errors leave a public call
  [tests/clients/etcd/test_etcd_client.py::test_unreachable_raises_etcd_unavailable].

Limits:
- a watch cannot resume from a compacted revision: it raises ``EtcdWatchCompacted``
  [tests/clients/etcd/test_etcd_conformance.py::test_watch_from_compacted_revision_raises];
- values are text: numbers and booleans come back as strings, as upstream.
"""

from ._keys import flatten_dict, unflatten_pairs
from .abc import AsyncEtcd, EtcdLease, EtcdWatch, FlatSnapshot
from .client import EtcdClient
from .config import ConfigWatchStatistics, EtcdConfigLayer, EtcdConfigWatcher
from .exceptions import (
    EtcdClosed,
    EtcdCompareFailed,
    EtcdError,
    EtcdInvalidArgument,
    EtcdLeaseNotFound,
    EtcdTimeout,
    EtcdUnavailable,
    EtcdWatchCompacted,
)
from .memory import MemoryEtcd, MemoryEtcdServer
from .types import (
    Clock,
    ConfigScopes,
    EtcdStatistics,
    ManualClock,
    NestedStrDict,
    NestedStrMapping,
    SystemClock,
    WatchEvent,
    WatchEventType,
    make_scope_prefix_map,
    quote,
    unquote,
)

__all__ = (
    "AsyncEtcd",
    "Clock",
    "ConfigScopes",
    "ConfigWatchStatistics",
    "EtcdClient",
    "EtcdClosed",
    "EtcdCompareFailed",
    "EtcdConfigLayer",
    "EtcdConfigWatcher",
    "EtcdError",
    "EtcdInvalidArgument",
    "EtcdLease",
    "EtcdLeaseNotFound",
    "EtcdStatistics",
    "EtcdTimeout",
    "EtcdUnavailable",
    "EtcdWatch",
    "EtcdWatchCompacted",
    "FlatSnapshot",
    "ManualClock",
    "MemoryEtcd",
    "MemoryEtcdServer",
    "NestedStrDict",
    "NestedStrMapping",
    "SystemClock",
    "WatchEvent",
    "WatchEventType",
    "flatten_dict",
    "make_scope_prefix_map",
    "quote",
    "unflatten_pairs",
    "unquote",
)
