"""Runs health checkers concurrently, each under its own timeout, and keeps their last results."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from ..exception import BackendAIError
from .abc import HealthChecker
from .exceptions import HealthCheckError, HealthCheckTimeout
from .types import DependencyStatus, HealthReport, HealthStatus, ProbeKind

__all__ = ("HealthProbe",)

_KINDS_OF: dict[ProbeKind, tuple[ProbeKind, ...]] = {
    ProbeKind.LIVENESS: (ProbeKind.LIVENESS,),
    ProbeKind.READINESS: (ProbeKind.LIVENESS, ProbeKind.READINESS),
    ProbeKind.INFORMATIONAL: tuple(ProbeKind),
}


class HealthProbe:
    """A set of checkers; :meth:`check` runs them and reports per-dependency results.

    The overall status is unhealthy when a liveness checker fails (liveness probe), or a
    liveness or readiness checker fails (readiness probe); informational checkers are reported
    and never change it.
    """

    def __init__(
        self,
        checkers: Iterable[HealthChecker] = (),
        *,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._checkers: dict[str, HealthChecker] = {}
        self._last: dict[str, DependencyStatus] = {}
        self._clock = clock
        self._wall = wall_clock
        for checker in checkers:
            self.register(checker)

    def register(self, checker: HealthChecker) -> None:
        """Add a checker (its name must be unique in this probe)."""
        if checker.name in self._checkers:
            raise HealthCheckError(f"a health checker named {checker.name!r} already exists")
        self._checkers[checker.name] = checker
        self._last[checker.name] = DependencyStatus(
            checker.name, checker.kind, HealthStatus.UNKNOWN, None, None, None, None
        )

    def last(self) -> tuple[DependencyStatus, ...]:
        """The last result of every checker, without checking again."""
        return tuple(self._last.values())

    async def check(self, kind: ProbeKind = ProbeKind.INFORMATIONAL) -> HealthReport:
        """Run the checkers relevant to ``kind`` concurrently; informational runs them all.

        Cancelling the caller cancels every check under way.
        """
        kinds = _KINDS_OF[ProbeKind(kind)]
        selected = [c for c in self._checkers.values() if c.kind in kinds]
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._run(c)) for c in selected]
        results = tuple(t.result() for t in tasks)
        failing = any(
            r.status is not HealthStatus.HEALTHY
            for r in results
            if r.kind is not ProbeKind.INFORMATIONAL
        )
        overall = HealthStatus.UNHEALTHY if failing else HealthStatus.HEALTHY
        return HealthReport(overall, results)

    async def _run(self, checker: HealthChecker) -> DependencyStatus:
        started = self._clock()
        error: str | None = None
        detail: dict[str, object] = {}
        try:
            try:
                async with asyncio.timeout(checker.timeout):
                    detail = dict(await checker.check())
            except TimeoutError as exc:
                if isinstance(exc, BackendAIError):
                    raise
                raise HealthCheckTimeout(
                    f"{checker.name}: no answer within {checker.timeout}s"
                ) from exc
        except Exception as exc:  # any failure is a result to report, never a crash
            error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, BackendAIError):
                detail = {"error_code": str(exc.error_code())}
        latency = self._clock() - started
        now = self._wall()
        previous = self._last[checker.name]
        status = DependencyStatus(
            name=checker.name,
            kind=checker.kind,
            status=HealthStatus.HEALTHY if error is None else HealthStatus.UNHEALTHY,
            latency=latency,
            checked_at=now,
            last_error=error if error is not None else previous.last_error,
            last_error_at=now if error is not None else previous.last_error_at,
            detail=detail,
        )
        self._last[checker.name] = status
        return status
