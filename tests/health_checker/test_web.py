"""The aiohttp health endpoints: JSON per dependency, 200 or 503."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ai.backend.common.health_checker import (
    HealthChecker,
    HealthCheckFailed,
    HealthProbe,
    ProbeKind,
    add_health_routes,
)


class _Dep(HealthChecker):
    def __init__(self, name: str, kind: ProbeKind) -> None:
        super().__init__(name, kind=kind, timeout=5.0)
        self.up = True

    async def check(self) -> dict[str, Any]:
        if not self.up:
            raise HealthCheckFailed(f"{self.name} down")
        return {"up": True}


async def test_endpoints() -> None:
    db = _Dep("db", ProbeKind.READINESS)
    cache = _Dep("cache", ProbeKind.INFORMATIONAL)
    app = web.Application()
    add_health_routes(app, HealthProbe([db, cache]))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/health/ready")
        assert resp.status == 200
        body = await resp.json()
        assert body["probe"] == "readiness"
        assert body["status"] == "healthy"
        [dep] = body["dependencies"]
        assert dep["name"] == "db"
        assert dep["status"] == "healthy"
        assert isinstance(dep["latency_ms"], float)
        assert dep["last_error"] is None

        db.up = False
        resp = await client.get("/health/ready")
        assert resp.status == 503
        body = await resp.json()
        assert body["dependencies"][0]["last_error"] == "HealthCheckFailed: db down"

        assert (await client.get("/health/live")).status == 200
        resp = await client.get("/health")
        assert resp.status == 503
        names = [d["name"] for d in (await resp.json())["dependencies"]]
        assert names == ["db", "cache"]
