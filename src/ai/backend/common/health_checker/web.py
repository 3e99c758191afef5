"""aiohttp handlers serving a :class:`~.probe.HealthProbe` as JSON health endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ..json import dump_json_str
from .probe import HealthProbe
from .types import HealthStatus, ProbeKind

__all__ = ("add_health_routes", "health_handler")

Handler = Callable[[web.Request], Awaitable[web.Response]]


def health_handler(probe: HealthProbe, kind: ProbeKind = ProbeKind.INFORMATIONAL) -> Handler:
    """A handler running ``probe`` for ``kind``: 200 when healthy, else 503; JSON body."""

    async def handle(request: web.Request) -> web.Response:
        report = await probe.check(kind)
        status = 200 if report.status is HealthStatus.HEALTHY else 503
        body = {"probe": str(kind), **report.to_json()}
        return web.Response(
            status=status, text=dump_json_str(body), content_type="application/json"
        )

    return handle


def add_health_routes(app: web.Application, probe: HealthProbe, prefix: str = "/health") -> None:
    """Add ``{prefix}/live``, ``{prefix}/ready`` and ``{prefix}`` (every dependency)."""
    app.router.add_get(f"{prefix}/live", health_handler(probe, ProbeKind.LIVENESS))
    app.router.add_get(f"{prefix}/ready", health_handler(probe, ProbeKind.READINESS))
    app.router.add_get(prefix, health_handler(probe, ProbeKind.INFORMATIONAL))
