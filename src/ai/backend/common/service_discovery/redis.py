"""Redis backend of service discovery: upstream's hashes with a TTL, refreshed by their owner.

A record is the hash ``<prefix>.<group>.<id>`` (default prefix ``service_discovery``) whose
fields are the record's top-level keys and whose values are JSON text, as upstream writes it,
with a TTL. Unlike upstream, the instance that registered a record refreshes the TTL every
``ttl / 3`` seconds while it is open, so a record lives exactly as long as its process (plus at
most the TTL), whether or not the service sends heartbeats.

The only module of this package that imports ``redis``; its errors are mapped
(``ConnectionError``/``TimeoutError`` -> ``ServiceDiscoveryUnavailable``).

Guarantees:
- a record whose key expired while its owner is open (Redis restarted, owner stalled) is
  written again and ``on_records_restored`` is called
  [tests/service_discovery/test_discovery_conformance.py::test_lost_records_are_restored];
- records of an owner that stopped without cleanup vanish within the TTL
  [tests/service_discovery/test_discovery_conformance.py::test_crashed_owner_records_expire].

Limits: group names containing ``.``, ``*``, ``?`` or ``[`` are matched literally by SCAN only
after escaping; ``discover()`` scans the keyspace (``SCAN``), as upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import redis.asyncio as aioredis
import redis.exceptions as redis_exc

from ..json import dump_json_str, load_json
from ._base import RecordKeeper
from .exceptions import ServiceDiscoveryError, ServiceDiscoveryUnavailable
from .types import RecordsRestoredObserver, ServiceKey, ServiceMetadata, WallClock

__all__ = ("DEFAULT_REDIS_PREFIX", "RedisServiceDiscovery")

DEFAULT_REDIS_PREFIX: Final = "service_discovery"
"""Upstream's key prefix of service hashes."""


def _escape_glob(text: str) -> str:
    out = []
    for ch in text:
        if ch in "*?[]\\":
            out.append("\\")
        out.append(ch)
    return "".join(out)


class RedisServiceDiscovery(RecordKeeper):
    """Service records as Redis hashes with a TTL of ``ttl`` seconds.

    ``redis`` is a URL (this instance opens and closes its own connection pool) or a
    ``redis.asyncio.Redis`` (the caller's: never closed here).
    """

    def __init__(
        self,
        redis: str | aioredis.Redis,
        *,
        prefix: str = DEFAULT_REDIS_PREFIX,
        ttl: float = 60.0,
        request_timeout: float = 5.0,
        on_records_restored: RecordsRestoredObserver | None = None,
        wall_clock: WallClock = time.time,
    ) -> None:
        super().__init__(
            "redis-service-discovery",
            on_records_restored=on_records_restored,
            wall_clock=wall_clock,
        )
        if ttl <= 0:
            raise ValueError(f"ttl must be positive: {ttl!r}")
        self._url = redis if isinstance(redis, str) else None
        self._redis: aioredis.Redis | None = None if isinstance(redis, str) else redis
        self._prefix = prefix
        self._ttl_ms = max(int(ttl * 1000), 1)
        self._ttl = ttl
        self._timeout = request_timeout

    def key_of(self, key: ServiceKey) -> str:
        """``<prefix>.<group>.<id>``: the hash of one record."""
        return f"{self._prefix}.{key[0]}.{key[1]}"

    @contextlib.asynccontextmanager
    async def _call(self, what: str) -> AsyncIterator[aioredis.Redis]:
        """The client, under the request timeout, with Redis errors mapped."""
        if self._redis is None:
            raise ServiceDiscoveryError(f"{what}: redis service discovery is not open")
        try:
            async with asyncio.timeout(self._timeout):
                yield self._redis
        except (redis_exc.ConnectionError, redis_exc.TimeoutError, TimeoutError) as exc:
            raise ServiceDiscoveryUnavailable(f"{what}: redis unavailable ({exc})") from exc
        except redis_exc.RedisError as exc:
            raise ServiceDiscoveryError(f"{what}: {exc}") from exc

    async def _backend_open(self) -> None:
        if self._url is not None:
            # socket_timeout=None: redis-py's default wraps every command in wait_for
            # (slower, and a cancel can be lost on 3.11); each call has asyncio.timeout instead.
            self._redis = aioredis.Redis.from_url(self._url, socket_timeout=None)

    async def _backend_close(self) -> None:
        if self._url is not None and self._redis is not None:
            client, self._redis = self._redis, None
            await client.aclose()

    # -- keep-alive ----------------------------------------------------------------

    def _start_background(self) -> None:
        self._tasks.spawn(self._refresh_loop(), "ttl-refresh")

    async def _refresh_loop(self) -> None:
        interval = self._ttl / 3
        while True:
            await asyncio.sleep(interval)
            missing: list[ServiceMetadata] = []
            async with self._lock:
                owned = list(self._owned.values())
                if not owned:
                    continue
                try:
                    async with self._call("refresh") as r, r.pipeline(transaction=False) as p:
                        for record in owned:
                            p.pexpire(self.key_of(record.key), self._ttl_ms)
                        results = await p.execute()
                    missing = [rec for rec, ok in zip(owned, results, strict=True) if not ok]
                    for record in missing:
                        await self._put(record)
                except ServiceDiscoveryUnavailable:
                    continue  # try again next round; the TTL gives us time
            if missing:
                self._restored([r.key for r in missing], "redis key expired or was deleted")

    # -- storage -------------------------------------------------------------------

    async def _put(self, record: ServiceMetadata) -> None:
        key = self.key_of(record.key)
        mapping: dict[Any, Any] = {k: dump_json_str(v) for k, v in record.to_dict().items()}
        async with self._call(f"register({key})") as r, r.pipeline(transaction=True) as p:
            p.delete(key)
            p.hset(key, mapping=mapping)
            p.pexpire(key, self._ttl_ms)
            await p.execute()

    async def _write(self, record: ServiceMetadata) -> None:
        await self._put(record)

    async def _delete(self, key: ServiceKey) -> None:
        async with self._call(f"deregister({key[0]}/{key[1]})") as r:
            await r.delete(self.key_of(key))

    def _decode(self, raw: dict[Any, Any]) -> ServiceMetadata | None:
        if not raw:
            return None
        try:
            data = {_text(k): load_json(v) for k, v in raw.items()}
        except ValueError:
            self._malformed += 1
            return None
        return self._parse(data)

    async def _scan(self, pattern: str, what: str) -> list[ServiceMetadata]:
        async with self._call(what) as r:
            keys = [k async for k in r.scan_iter(match=pattern, count=500)]
            if not keys:
                return []
            async with r.pipeline(transaction=False) as p:
                for k in keys:
                    p.hgetall(k)
                raws = await p.execute()
        return [rec for raw in raws if (rec := self._decode(raw)) is not None]

    async def _read_all(self) -> list[ServiceMetadata]:
        return await self._scan(f"{_escape_glob(self._prefix)}.*.*", "discover()")

    async def _read_group(self, service_group: str) -> list[ServiceMetadata]:
        pattern = f"{_escape_glob(self._prefix)}.{_escape_glob(service_group)}.*"
        return await self._scan(pattern, f"get_service_group({service_group!r})")

    async def _read_one(self, key: ServiceKey) -> ServiceMetadata | None:
        async with self._call(f"get_service({key[0]}/{key[1]})") as r:
            raw = await r.hgetall(self.key_of(key))
        return self._decode(raw)

    async def _release_owned(self) -> None:
        keys = [self.key_of(k) for k in self._owned]
        async with self._call("aclose()") as r:
            await r.delete(*keys)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
