"""Service discovery: where Backend.AI components register and find each other.

Records are upstream's (:class:`ServiceMetadata`, DESIGN.md section 3) and are stored as
upstream stores them, so components built on this package and upstream ones share a registry.
Backends: :class:`EtcdServiceDiscovery` (records under an etcd lease),
:class:`RedisServiceDiscovery` (hashes with a TTL), :class:`MemoryServiceDiscovery`;
:class:`CachedServiceDiscovery` serves lookups from a watch-fed local copy of the etcd records.
:func:`make_prometheus_sd_handler` is an aiohttp handler for Prometheus' ``http_sd_configs``;
:class:`ServiceRegistrar` keeps one record registered, heartbeated and announced with upstream's
``service_registered`` / ``service_deregistered`` events.

Guarantees:
- every backend passes one conformance suite: register, deregister, heartbeat, discover all,
  discover a group (``[]`` when empty), get one (``ServiceNotFound``), records kept alive while
  their owner is open and gone within the TTL after it crashed
  [tests/service_discovery/test_discovery_conformance.py];
- a service killed with SIGKILL disappears from discovery and from the Prometheus SD output
  within its TTL + 1 s
  [tests/service_discovery/test_proof.py::test_killed_process_record_disappears];
- a real Prometheus discovers the registered targets and scrapes them
  [tests/service_discovery/test_proof.py::test_real_prometheus_discovers_and_scrapes];
- with a 3-member etcd, killing the leader member does not stop registration, discovery or the
  cache's watch
  [tests/service_discovery/test_proof.py::test_etcd_leader_kill_keeps_discovery_working];
- lookups through the cache do not touch etcd
  [tests/service_discovery/test_cache.py::test_lookups_do_not_touch_etcd];
- names that would break a backend's keys (an empty group, a group with ``/``, an empty label
  name) are refused when the record is built, the same on every backend, and any other group
  name round-trips
  [tests/service_discovery/test_discovery_conformance.py::test_names_that_break_keys_are_refused]
  [tests/service_discovery/test_discovery_conformance.py::test_unusual_group_names_round_trip].

Limits:
- health is the heartbeat age: a record whose service stopped heartbeating but whose process
  still keeps it alive is listed, and flagged unhealthy (filtered from the Prometheus output)
  [tests/service_discovery/test_discovery_conformance.py::test_health_status_follows_heartbeat].
"""

from .abc import AbstractServiceDiscovery
from .cache import CachedServiceDiscovery, CacheStatistics
from .etcd import DEFAULT_ETCD_PREFIX, EtcdServiceDiscovery
from .exceptions import (
    ServiceDiscoveryClosed,
    ServiceDiscoveryError,
    ServiceDiscoveryUnavailable,
    ServiceNotFound,
)
from .memory import MemoryServiceDiscovery, MemoryServiceRegistry
from .prometheus import (
    META_LABEL_PREFIX,
    make_prometheus_sd_handler,
    prometheus_label_name,
    prometheus_sd_targets,
)
from .redis import DEFAULT_REDIS_PREFIX, RedisServiceDiscovery
from .registrar import RegistrarStatistics, ServiceRegistrar, registered_event
from .types import (
    DEFAULT_HEARTBEAT_TIMEOUT,
    HealthStatus,
    RecordsRestored,
    RecordsRestoredObserver,
    ServiceDiscoveryStatistics,
    ServiceEndpoint,
    ServiceKey,
    ServiceMetadata,
    WallClock,
    group_name_problem,
)

ServiceDiscovery = AbstractServiceDiscovery
"""Upstream's name of the interface."""

__all__ = (
    "DEFAULT_ETCD_PREFIX",
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_REDIS_PREFIX",
    "META_LABEL_PREFIX",
    "AbstractServiceDiscovery",
    "CacheStatistics",
    "CachedServiceDiscovery",
    "EtcdServiceDiscovery",
    "HealthStatus",
    "MemoryServiceDiscovery",
    "MemoryServiceRegistry",
    "RecordsRestored",
    "RecordsRestoredObserver",
    "RedisServiceDiscovery",
    "RegistrarStatistics",
    "ServiceDiscovery",
    "ServiceDiscoveryClosed",
    "ServiceDiscoveryError",
    "ServiceDiscoveryStatistics",
    "ServiceDiscoveryUnavailable",
    "ServiceEndpoint",
    "ServiceKey",
    "ServiceMetadata",
    "ServiceNotFound",
    "ServiceRegistrar",
    "WallClock",
    "group_name_problem",
    "make_prometheus_sd_handler",
    "prometheus_label_name",
    "prometheus_sd_targets",
    "registered_event",
)
