"""The ``/metrics`` handler: the Prometheus text exposition of a ``CommonMetricRegistry``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..metrics import EXPOSITION_CONTENT_TYPE, CommonMetricRegistry
from .routes import anonymous

__all__ = ("metrics_handler",)


def metrics_handler(
    registry: CommonMetricRegistry,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An anonymous handler serving ``registry.render()`` (in a thread in multiprocess mode)."""

    @anonymous
    async def handle_metrics(request: web.Request) -> web.Response:
        if registry.multiprocess_dir() is not None:
            body = await asyncio.to_thread(registry.render)
        else:
            body = registry.render()
        return web.Response(body=body, headers={"Content-Type": EXPOSITION_CONTENT_TYPE})

    return handle_metrics
