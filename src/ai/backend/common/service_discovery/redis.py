"""Redis backend of service discovery: upstream's hashes with a TTL, refreshed by their owner.

A record is the hash ``<prefix>.<group>.<id>`` (default prefix ``service_discovery``) whose
fields are the record's top-level keys and whose values are JSON text, as upstream writes it,
with a TTL. Unlike upstream, the instance that registered a record refreshes the TTL every
``ttl / 3`` seconds while it is open, so a record lives exactly as long as its process (plus at
most the TTL), whether or not the service sends heartbeats.

Talks to Redis/Valkey through :class:`~ai.backend.common.clients.valkey.ValkeyClient` (single,
Sentinel or Cluster); its errors are mapped (``ValkeyConnectionError``/``ValkeyTimeout`` ->
``ServiceDiscoveryUnavailable``, other ``ValkeyError`` -> ``ServiceDiscoveryError``).

Guarantees:
- the hash fields and their JSON values are upstream's, and hashes upstream wrote are read
  [tests/service_discovery/test_layout.py::test_redis_hash_matches_upstream];
- a record whose key expired while its owner is open (Redis restarted, owner stalled) is
  written again and ``on_records_restored`` is called
  [tests/service_discovery/test_discovery_conformance.py::test_lost_records_are_restored];
- records of an owner that stopped without cleanup vanish within the TTL
  [tests/service_discovery/test_discovery_conformance.py::test_crashed_owner_records_expire].

- a group's lookup returns exactly that group, also when another group's name extends it
  with a dot (``model`` and ``model.v2``)
  [tests/service_discovery/test_discovery_conformance.py::test_group_lookup_is_exact].

Limits: group lookups ``SCAN`` the keys matching ``<prefix>.<group>.*`` (glob characters
escaped), so they also read the records of dotted sub-groups before dropping them;
``discover()`` scans the keyspace, as upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, TypeVar

from ..clients.valkey import (
    ValkeyClient,
    ValkeyConnectionError,
    ValkeyError,
    ValkeyTarget,
    ValkeyTimeout,
)
from ..json import dump_json_str, load_json
from ._base import RecordKeeper
from .exceptions import ServiceDiscoveryError, ServiceDiscoveryUnavailable
from .types import RecordsRestoredObserver, ServiceKey, ServiceMetadata, WallClock

T = TypeVar("T")

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

    ``redis`` is a :class:`~ai.backend.common.clients.valkey.ValkeyClient` (the caller's: never
    opened or closed here), or a URL / :class:`ValkeyTarget` for a client this instance opens
    and closes itself.
    """

    def __init__(
        self,
        redis: ValkeyClient | ValkeyTarget | str,
        *,
        prefix: str = DEFAULT_REDIS_PREFIX,
        ttl: float = 60.0,
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
        if isinstance(redis, ValkeyClient):
            self._client, self._owns_client = redis, False
        else:
            target = ValkeyTarget.from_url(redis) if isinstance(redis, str) else redis
            self._client, self._owns_client = ValkeyClient(target), True
        self._prefix = prefix
        self._ttl_ms = max(int(ttl * 1000), 1)
        self._ttl = ttl

    def key_of(self, key: ServiceKey) -> str:
        """``<prefix>.<group>.<id>``: the hash of one record."""
        return f"{self._prefix}.{key[0]}.{key[1]}"

    async def _call(self, what: str, factory: Callable[[Any], Awaitable[T]]) -> T:
        with _mapped(what):
            return await self._client.call(what, factory)

    async def _pipeline(
        self, what: str, commands: list[list[Any]], *, transaction: bool = False
    ) -> list[Any]:
        with _mapped(what):
            return await self._client.pipeline(commands, transaction=transaction, operation=what)

    async def _backend_open(self) -> None:
        if self._owns_client:
            with _mapped("open()"):
                await self._client.open()

    async def _backend_close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

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
                    results = await self._pipeline(
                        "refresh",
                        [["PEXPIRE", self.key_of(rec.key), self._ttl_ms] for rec in owned],
                    )
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
        fields: list[Any] = []
        for name, value in record.to_dict().items():
            fields += [name, dump_json_str(value)]
        await self._pipeline(
            f"register({key})",
            [["DEL", key], ["HSET", key, *fields], ["PEXPIRE", key, self._ttl_ms]],
            transaction=True,
        )

    async def _write(self, record: ServiceMetadata) -> None:
        await self._put(record)

    async def _delete(self, key: ServiceKey) -> None:
        await self._call(f"deregister({key[0]}/{key[1]})", lambda r: r.delete(self.key_of(key)))

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
        async def run(r: Any) -> list[Any]:
            keys = [k async for k in r.scan_iter(match=pattern, count=500)]
            if not keys:
                return []
            pipe = r.pipeline(transaction=False)
            for k in keys:
                pipe.hgetall(k)
            return list(await pipe.execute())

        raws = await self._call(what, run)
        return [rec for raw in raws if (rec := self._decode(raw)) is not None]

    async def _read_all(self) -> list[ServiceMetadata]:
        return await self._scan(f"{_escape_glob(self._prefix)}.*.*", "discover()")

    async def _read_group(self, service_group: str) -> list[ServiceMetadata]:
        # The pattern of group "model" also matches "model.v2.<id>" (group names may contain
        # dots): keep only the records of this very group.
        pattern = f"{_escape_glob(self._prefix)}.{_escape_glob(service_group)}.*"
        found = await self._scan(pattern, f"get_service_group({service_group!r})")
        return [record for record in found if record.service_group == service_group]

    async def _read_one(self, key: ServiceKey) -> ServiceMetadata | None:
        raw = await self._call(
            f"get_service({key[0]}/{key[1]})", lambda r: r.hgetall(self.key_of(key))
        )
        return self._decode(raw)

    async def _release_owned(self) -> None:
        keys = [self.key_of(k) for k in self._owned]
        await self._call("aclose()", lambda r: r.delete(*keys))


@contextlib.contextmanager
def _mapped(what: str) -> Iterator[None]:
    try:
        yield
    except (ValkeyConnectionError, ValkeyTimeout) as exc:
        raise ServiceDiscoveryUnavailable(f"{what}: redis unavailable ({exc})") from exc
    except ValkeyError as exc:
        raise ServiceDiscoveryError(f"{what}: {exc}") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
