"""Wire layout of service records, pinned key by key against upstream Backend.AI.

Upstream (lablup/backend.ai, ``service_discovery/etcd_discovery`` and ``redis_discovery``)
writes a record with ``put_prefix("ai/backend/service_discovery/<group>/<id>",
record.model_dump())`` in the global scope (every leaf ``str()``-ed, key components quoted),
and in Redis as the hash ``service_discovery.<group>.<id>`` whose fields are the top-level
keys and whose values are ``dump_json_str(value)``, with a TTL. These tests read the raw keys
and hash fields, and read records written the upstream way.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aetcd
import pytest
import redis.asyncio as aioredis

from ai.backend.common.clients.etcd import EtcdClient
from ai.backend.common.service_discovery import (
    EtcdServiceDiscovery,
    HealthStatus,
    RedisServiceDiscovery,
    ServiceEndpoint,
    ServiceMetadata,
)

RECORD = ServiceMetadata(
    id=uuid.UUID(int=1),
    display_name="m",
    service_group="manager",
    version="1",
    endpoint=ServiceEndpoint(address="h", port=8080, protocol="http", prometheus_address="h:9"),
    health_status=HealthStatus(registration_time=1712345600.5, last_heartbeat=1712345678.25),
    labels={"a/b": "x", "zone": "kr"},
)

ID = "00000000-0000-0000-0000-000000000001"

ETCD_FIELDS = {
    "id": ID,
    "display_name": "m",
    "service_group": "manager",
    "version": "1",
    "endpoint/address": "h",
    "endpoint/port": "8080",
    "endpoint/protocol": "http",
    "endpoint/prometheus_address": "h:9",
    "health_status/registration_time": "1712345600.5",
    "health_status/last_heartbeat": "1712345678.25",
    "labels/a%2Fb": "x",
    "labels/zone": "kr",
}
"""Keys under ``/sorna/<ns>/ai/backend/service_discovery/manager/<id>/`` and their values."""

REDIS_FIELDS = {
    "id": f'"{ID}"',
    "display_name": '"m"',
    "service_group": '"manager"',
    "version": '"1"',
    "endpoint": '{"address":"h","port":8080,"protocol":"http","prometheus_address":"h:9"}',
    "health_status": '{"registration_time":1712345600.5,"last_heartbeat":1712345678.25}',
    "labels": '{"a/b":"x","zone":"kr"}',
}
"""Fields of the hash ``service_discovery.manager.<id>`` and their values (JSON text)."""


@pytest.fixture
async def raw_etcd(etcd_endpoint: str) -> AsyncIterator[aetcd.Client]:
    """A bare aetcd client, to see the keys as upstream's client does."""
    host, _, port = etcd_endpoint.rpartition(":")
    async with aetcd.Client(host=host, port=int(port)) as client:
        yield client


async def test_etcd_keys_match_upstream(etcd_endpoint: str, raw_etcd: aetcd.Client) -> None:
    ns = f"layout-{uuid.uuid4().hex[:6]}"
    base = f"/sorna/{ns}/ai/backend/service_discovery/manager/{ID}/"
    async with EtcdClient(etcd_endpoint, ns) as etcd, EtcdServiceDiscovery(etcd, ttl=5) as sd:
        await sd.register(RECORD)
        kvs = await raw_etcd.get_prefix(f"/sorna/{ns}/".encode())
        assert {kv.key.decode(): kv.value.decode() for kv in kvs} == {
            base + key: value for key, value in ETCD_FIELDS.items()
        }
        assert {kv.lease for kv in kvs} == {sd.lease.id if sd.lease else -1}  # all leased


async def test_reads_records_written_the_upstream_way(
    etcd_endpoint: str, raw_etcd: aetcd.Client
) -> None:
    ns = f"layout-{uuid.uuid4().hex[:6]}"
    base = f"/sorna/{ns}/ai/backend/service_discovery/manager/{ID}/"
    for key, value in ETCD_FIELDS.items():
        await raw_etcd.put((base + key).encode(), value.encode())
    async with EtcdClient(etcd_endpoint, ns) as etcd, EtcdServiceDiscovery(etcd, ttl=5) as sd:
        assert await sd.get_service("manager", RECORD.id) == RECORD
        assert await sd.discover() == [RECORD]


async def test_redis_hash_matches_upstream(redis_url: str) -> None:
    raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with RedisServiceDiscovery(redis_url, ttl=30) as sd:
            await sd.register(RECORD)
            key = f"service_discovery.manager.{ID}"
            assert await raw.keys("service_discovery.*") == [key]
            assert await raw.hgetall(key) == REDIS_FIELDS
            assert 0 < await raw.pttl(key) <= 30_000
            # and a hash written the upstream way (HSET + EXPIRE) is read back
            await raw.delete(key)
            upstream_fields: Any = REDIS_FIELDS  # redis-py's mapping type is invariant
            await raw.hset(key, mapping=upstream_fields)
            await raw.expire(key, 180)
            assert await sd.get_service("manager", RECORD.id) == RECORD
    finally:
        await raw.aclose()
