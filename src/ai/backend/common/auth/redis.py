"""Redis backends of the keypair store and the nonce (seen-signature) store.

Keypairs are hashes ``<prefix><access_key>`` with the fields ``secret_key``, ``user_id``,
``role``, ``is_active`` (``1``/``0``) and ``domain_name``. A seen signature is a string key
``<prefix><access_key>:<signature>`` written with ``SET NX PX <ttl>``, so all servers sharing
the Redis reject a replay, and the key expires when the request date leaves the window.

Guarantees:
- both pass the shared conformance suites [tests/auth/test_keypair_store_conformance.py],
  [tests/auth/test_nonce_store_conformance.py];
- a Redis failure raises ``AuthBackendUnavailable`` (503) chained from the native error
  [tests/auth/test_redis.py::test_redis_down_maps_to_unavailable];
- a seen-signature key carries an expiry no longer than asked
  [tests/auth/test_redis.py::test_nonce_key_has_expiry].

Limits: a store built on a client handed in never closes that client; ``from_url`` stores own
theirs and close it in ``aclose()``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Self

import redis.asyncio as aioredis
import redis.exceptions

from ..data.user import UserRole
from .abc import AbstractKeypairStore, AbstractNonceStore
from .exceptions import AuthBackendUnavailable
from .keys import check_access_key
from .types import Keypair

__all__ = ("RedisKeypairStore", "RedisNonceStore")

_DEFAULT_SOCKET_TIMEOUT = 2.0


@contextmanager
def _map_errors(what: str) -> Iterator[None]:
    try:
        yield
    except redis.exceptions.RedisError as exc:
        raise AuthBackendUnavailable(
            f"{what} failed: {type(exc).__name__}", data={"backend": "redis"}
        ) from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _client_from_url(url: str) -> aioredis.Redis:
    # redis-py's default socket_timeout wraps each command in wait_for (DESIGN.md section 5).
    return aioredis.Redis.from_url(
        url, socket_timeout=_DEFAULT_SOCKET_TIMEOUT, socket_connect_timeout=_DEFAULT_SOCKET_TIMEOUT
    )


class RedisKeypairStore(AbstractKeypairStore):
    """Keypairs as Redis hashes."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "backendai:auth:keypair:") -> None:
        self._client = client
        self._prefix = prefix
        self._owned = False

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "backendai:auth:keypair:") -> Self:
        """A store with its own client (closed by ``aclose()``)."""
        store = cls(_client_from_url(url), prefix=prefix)
        store._owned = True
        return store

    async def get(self, access_key: str) -> Keypair | None:
        """The keypair of ``access_key`` or ``None``."""
        check_access_key(access_key)  # never send undecodable request bytes to Redis
        with _map_errors(f"reading keypair {access_key[:64]!r}"):
            raw = await self._client.hgetall(self._prefix + access_key)
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        try:
            return Keypair(
                access_key=access_key,
                secret_key=fields["secret_key"],
                user_id=uuid.UUID(fields["user_id"]),
                role=UserRole(fields.get("role", UserRole.USER.value)),
                is_active=fields.get("is_active", "1") == "1",
                domain_name=fields.get("domain_name", "default"),
            )
        except (KeyError, ValueError) as exc:
            raise AuthBackendUnavailable(
                f"keypair record {self._prefix + access_key[:64]!r} is malformed "
                f"({type(exc).__name__}: {exc})",
                data={"backend": "redis"},
            ) from exc

    async def put(self, keypair: Keypair) -> None:
        """Store or replace a keypair."""
        key = self._prefix + check_access_key(keypair.access_key, storing=True)
        mapping: dict[Any, Any] = {
            "secret_key": keypair.secret_key,
            "user_id": str(keypair.user_id),
            "role": keypair.role.value,
            "is_active": "1" if keypair.is_active else "0",
            "domain_name": keypair.domain_name,
        }
        with _map_errors(f"writing keypair {keypair.access_key!r}"):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(key, mapping=mapping)
                await pipe.execute()

    async def delete(self, access_key: str) -> bool:
        """Remove a keypair; ``True`` if it existed."""
        check_access_key(access_key)
        with _map_errors(f"deleting keypair {access_key[:64]!r}"):
            return bool(await self._client.delete(self._prefix + access_key))

    async def aclose(self) -> None:
        """Close the client if this store opened it."""
        if self._owned:
            self._owned = False
            await self._client.aclose()


class RedisNonceStore(AbstractNonceStore):
    """Seen keys as Redis strings set with ``SET NX PX``."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "backendai:auth:seen:") -> None:
        self._client = client
        self._prefix = prefix
        self._owned = False

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "backendai:auth:seen:") -> Self:
        """A store with its own client (closed by ``aclose()``)."""
        store = cls(_client_from_url(url), prefix=prefix)
        store._owned = True
        return store

    async def remember(self, key: str, ttl: timedelta) -> bool:
        """``True`` if ``SET NX`` created the key (first sight within ``ttl``)."""
        millis = max(int(ttl.total_seconds() * 1000), 1)
        with _map_errors("recording a request signature"):
            created = await self._client.set(self._prefix + key, b"1", nx=True, px=millis)
        return bool(created)

    async def aclose(self) -> None:
        """Close the client if this store opened it."""
        if self._owned:
            self._owned = False
            await self._client.aclose()
