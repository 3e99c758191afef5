"""Leader election on Redis/Valkey: one lease key, ``SET NX PX`` to take it, a Lua
compare-and-``PEXPIRE`` to renew it, a compare-and-``DEL`` to release it.

The key (``leader:<name>``, upstream's ``leader:default`` by default) holds the leader's
``server_id``; only the holder can extend or delete it.

Guarantees: the conformance suite [tests/leader/test_election_conformance.py]; a leader whose
Redis disappears steps down before its lease could have expired
[tests/leader/test_redis.py::test_leader_steps_down_when_redis_dies]; with
``wait_replicas=N`` a lease is taken or renewed only once ``N`` replicas acknowledged the write
(``WAIT``), else the attempt counts as failed and a just-taken lease is given back
[tests/leader/test_redis.py::test_wait_replicas_on_sentinel].

Limits:
- a follower learns of a release by polling (at most every ``retry_interval``, and right when
  the key's TTL ends);
- Redis replicates asynchronously: when Sentinel promotes a replica that had not received the
  latest ``SET``/``PEXPIRE`` of the lease key, the key is gone or older on the new master, so a
  second candidate can take the lease while the first still believes it leads, until its
  ``valid_until``. ``wait_replicas`` narrows that window (a write counts only once replicas
  have it) but does not close it: ``WAIT`` is no consensus, and Sentinel may still promote a
  replica that did not acknowledge. Where two leaders for up to one lease period are not
  acceptable, elect on etcd (:class:`~.etcd.EtcdLeaderElection`, Raft-replicated).
"""

from __future__ import annotations

from typing import Any

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
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
    ) -> None:
        if wait_replicas < 0 or wait_timeout <= 0:
            raise ValueError(
                f"wait_replicas must be >= 0 and wait_timeout > 0: "
                f"wait_replicas={wait_replicas!r}, wait_timeout={wait_timeout!r}"
            )
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
        self._wait_replicas = wait_replicas
        self._wait_ms = max(int(wait_timeout * 1000), 1)

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
        what = f"acquire({self._key!r})"
        with map_errors(what, _ERRORS):
            won = await self._write_replicated(
                what, ["SET", self._key, self._server_id, "NX", "PX", self._ttl_ms], give_back=True
            )
        return bool(won)

    async def _renew(self) -> bool:
        what = f"renew({self._key!r})"
        with map_errors(what, _ERRORS):
            # A renewal too few replicas have is a failed one; the key is not given back, as
            # this candidate still leads until its valid_until.
            result = await self._write_replicated(
                what, ["EVAL", _RENEW, 1, self._key, self._server_id, self._ttl_ms], give_back=False
            )
        return bool(result)

    async def _write_replicated(self, what: str, command: list[Any], *, give_back: bool) -> Any:
        """Run ``command``; with ``wait_replicas``, follow it with ``WAIT`` on the same
        connection and refuse a write that too few replicas acknowledged (deleting the lease
        key first if ``give_back``)."""
        if not self._wait_replicas:
            return await self._client.execute(*command)
        result, acked = await self._client.pipeline(
            [command, ["WAIT", self._wait_replicas, self._wait_ms]], operation=what
        )
        if result and int(acked) < self._wait_replicas:
            if give_back:
                # Not safe against a failover: give the lease back (a no-op if not ours).
                await self._client.execute("EVAL", _RELEASE, 1, self._key, self._server_id)
            raise LeaderElectionUnavailable(
                f"{what}: the write reached {acked} of the {self._wait_replicas} replica(s) "
                f"required within {self._wait_ms} ms (wait_replicas)",
                data={"key": self._key, "acked": int(acked), "required": self._wait_replicas},
            )
        return result

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
