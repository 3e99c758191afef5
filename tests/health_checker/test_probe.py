"""HealthProbe: per-checker timeouts, probe kinds, last errors (with plain test checkers)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ai.backend.common.health_checker import (
    HealthChecker,
    HealthCheckError,
    HealthCheckFailed,
    HealthProbe,
    HealthStatus,
    ProbeKind,
)


class _Switch(HealthChecker):
    """A checker whose outcome the test sets: healthy, failing, or hanging."""

    def __init__(self, name: str, kind: ProbeKind, timeout: float = 5.0) -> None:
        super().__init__(name, kind=kind, timeout=timeout)
        self.mode = "ok"
        self.cancelled = False

    async def check(self) -> dict[str, Any]:
        if self.mode == "fail":
            raise HealthCheckFailed(f"{self.name} is down")
        if self.mode == "hang":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        return {"mode": self.mode}


async def test_each_checker_own_timeout() -> None:
    slow = _Switch("slow", ProbeKind.READINESS, timeout=0.1)
    fast = _Switch("fast", ProbeKind.READINESS, timeout=30.0)
    slow.mode = "hang"
    report = await HealthProbe([slow, fast]).check(ProbeKind.READINESS)
    by_name = {d.name: d for d in report.dependencies}
    assert by_name["slow"].status is HealthStatus.UNHEALTHY
    assert by_name["slow"].last_error is not None
    assert "HealthCheckTimeout" in by_name["slow"].last_error
    assert by_name["slow"].detail == {"error_code": "health_read_timeout"}
    assert slow.cancelled
    assert by_name["fast"].status is HealthStatus.HEALTHY
    assert by_name["fast"].detail == {"mode": "ok"}
    assert report.status is HealthStatus.UNHEALTHY


async def test_kinds_decide_status() -> None:
    live = _Switch("live", ProbeKind.LIVENESS)
    ready = _Switch("ready", ProbeKind.READINESS)
    info = _Switch("info", ProbeKind.INFORMATIONAL)
    probe = HealthProbe([live, ready, info])
    info.mode = "fail"
    assert (await probe.check(ProbeKind.READINESS)).status is HealthStatus.HEALTHY
    full = await probe.check(ProbeKind.INFORMATIONAL)
    assert full.status is HealthStatus.HEALTHY  # informational failures never count
    assert {d.name: d.status for d in full.dependencies}["info"] is HealthStatus.UNHEALTHY
    ready.mode = "fail"
    assert (await probe.check(ProbeKind.LIVENESS)).status is HealthStatus.HEALTHY
    assert [d.name for d in (await probe.check(ProbeKind.LIVENESS)).dependencies] == ["live"]
    assert (await probe.check(ProbeKind.READINESS)).status is HealthStatus.UNHEALTHY
    live.mode = "fail"
    assert (await probe.check(ProbeKind.LIVENESS)).status is HealthStatus.UNHEALTHY


async def test_last_error_kept() -> None:
    dep = _Switch("dep", ProbeKind.READINESS)
    probe = HealthProbe([dep])
    assert probe.last()[0].status is HealthStatus.UNKNOWN
    dep.mode = "fail"
    failed = (await probe.check()).dependencies[0]
    dep.mode = "ok"
    recovered = (await probe.check()).dependencies[0]
    assert recovered.status is HealthStatus.HEALTHY
    assert recovered.last_error == failed.last_error == "HealthCheckFailed: dep is down"
    assert recovered.last_error_at == failed.last_error_at
    assert recovered.latency is not None
    with pytest.raises(HealthCheckError):
        probe.register(_Switch("dep", ProbeKind.LIVENESS))
