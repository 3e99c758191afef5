"""Test harness of backend.ai-common: real redis-server, redis-sentinel and etcd on loopback.

The pytest side (fixtures, markers, the task-leak check) is `tests._harness.plugin`, loaded by
``tests/conftest.py``. The modules below it start and stop the processes and can be used
directly, e.g. from benchmarks or a REPL.
"""

from .etcd import (
    ETCD_ADDR_ENV,
    EtcdCluster,
    EtcdServer,
    etcd_server_from_env,
    start_etcd_cluster,
    start_etcd_server,
)
from .ports import LOOPBACK, free_port
from .process import ExternalServerError, HarnessError, ManagedProcess, wait_until
from .redis import REDIS_ADDR_ENV, RedisServer, redis_server_from_env, start_redis_server
from .sentinel import SERVICE_NAME, RedisSentinelSet, start_sentinel_set

__all__ = (
    "ETCD_ADDR_ENV",
    "LOOPBACK",
    "REDIS_ADDR_ENV",
    "SERVICE_NAME",
    "EtcdCluster",
    "EtcdServer",
    "ExternalServerError",
    "HarnessError",
    "ManagedProcess",
    "RedisSentinelSet",
    "RedisServer",
    "etcd_server_from_env",
    "free_port",
    "redis_server_from_env",
    "start_etcd_cluster",
    "start_etcd_server",
    "start_redis_server",
    "start_sentinel_set",
    "wait_until",
)
