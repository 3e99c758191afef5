"""Periodic tasks that run only on the leader: :class:`LeaderCron` and :func:`run_on_leader`.

Guarantees:
- a task runs only while its election's candidate is leader
  [tests/leader/test_cron.py::test_runs_only_on_the_leader];
- a failing run is reported to ``on_error`` and the schedule goes on
  [tests/leader/test_cron.py::test_errors_are_reported_and_the_schedule_goes_on].

Limits: a run already started when leadership is lost finishes (check ``election.is_leader``
in long runs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from ..aio import TaskOwner
from .abc import AbstractLeaderElection
from .exceptions import LeaderElectionClosed
from .types import PeriodicTask

__all__ = ("CronStatistics", "LeaderCron", "run_on_leader")


@dataclass(frozen=True, slots=True)
class CronStatistics:
    """Runs and failures per task name."""

    runs: dict[str, int]
    failures: dict[str, int]


class LeaderCron:
    """Runs each :class:`PeriodicTask` every ``interval`` seconds while ``election`` leads.

    The election is the caller's (opened and closed by the caller).
    """

    def __init__(
        self,
        election: AbstractLeaderElection,
        tasks: Sequence[PeriodicTask] = (),
        *,
        on_error: Callable[[str, Exception], None] | None = None,
    ) -> None:
        self._election = election
        self._specs = list(tasks)
        self._on_error = on_error
        self._tasks = TaskOwner("leader-cron")
        self._runs: dict[str, int] = {t.name: 0 for t in self._specs}
        self._failures: dict[str, int] = {t.name: 0 for t in self._specs}

    def add(
        self,
        name: str,
        interval: float,
        fn: Callable[[], Awaitable[None]],
        *,
        initial_delay: float = 0.0,
    ) -> None:
        """Schedule ``fn`` (before the cron starts)."""
        if self._tasks.running:
            raise RuntimeError("add tasks before starting the cron")
        if interval <= 0:
            raise ValueError(f"interval of {name!r} must be positive: {interval!r}")
        self._specs.append(PeriodicTask(name, interval, fn, initial_delay))
        self._runs[name] = 0
        self._failures[name] = 0

    async def __aenter__(self) -> Self:
        await self._tasks.start()
        for spec in self._specs:
            self._tasks.spawn(self._loop(spec), spec.name)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._tasks.stop()

    async def _loop(self, spec: PeriodicTask) -> None:
        if spec.initial_delay > 0:
            await asyncio.sleep(spec.initial_delay)
        while True:
            try:
                await self._election.wait_for_leadership()
            except LeaderElectionClosed:
                return  # the election ended: nothing will lead here any more
            try:
                await spec.fn()
                self._runs[spec.name] += 1
            except Exception as exc:
                self._failures[spec.name] += 1
                if self._on_error is not None:
                    self._on_error(spec.name, exc)
            await asyncio.sleep(spec.interval)

    def statistics(self) -> CronStatistics:
        """Runs and failures so far."""
        return CronStatistics(dict(self._runs), dict(self._failures))


def run_on_leader(
    election: AbstractLeaderElection,
    interval: float,
    fn: Callable[[], Awaitable[None]],
    *,
    name: str | None = None,
    initial_delay: float = 0.0,
    on_error: Callable[[str, Exception], None] | None = None,
) -> LeaderCron:
    """A :class:`LeaderCron` with one task: ``async with run_on_leader(election, 60, fn):``."""
    cron = LeaderCron(election, on_error=on_error)
    label = name if name is not None else str(getattr(fn, "__name__", "task"))
    cron.add(label, interval, fn, initial_delay=initial_delay)
    return cron
