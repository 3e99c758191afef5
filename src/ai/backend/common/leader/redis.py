"""Leader election on Redis/Valkey: one lease key, ``SET NX PX`` to take it, a Lua
compare-and-``PEXPIRE`` to renew it, a compare-and-``DEL`` to release it.

The key (``leader:<name>``, upstream's ``leader:default`` by default) holds the leader's
``server_id``; only the holder can extend or delete it.

Guarantees: the conformance suite [tests/leader/test_election_conformance.py]; a leader whose
Redis disappears steps down before its lease could have expired
[tests/leader/test_redis.py::test_leader_steps_down_when_redis_dies].
Limits: a follower learns of a release by polling (at most every ``retry_interval``, and right
when the key's TTL ends).
"""

from __future__ import annotations

from ..aio import ErrorTable, map_errors
from ..clients.etcd import Clock
from ..clients.valkey import ValkeyClient, ValkeyConnectionError, ValkeyError, ValkeyTimeout
from ._base import LeaseElection
from .exceptions import LeaderElectionUnavailable, LeaderError

__all__ = ("RedisLeaderElection",)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


_ERRORS: ErrorTable = {
    (ValkeyConnectionError, ValkeyTimeout): LeaderElectionUnavailable,
    ValkeyError: LeaderError,
}


class RedisLeaderElection(LeaseElection):
    """A candidate for ``name`` on Redis (the client is the caller's)."""

    def __init__(
        self,
        client: ValkeyClient,
        server_id: str,
        *,
        name: str = "default",
        key: str | None = None,
        ttl: float = 30.0,
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
        self._client = client
        self._key = key if key is not None else f"leader:{name}"
        self._ttl_ms = max(int(ttl * 1000), 1)

    @property
    def key(self) -> str:
        """The lease key."""
        return self._key

    async def current_leader(self) -> str | None:
        """The ``server_id`` holding the lease now, if any."""
        with map_errors("current_leader()", _ERRORS):
            value = await self._client.execute("GET", self._key)
        return None if value is None else (value.decode() if isinstance(value, bytes) else value)

    async def _try_acquire(self) -> bool:
        with map_errors(f"acquire({self._key!r})", _ERRORS):
            won = await self._client.execute(
                "SET", self._key, self._server_id, "NX", "PX", self._ttl_ms
            )
        return bool(won)

    async def _renew(self) -> bool:
        with map_errors(f"renew({self._key!r})", _ERRORS):
            result = await self._client.execute(
                "EVAL", _RENEW, 1, self._key, self._server_id, self._ttl_ms
            )
        return bool(result)

    async def _release(self) -> None:
        with map_errors(f"release({self._key!r})", _ERRORS):
            await self._client.execute("EVAL", _RELEASE, 1, self._key, self._server_id)

    async def _wait_vacancy(self, at_most: float) -> None:
        with map_errors(f"pttl({self._key!r})", _ERRORS):
            pttl = await self._client.execute("PTTL", self._key)
        if pttl == -2:
            return  # no key: try at once
        wait = at_most if pttl < 0 else min(at_most, pttl / 1000)
        await self._clock.sleep(max(wait, 0.001))
