"""Value types of leader election: leadership changes, statistics, periodic tasks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ("LeaderStatistics", "LeadershipChange", "LeadershipObserver", "PeriodicTask")


@dataclass(frozen=True, slots=True)
class LeadershipChange:
    """This candidate became leader (``is_leader``) or stopped being it, and why."""

    server_id: str
    is_leader: bool
    term: int
    """How many times this candidate has become leader so far."""
    reason: str
    valid_until: float
    """Clock time until which leadership is certain (0 when stepping down)."""


LeadershipObserver = Callable[[LeadershipChange], None]
"""Called synchronously, in the election's task, on every change."""


@dataclass(frozen=True, slots=True)
class LeaderStatistics:
    """A snapshot of one candidate."""

    is_leader: bool
    terms: int
    """Times this candidate became leader."""
    renewals: int
    """Successful lease renewals."""
    renew_failures: int
    """Renewals that failed (backend unreachable or too slow)."""
    step_downs: int
    """Times this candidate stopped being leader while running."""
    acquire_failures: int = 0
    """Attempts to take the lease that failed (backend unreachable, or the write not
    acknowledged by ``wait_replicas`` replicas)."""


@dataclass(frozen=True, slots=True)
class PeriodicTask:
    """A coroutine function run every ``interval`` seconds (on the leader only, by LeaderCron)."""

    name: str
    interval: float
    fn: Callable[[], Awaitable[None]]
    initial_delay: float = 0.0
