"""The lease-based election loop both backends share (private).

A follower tries to take the lease, and otherwise waits until the lease may be free (etcd:
watch; Redis: until its TTL ends) or ``retry_interval`` passed. A leader renews every
``renew_interval``; its leadership is certain until ``t + ttl * (1 - safety_margin)`` where
``t`` is the clock read *before* the request that set the lease, which is no later than the
server's expiry of that lease. It steps down when a renewal says the lease is gone, after
``max_renew_failures`` failed renewals in a row, or when that certainty runs out.
"""

from __future__ import annotations

import abc
import asyncio
import math

from ..aio import TaskOwner
from ..clients.etcd import Clock, SystemClock
from .abc import AbstractLeaderElection
from .exceptions import LeaderElectionClosed, LeaderElectionUnavailable
from .types import LeadershipChange, LeadershipObserver, LeaderStatistics

__all__ = ("LeaseElection",)


class LeaseElection(AbstractLeaderElection):
    """The state machine; backends implement acquire, renew, release and wait-for-vacancy."""

    def __init__(
        self,
        server_id: str,
        *,
        ttl: float,
        renew_interval: float | None = None,
        retry_interval: float | None = None,
        max_renew_failures: int = 2,
        safety_margin: float = 0.1,
        clock: Clock | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive: {ttl!r}")
        if not 0 <= safety_margin < 1:
            raise ValueError(f"safety_margin must be in [0, 1): {safety_margin!r}")
        self._server_id = server_id
        self._ttl = ttl
        self._renew_interval = renew_interval if renew_interval is not None else ttl / 3
        self._retry_interval = retry_interval if retry_interval is not None else ttl / 3
        if max_renew_failures < 1:
            raise ValueError(f"max_renew_failures must be >= 1: {max_renew_failures!r}")
        if self._renew_interval * max_renew_failures >= ttl * (1 - safety_margin):
            raise ValueError(
                f"renew_interval {self._renew_interval} x max_renew_failures "
                f"{max_renew_failures} must stay below ttl {ttl} minus the safety margin"
            )
        self._max_failures = max_renew_failures
        self._margin = safety_margin
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._tasks = TaskOwner(f"leader-{server_id}")
        self._state = "new"
        self._leader = False
        self._valid_until = 0.0
        self._leader_event = asyncio.Event()
        self._follower_event = asyncio.Event()
        self._follower_event.set()
        self._observers: list[LeadershipObserver] = []
        self._terms = 0
        self._renewals = 0
        self._renew_failures = 0
        self._step_downs = 0
        self._acquire_failures = 0

    # -- public ----------------------------------------------------------------------

    @property
    def server_id(self) -> str:
        """This candidate's id."""
        return self._server_id

    @property
    def ttl(self) -> float:
        """The lease period in seconds."""
        return self._ttl

    @property
    def is_leader(self) -> bool:
        """Leader now, and certainly so (the lease cannot have expired yet)."""
        return self._leader and self._clock.monotonic() < self._valid_until

    @property
    def valid_until(self) -> float:
        """Clock time until which the current leadership is certain (0 when follower)."""
        return self._valid_until if self._leader else 0.0

    async def open(self) -> None:
        """Start campaigning in the background; idempotent."""
        if self._state == "open":
            return
        if self._state == "closed":
            raise LeaderElectionClosed(f"election of {self._server_id!r} was closed")
        await self._backend_open()
        await self._tasks.start()
        self._state = "open"
        self._tasks.spawn(self._campaign(), "campaign")

    async def aclose(self) -> None:
        """Stop campaigning and release the lease if held; idempotent."""
        await self._shut_down(release=True)

    async def abort(self) -> None:
        """Stop without releasing (the lease expires), as a crashed process would."""
        await self._shut_down(release=False)

    async def _shut_down(self, *, release: bool) -> None:
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        try:
            await self._tasks.stop()
        finally:
            was_leader = self._leader
            self._set_follower("stopped" if release else "aborted", count=False)
            self._leader_event.set()  # wake waiters: they see the election closed
            try:
                if release and was_leader:
                    await self._release()
            finally:
                await self._backend_close()

    async def wait_for_leadership(self) -> None:
        """Return once leader; ``LeaderElectionClosed`` if the election closes first."""
        while not self.is_leader:
            if self._state == "closed":
                raise LeaderElectionClosed(f"election of {self._server_id!r} is closed")
            await self._leader_event.wait()
            if not self.is_leader and self._state != "closed":
                # Leadership lapsed before the loop noticed; let it catch up.
                await asyncio.sleep(0.01)

    async def wait_for_step_down(self) -> None:
        """Return once not leader."""
        await self._follower_event.wait()

    def add_observer(self, observer: LeadershipObserver) -> None:
        """Call ``observer`` on every change."""
        self._observers.append(observer)

    def statistics(self) -> LeaderStatistics:
        """Terms, renewals, failures and step-downs so far."""
        return LeaderStatistics(
            is_leader=self.is_leader,
            terms=self._terms,
            renewals=self._renewals,
            renew_failures=self._renew_failures,
            step_downs=self._step_downs,
            acquire_failures=self._acquire_failures,
        )

    # -- state machine ---------------------------------------------------------------

    def _certain_until(self, sent_at: float) -> float:
        return sent_at + self._ttl * (1 - self._margin)

    def _notify(self, reason: str) -> None:
        change = LeadershipChange(
            self._server_id, self._leader, self._terms, reason, self.valid_until
        )
        for observer in self._observers:
            observer(change)

    def _set_leader(self, sent_at: float) -> None:
        self._leader = True
        self._valid_until = self._certain_until(sent_at)
        self._terms += 1
        self._follower_event.clear()
        self._leader_event.set()
        self._notify("acquired the lease")

    def _set_follower(self, reason: str, *, count: bool = True) -> None:
        if not self._leader:
            return
        self._leader = False
        self._valid_until = 0.0
        if count:
            self._step_downs += 1
        self._leader_event.clear()
        self._follower_event.set()
        self._notify(reason)

    async def _campaign(self) -> None:
        failures = 0
        while True:
            if not self._leader:
                sent_at = self._clock.monotonic()
                try:
                    won = await self._try_acquire()
                except LeaderElectionUnavailable:
                    self._acquire_failures += 1
                    await self._clock.sleep(self._retry_interval)
                    continue
                if won:
                    failures = 0
                    self._set_leader(sent_at)
                    continue
                try:
                    await self._wait_vacancy(self._retry_interval)
                except LeaderElectionUnavailable:
                    await self._clock.sleep(self._retry_interval)
                continue

            await self._clock.sleep(self._renew_interval)
            sent_at = self._clock.monotonic()
            remaining = self._valid_until - sent_at
            try:
                if remaining <= 0:
                    raise TimeoutError
                # A renewal that cannot finish before leadership lapses is a failed one.
                async with asyncio.timeout(
                    max(remaining, 0.001) if _is_real(self._clock) else None
                ):
                    still_ours = await self._renew()
            except (LeaderElectionUnavailable, TimeoutError):
                failures += 1
                self._renew_failures += 1
                if failures >= self._max_failures or self._clock.monotonic() >= self._valid_until:
                    self._set_follower(f"{failures} renewal(s) failed in a row")
                    failures = 0
                continue
            if still_ours:
                failures = 0
                self._renewals += 1
                self._valid_until = self._certain_until(sent_at)
            else:
                failures = 0
                self._set_follower("the lease was lost")

    # -- backend hooks ---------------------------------------------------------------

    async def _backend_open(self) -> None:
        """Prepare (default: nothing)."""

    async def _backend_close(self) -> None:
        """Clean up (default: nothing)."""

    @abc.abstractmethod
    async def _try_acquire(self) -> bool:
        """Take the lease if nobody holds it."""

    @abc.abstractmethod
    async def _renew(self) -> bool:
        """Extend our lease; False if it is not ours any more."""

    @abc.abstractmethod
    async def _release(self) -> None:
        """Give the lease up if it is ours."""

    @abc.abstractmethod
    async def _wait_vacancy(self, at_most: float) -> None:
        """Wait until the lease may be free, or ``at_most`` seconds."""

    def _ttl_seconds(self) -> int:
        return max(1, math.ceil(self._ttl))


def _is_real(clock: Clock) -> bool:
    return isinstance(clock, SystemClock)
