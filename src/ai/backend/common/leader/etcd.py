"""Leader election on etcd: a key created only if absent, under a lease of the election's TTL.

The key (``ai/backend/leader/<name>`` in the global scope) holds the leader's ``server_id`` and
is attached to a lease the leader refreshes itself (so it steps down by its own rules); a
follower watches the key and campaigns the moment it is deleted (release or lease expiry).

Guarantees: the conformance suite [tests/leader/test_election_conformance.py]; takeover after a
leader process is killed with SIGKILL within one lease period, never overlapping
[tests/leader/test_proof.py::test_killed_leader_hands_over_within_one_lease].
Limits: etcd rounds lease TTLs up to whole seconds (and to its minimum, about 2 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import math

from ..aio import ErrorTable, map_errors
from ..clients.etcd import (
    AsyncEtcd,
    Clock,
    ConfigScopes,
    EtcdError,
    EtcdLease,
    EtcdLeaseNotFound,
    EtcdTimeout,
    EtcdUnavailable,
)
from ._base import LeaseElection
from .exceptions import LeaderElectionUnavailable, LeaderError

__all__ = ("EtcdLeaderElection",)

_GLOBAL = ConfigScopes.GLOBAL


_ERRORS: ErrorTable = {
    (EtcdUnavailable, EtcdTimeout, EtcdLeaseNotFound): LeaderElectionUnavailable,
    EtcdError: LeaderError,
}


class EtcdLeaderElection(LeaseElection):
    """A candidate for ``name`` on etcd (the client is the caller's)."""

    def __init__(
        self,
        etcd: AsyncEtcd,
        server_id: str,
        *,
        name: str = "default",
        key: str | None = None,
        ttl: float = 10.0,
        renew_interval: float | None = None,
        retry_interval: float | None = None,
        max_renew_failures: int = 2,
        safety_margin: float = 0.1,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            server_id,
            ttl=ttl,
            renew_interval=renew_interval,
            retry_interval=retry_interval,
            max_renew_failures=max_renew_failures,
            safety_margin=safety_margin,
            clock=clock,
        )
        self._etcd = etcd
        self._key = key if key is not None else f"ai/backend/leader/{name}"
        self._lease: EtcdLease | None = None

    @property
    def key(self) -> str:
        """The lease key (global scope)."""
        return self._key

    async def current_leader(self) -> str | None:
        """The ``server_id`` holding the key now, if any."""
        with map_errors("current_leader()", _ERRORS):
            return await self._etcd.get(self._key, scope=_GLOBAL)

    async def _try_acquire(self) -> bool:
        with map_errors(f"acquire({self._key!r})", _ERRORS):
            lease = await self._etcd.grant_lease(max(1, math.ceil(self._ttl)), keepalive=False)
            if await self._etcd.put_if_absent(self._key, self._server_id, lease=lease):
                self._lease = lease
                return True
            await self._etcd.revoke_lease(lease)
            return False

    async def _renew(self) -> bool:
        lease = self._lease
        if lease is None:
            return False
        with map_errors(f"renew({self._key!r})", _ERRORS):
            if await self._etcd.refresh_lease(lease) <= 0:
                self._lease = None
                return False
            return await self._etcd.get(self._key, scope=_GLOBAL) == self._server_id

    async def _release(self) -> None:
        lease, self._lease = self._lease, None
        with map_errors(f"release({self._key!r})", _ERRORS):
            await self._etcd.delete_if_value(self._key, self._server_id, scope=_GLOBAL)
            if lease is not None:
                await self._etcd.revoke_lease(lease)

    async def _wait_vacancy(self, at_most: float) -> None:
        with map_errors(f"watch({self._key!r})", _ERRORS), contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await self._etcd.wait_absent(self._key, scope=_GLOBAL)
