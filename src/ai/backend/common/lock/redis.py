"""Redis lock: ``SET <key> <token> NX PX <lifetime>``, released by a compare-and-delete script.

Guarantees: the conformance suite [tests/lock/test_lock_conformance.py]; only the holder's token
can delete the key [tests/lock/test_lock_conformance.py::test_expired_holder_cannot_free_next];
with ``wait_replicas=N`` the lock counts as taken only once ``N`` replicas acknowledged the
``SET`` (``WAIT``), else it is given back and ``LockUnavailable`` raised
[tests/lock/test_redis.py::test_wait_replicas_on_sentinel].

Limits:
- waiters poll (every ``retry_interval`` at most, sooner when the key's TTL ends first);
- Redis replicates asynchronously: if Sentinel promotes a replica that had not received the
  lock's ``SET``, the key is gone on the new master and a second holder can take the lock while
  the first still holds it (until its lifetime ends). ``wait_replicas`` narrows that window but
  does not close it (``WAIT`` is no consensus, and Sentinel may still promote a replica that
  did not acknowledge); use :class:`~.etcd.EtcdLock` where that matters.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from ..aio import ErrorTable, map_errors
from ..clients.valkey import ValkeyClient, ValkeyConnectionError, ValkeyError, ValkeyTimeout
from .abc import DEFAULT_LIFETIME, DEFAULT_TIMEOUT, AbstractDistributedLock
from .exceptions import LockError, LockUnavailable, LockUsageError

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
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
    ) -> None:
        super().__init__(lifetime=lifetime, timeout=timeout, time_source=time_source)
        if wait_replicas < 0 or wait_timeout <= 0:
            raise LockUsageError(
                f"wait_replicas must be >= 0 and wait_timeout > 0: "
                f"wait_replicas={wait_replicas!r}, wait_timeout={wait_timeout!r}"
            )
        self._wait_replicas = wait_replicas
        self._wait_ms = max(int(wait_timeout * 1000), 1)
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
                won = await self._set_if_absent()
                if won:
                    return started
                pttl = await self._client.execute("PTTL", self._key)
                wait = self._retry if pttl < 0 else min(self._retry, pttl / 1000)
                await asyncio.sleep(max(wait, 0.001))

    async def _set_if_absent(self) -> bool:
        take = ["SET", self._key, self._token, "NX", "PX", self._ttl_ms]
        if not self._wait_replicas:
            return bool(await self._client.execute(*take))
        # WAIT counts the writes of its own connection: a pipeline keeps both on one.
        won, acked = await self._client.pipeline(
            [take, ["WAIT", self._wait_replicas, self._wait_ms]], operation="acquire"
        )
        if won and int(acked) < self._wait_replicas:
            await self._client.execute("EVAL", _RELEASE, 1, self._key, self._token)
            raise LockUnavailable(
                f"acquire({self._name!r}): the lock reached {acked} of the {self._wait_replicas} "
                f"replica(s) required within {self._wait_ms} ms (wait_replicas); given back",
                data={"key": self._key, "acked": int(acked), "required": self._wait_replicas},
            )
        return bool(won)

    async def _release(self) -> None:
        with map_errors(f"release({self._name!r})", _ERRORS):
            await self._client.execute("EVAL", _RELEASE, 1, self._key, self._token)
