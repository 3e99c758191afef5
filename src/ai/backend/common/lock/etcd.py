"""etcd lock: a key created under a fresh lease whose TTL is the lock's lifetime.

Acquiring creates ``<prefix><name>`` only if absent, attached to a new lease of
``ceil(lifetime)`` seconds (never kept alive); a waiter watches the key and retries when it is
deleted (release, or lease expiry when the holder died or overstayed).

Guarantees: the conformance suite [tests/lock/test_lock_conformance.py].
Limits: etcd's minimum lease TTL (about 2 s with default election timeouts) can keep a released-
by-lifetime key a little longer than ``lifetime``; exclusion is never weaker for it.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable

from ..aio import ErrorTable, map_errors
from ..clients.etcd import AsyncEtcd, EtcdError, EtcdLease, EtcdTimeout, EtcdUnavailable, quote
from .abc import DEFAULT_LIFETIME, DEFAULT_TIMEOUT, AbstractDistributedLock
from .exceptions import LockError, LockUnavailable

__all__ = ("DEFAULT_ETCD_LOCK_PREFIX", "EtcdLock")

DEFAULT_ETCD_LOCK_PREFIX = "ai/backend/lock/"
"""Where lock keys live (inside the etcd namespace, global scope)."""


_ERRORS: ErrorTable = {(EtcdUnavailable, EtcdTimeout): LockUnavailable, EtcdError: LockError}


class EtcdLock(AbstractDistributedLock):
    """A distributed lock named ``name`` in etcd (the client is the caller's)."""

    def __init__(
        self,
        etcd: AsyncEtcd,
        name: str,
        *,
        lifetime: float = DEFAULT_LIFETIME,
        timeout: float | None = DEFAULT_TIMEOUT,
        prefix: str = DEFAULT_ETCD_LOCK_PREFIX,
        time_source: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(lifetime=lifetime, timeout=timeout, time_source=time_source)
        self._etcd = etcd
        self._name = name
        self._key = prefix + quote(name)
        self._token = uuid.uuid4().hex
        self._lease: EtcdLease | None = None

    def __repr__(self) -> str:
        return f"EtcdLock({self._name!r})"

    async def _acquire(self) -> float:
        ttl = max(1, math.ceil(self._lifetime))
        with map_errors(f"acquire({self._name!r})", _ERRORS):
            while True:
                # A fresh lease per attempt: its TTL must start when the key is created.
                started = self._now()
                self._lease = await self._etcd.grant_lease(ttl, keepalive=False)
                if await self._etcd.put_if_absent(self._key, self._token, lease=self._lease):
                    return started
                lease, self._lease = self._lease, None
                await self._etcd.revoke_lease(lease)
                await self._etcd.wait_absent(self._key)

    async def _release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            with map_errors(f"release({self._name!r})", _ERRORS):
                await self._etcd.revoke_lease(lease)
