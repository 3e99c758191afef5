"""Service discovery on etcd: registration throughput, cached lookups, Prometheus SD answers.

Each round registers N = 1,000 services in a fresh namespace, then looks them up and renders the
Prometheus HTTP SD answer for all of them:

- ``ours``: ``EtcdServiceDiscovery.register`` (what a service calls to register itself: one
  transaction per record under the instance's lease) through ``EtcdClient``; then, with a
  ``CachedServiceDiscovery`` opened over the same instance, ``register_cached_per_s`` times
  registrations through the cache (each returns once the cache has the record: the watch
  processing is included; no raw counterpart, so no ratio); lookups are
  ``CachedServiceDiscovery.get_service`` (100,000 of them, from the watch-fed cache); the SD
  answer is ``make_prometheus_sd_handler`` over the cache.
- ``raw``: the same flattened keys put with bare ``aetcd`` (one transaction per record, same
  lease, same client library); lookups are ``get_prefix`` of one record (2,000 of them, since
  each is a round trip); the SD answer reads every record with ``get_prefix`` and dumps the
  target list with orjson (no validation).

In production every service heartbeats between two Prometheus scrapes, so before each timed SD
answer every record is heartbeated (its ``last_heartbeat`` rewritten; ``ours`` waits until the
cache has seen all of them) and the answer is checked to hold 1,000 targets.

Metrics: ``register_per_s`` (records per second, median of rounds), ``lookup_ns`` (per lookup,
best round), ``sd_1000_ms`` (one SD answer for 1,000 targets right after every record
heartbeated: median of the repeats, then of the rounds), ``sd_1000_warm_ms`` (a second answer
right after that one, nothing changed in between). Ratios: ``register_per_s:ours/raw`` (target
>= 0.8), ``lookup_ns:ours/raw``, ``sd_1000_ms:ours/raw`` (targets: lookups in microseconds, SD
answer under 10 ms).

Starts a private etcd on free loopback ports unless ``BACKEND_ETCD_ADDR`` (``host:port``) is
set, and stops it at the end.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aetcd
import orjson
from aiohttp.test_utils import make_mocked_request

from _bench import Report, alternate, own_etcd, parse_args
from ai.backend.common.clients.etcd import EtcdClient, flatten_dict
from ai.backend.common.service_discovery import (
    DEFAULT_ETCD_PREFIX,
    CachedServiceDiscovery,
    EtcdServiceDiscovery,
    ServiceEndpoint,
    ServiceMetadata,
    make_prometheus_sd_handler,
)

BENCH = "discovery"
IMPLS = ("ours", "raw")
GROUP = "bench"


@dataclass(frozen=True)
class Sizes:
    services: int
    lookups: int
    raw_lookups: int
    sd_repeats: int
    cached_registers: int


@dataclass(frozen=True)
class RoundResult:
    register_per_s: float
    lookup_ns: float
    sd_ms: float
    sd_warm_ms: float
    register_cached_per_s: float | None = None


# -- workload -----------------------------------------------------------------------------


def _records(n: int) -> list[ServiceMetadata]:
    now = time.time()
    return [
        ServiceMetadata(
            id=uuid.uuid4(),
            display_name=f"agent-{i}",
            service_group=GROUP,
            version="26.1.0",
            endpoint=ServiceEndpoint(
                address=f"10.0.{i // 250}.{i % 250}",
                port=6001,
                protocol="http",
                prometheus_address=f"10.0.{i // 250}.{i % 250}:6003",
            ),
            labels={"zone": f"z{i % 4}", "gpu": "true" if i % 2 else "false"},
        ).with_heartbeat(now)
        for i in range(n)
    ]


def _check_targets(body: bytes, n: int) -> None:
    targets = orjson.loads(body)
    if len(targets) != n:
        raise AssertionError(f"the SD answer has {len(targets)} targets, not {n}")


async def run_ours(addr: str, sizes: Sizes) -> RoundResult:
    records = _records(sizes.services)
    async with EtcdClient(addr, f"bench-{uuid.uuid4().hex[:8]}") as etcd:
        inner = EtcdServiceDiscovery(etcd, ttl=120)
        await inner.open()
        try:
            # What a service does to register itself (the registrar's call): no cache involved.
            start = time.perf_counter()
            for record in records:
                await inner.register(record)
            register = len(records) / (time.perf_counter() - start)
            async with CachedServiceDiscovery(inner) as cache:
                return await _through_cache(cache, records, sizes, register)
        finally:
            await inner.aclose()  # revoke the lease: the keys go


async def _through_cache(
    cache: CachedServiceDiscovery, records: list[ServiceMetadata], sizes: Sizes, register: float
) -> RoundResult:
    # A user of the cache registers through it, returning once the cache has the record.
    extra = _records(sizes.cached_registers)
    start = time.perf_counter()
    for record in extra:
        await cache.register(record)
    register_cached = len(extra) / (time.perf_counter() - start)
    for record in extra:
        await cache.deregister(record.service_group, record.id)

    picks = [random.choice(records).id for _ in range(sizes.lookups)]
    get = cache.get_service
    start = time.perf_counter()
    for service_id in picks:
        await get(GROUP, service_id)
    lookup_ns = (time.perf_counter() - start) / len(picks) * 1e9

    handler = make_prometheus_sd_handler(cache)
    request = make_mocked_request("GET", "/sd")
    _check_targets(_body(await handler(request)), len(records))  # parses every record once
    cold: list[float] = []
    warm: list[float] = []
    for _ in range(sizes.sd_repeats):
        # Every service heartbeats between two scrapes; the cache has followed them all.
        for record in records:
            await cache.heartbeat(record)
        await cache.wait_watched()
        for samples in (cold, warm):
            start = time.perf_counter()
            response = await handler(request)
            samples.append((time.perf_counter() - start) * 1e3)
            _check_targets(_body(response), len(records))
    return RoundResult(
        register, lookup_ns, statistics.median(cold), statistics.median(warm), register_cached
    )


def _body(response: Any) -> bytes:
    body = response.body
    assert isinstance(body, bytes)
    return body


async def run_raw(addr: str, sizes: Sizes) -> RoundResult:
    records = _records(sizes.services)
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    base = f"/sorna/{namespace}/{DEFAULT_ETCD_PREFIX}/{GROUP}"
    flats = [flatten_dict(f"{base}/{r.id}", r.to_dict()) for r in records]
    host, _, port = addr.rpartition(":")
    async with aetcd.Client(host=host, port=int(port), timeout=5) as client:
        lease = await client.lease(120)
        start = time.perf_counter()
        for flat in flats:
            ops = [
                client.transactions.put(k.encode(), v.encode(), lease=lease)
                for k, v in flat.items()
            ]
            await client.transaction(compare=[], success=ops, failure=[])
        register = len(records) / (time.perf_counter() - start)

        picks = [random.choice(records).id for _ in range(sizes.raw_lookups)]
        start = time.perf_counter()
        for service_id in picks:
            result = await client.get_prefix(f"{base}/{service_id}/".encode())
            {kv.key: kv.value for kv in result}
        lookup_ns = (time.perf_counter() - start) / len(picks) * 1e9

        async def answer() -> bytes:
            result = await client.get_prefix(f"{base}/".encode())
            by_id: dict[str, dict[str, str]] = {}
            for kv in result:
                key = kv.key.decode()
                sid, _, field = key[len(base) + 1 :].partition("/")
                by_id.setdefault(sid, {})[field] = kv.value.decode()
            targets = [
                {
                    "targets": [f["endpoint/prometheus_address"]],
                    "labels": {"service_id": sid, "service_group": GROUP},
                }
                for sid, f in by_id.items()
            ]
            return orjson.dumps(targets)

        cold: list[float] = []
        warm: list[float] = []
        for _ in range(max(sizes.sd_repeats // 2, 2)):
            for r in records:  # the same heartbeat writes, so etcd holds the same history
                beat = str(time.time()).encode()
                key = f"{base}/{r.id}/health_status/last_heartbeat".encode()
                await client.put(key, beat, lease=lease)
            for samples in (cold, warm):
                start = time.perf_counter()
                body = await answer()
                samples.append((time.perf_counter() - start) * 1e3)
                _check_targets(body, len(records))
        await client.revoke_lease(lease.id)
    return RoundResult(register, lookup_ns, statistics.median(cold), statistics.median(warm))


RUNNERS: dict[str, Callable[[str, Sizes], Coroutine[Any, Any, RoundResult]]] = {
    "ours": run_ours,
    "raw": run_raw,
}


def main() -> None:
    """Run the alternating rounds and print the report."""
    args = parse_args(__doc__ or "discovery benchmark", default_rounds=5)
    sizes = (
        Sizes(services=1_000, lookups=20_000, raw_lookups=300, sd_repeats=3, cached_registers=200)
        if args.quick
        else Sizes(
            services=1_000, lookups=100_000, raw_lookups=2_000, sd_repeats=6, cached_registers=500
        )
    )
    report = Report(BENCH, args.json)
    with own_etcd() as addr:

        def one_round(impl: str) -> RoundResult:
            return asyncio.run(RUNNERS[impl](addr, sizes))

        results = alternate(IMPLS, args.rounds, one_round)
    for impl in IMPLS:
        rounds = results[impl]
        report.add(impl, "register_per_s", [r.register_per_s for r in rounds], "records/s")
        report.add(impl, "lookup_ns", [r.lookup_ns for r in rounds], "ns", reduce="min")
        report.add(impl, "sd_1000_ms", [r.sd_ms for r in rounds], "ms")
        report.add(impl, "sd_1000_warm_ms", [r.sd_warm_ms for r in rounds], "ms")
        cached = [r.register_cached_per_s for r in rounds if r.register_cached_per_s is not None]
        if cached:
            report.add(impl, "register_cached_per_s", cached, "records/s")
    report.ratio("register_per_s", "ours", "raw")
    report.ratio("lookup_ns", "ours", "raw")
    report.ratio("sd_1000_ms", "ours", "raw")
    report.ratio("sd_1000_warm_ms", "ours", "raw")
    report.finish()


if __name__ == "__main__":
    main()
