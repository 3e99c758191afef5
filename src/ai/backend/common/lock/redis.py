"""Redis lock: ``SET <key> <token> NX PX <lifetime>``, released by a compare-and-delete script.

Guarantees: the conformance suite [tests/lock/test_lock_conformance.py]; only the holder's token
can delete the key [tests/lock/test_lock_conformance.py::test_expired_holder_cannot_free_next].
Limits: waiters poll (every ``retry_interval`` at most, sooner when the key's TTL ends first).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from ..aio import ErrorTable, map_errors
from ..clients.valkey import ValkeyClient, ValkeyConnectionError, ValkeyError, ValkeyTimeout
from .abc import DEFAULT_LIFETIME, DEFAULT_TIMEOUT, AbstractDistributedLock
from .exceptions import LockError, LockUnavailable

__all__ = ("DEFAULT_REDIS_LOCK_PREFIX", "RedisLock")

DEFAULT_REDIS_LOCK_PREFIX = "lock:"
"""Prefix of lock keys."""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


_ERRORS: ErrorTable = {
    (ValkeyConnectionError, ValkeyTimeout): LockUnavailable,
    ValkeyError: LockError,
}


class RedisLock(AbstractDistributedLock):
    """A distributed lock named ``name`` in Redis/Valkey (the client is the caller's)."""

    def __init__(
        self,
        client: ValkeyClient,
        name: str,
        *,
        lifetime: float = DEFAULT_LIFETIME,
        timeout: float | None = DEFAULT_TIMEOUT,
        prefix: str = DEFAULT_REDIS_LOCK_PREFIX,
        retry_interval: float = 0.05,
        time_source: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(lifetime=lifetime, timeout=timeout, time_source=time_source)
        self._client = client
        self._name = name
        self._key = prefix + name
        self._token = uuid.uuid4().hex
        self._retry = retry_interval
        self._ttl_ms = max(int(lifetime * 1000), 1)

    def __repr__(self) -> str:
        return f"RedisLock({self._name!r})"

    async def _acquire(self) -> float:
        with map_errors(f"acquire({self._name!r})", _ERRORS):
            while True:
                started = self._now()
                won = await self._client.execute(
                    "SET", self._key, self._token, "NX", "PX", self._ttl_ms
                )
                if won:
                    return started
                pttl = await self._client.execute("PTTL", self._key)
                wait = self._retry if pttl < 0 else min(self._retry, pttl / 1000)
                await asyncio.sleep(max(wait, 0.001))

    async def _release(self) -> None:
        with map_errors(f"release({self._name!r})", _ERRORS):
            await self._client.execute("EVAL", _RELEASE, 1, self._key, self._token)
