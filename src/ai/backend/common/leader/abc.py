"""The leader-election interface, :class:`AbstractLeaderElection` (upstream's name).

Backends: :class:`~.redis.RedisLeaderElection` (a lease key, ``SET NX PX`` + compare-and-pexpire)
and :class:`~.etcd.EtcdLeaderElection` (a key under an etcd lease); both pass
``tests/leader/test_election_conformance.py``.
"""

from __future__ import annotations

import abc

from ..aio import AsyncResource
from .types import LeadershipObserver, LeaderStatistics

__all__ = ("AbstractLeaderElection",)


class AbstractLeaderElection(AsyncResource):
    """One candidate for the leadership of a named role.

    At most one candidate of a role is leader at any time: a candidate counts itself leader
    only until its lease, renewed every ``renew_interval``, could have expired on the server
    (minus a safety margin), and steps down after ``max_renew_failures`` failed renewals or
    when the lease turns out lost. When the leader stops (``aclose()`` releases the lease) or
    dies (the lease expires), another candidate takes over within one lease period.
    ``async with`` starts campaigning in the background.
    """

    @property
    @abc.abstractmethod
    def server_id(self) -> str:
        """This candidate's id (written as the lease key's value)."""

    @property
    @abc.abstractmethod
    def is_leader(self) -> bool:
        """Whether this candidate is the leader now (false as soon as that is not certain)."""

    @property
    @abc.abstractmethod
    def valid_until(self) -> float:
        """Monotonic clock time until which the current leadership is certain (0 if follower)."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Start campaigning; idempotent."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop campaigning and release the leadership if held; idempotent."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Stop as a crashed process would: the lease is not released, it expires."""

    @abc.abstractmethod
    async def wait_for_leadership(self) -> None:
        """Return once this candidate is leader (at once if it is); bound it with a timeout."""

    @abc.abstractmethod
    async def wait_for_step_down(self) -> None:
        """Return once this candidate is not leader (at once if it is not)."""

    @abc.abstractmethod
    def add_observer(self, observer: LeadershipObserver) -> None:
        """Call ``observer`` on every leadership change of this candidate."""

    @abc.abstractmethod
    def statistics(self) -> LeaderStatistics:
        """A snapshot of this candidate."""
