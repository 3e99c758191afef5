"""Health checks (layer 5): liveness, readiness and informational probes over the dependencies.

A :class:`HealthProbe` runs :class:`HealthChecker` s concurrently, each under its own timeout,
and keeps each dependency's status, latency and last error; :func:`add_health_routes` serves
them as JSON (``/health/live``, ``/health/ready``, ``/health``; 503 when unhealthy). Checkers:
:class:`ValkeyHealthChecker` (PING plus ``ROLE``: a replica is unhealthy where a master is
required), :class:`EtcdHealthChecker`, :class:`HTTPHealthChecker`, :class:`AgentRPCHealthChecker`.

Guarantees:
- each checker is bounded by its own timeout; a hung one is reported as timed out while the
  others report normally [tests/health_checker/test_probe.py::test_each_checker_own_timeout];
- only liveness checkers decide liveness, readiness adds readiness checkers, informational ones
  never change the status [tests/health_checker/test_probe.py::test_kinds_decide_status];
- the last error is kept after recovery [tests/health_checker/test_probe.py::test_last_error_kept];
- a Redis replica is unhealthy for a checker that requires the master
  [tests/health_checker/test_checkers.py::test_valkey_role_aware];
- real Redis, etcd, HTTP and agent RPC dependencies are checked, and a stopped one is reported
  [tests/health_checker/test_checkers.py::test_real_dependencies];
- the endpoints answer JSON with status, latency and last error per dependency
  [tests/health_checker/test_web.py::test_endpoints].
"""

from .abc import HealthChecker
from .checkers import (
    AgentRPCHealthChecker,
    EtcdHealthChecker,
    HTTPHealthChecker,
    ValkeyHealthChecker,
)
from .exceptions import HealthCheckError, HealthCheckFailed, HealthCheckTimeout
from .probe import HealthProbe
from .types import DependencyStatus, HealthReport, HealthStatus, ProbeKind
from .web import add_health_routes, health_handler

__all__ = (
    "AgentRPCHealthChecker",
    "DependencyStatus",
    "EtcdHealthChecker",
    "HTTPHealthChecker",
    "HealthCheckError",
    "HealthCheckFailed",
    "HealthCheckTimeout",
    "HealthChecker",
    "HealthProbe",
    "HealthReport",
    "HealthStatus",
    "ProbeKind",
    "ValkeyHealthChecker",
    "add_health_routes",
    "health_handler",
)
