"""Helpers shared by the test packages: waiting for a condition, marking real-backend runs slow.

``tests._harness.process.wait_until`` is the blocking twin of :func:`until`, for the harness's
own process control; async tests use :func:`until`, which yields to the event loop while it
polls (the condition usually depends on tasks of that loop).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Collection

import pytest

__all__ = ("mark_slow_on_real_backends", "until")


async def until(
    predicate: Callable[[], Awaitable[bool] | bool],
    within: float = 30.0,
    what: str = "condition",
    *,
    interval: float = 0.01,
) -> None:
    """Poll a (sync or async) predicate until it holds; fail naming ``what`` at the deadline.

    The deadline also bounds an async predicate that hangs. An exception of the predicate
    (a ``TimeoutError`` of its own included) fails the wait at once.
    """
    deadline = asyncio.timeout(within)
    try:
        async with deadline:
            while True:
                result = predicate()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(interval)
    except TimeoutError:
        if not deadline.expired():
            raise
        raise AssertionError(f"timed out after {within} s waiting for {what}") from None


def mark_slow_on_real_backends(
    items: list[pytest.Item],
    module: str,
    fixture: str,
    tests: Collection[str],
    real: Collection[str],
) -> None:
    """Mark ``slow`` the runs of ``tests`` (in ``module``) whose ``fixture`` param is in ``real``.

    For conformance tests that must wait out real TTLs on real backends; the same tests always
    run, fast on a manual clock, on the in-memory backends. Call it from a conftest's
    ``pytest_collection_modifyitems``.
    """
    for item in items:
        if not item.nodeid.startswith(module):
            continue
        callspec = getattr(item, "callspec", None)
        name = getattr(item, "originalname", item.name)
        if callspec is not None and name in tests and callspec.params.get(fixture) in real:
            item.add_marker(pytest.mark.slow)
