"""The resilience hook point: every server call of a ValkeyClient goes through one ``CallHook``.

The resilience layer (retry, timeout, circuit breaker, bulkhead) plugs in here without this
package importing it: a hook receives the operation name and a zero-argument factory that
starts the call, and returns the call's result (or raises). The default passes through.
Errors a hook sees are already this package's (``ValkeyConnectionError``, ``ValkeyTimeout``...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

__all__ = ("CallHook", "passthrough")

T = TypeVar("T")


class CallHook(Protocol):
    """Wraps one server call: ``await hook("xadd", lambda: ...)``."""

    def __call__(self, operation: str, call: Callable[[], Awaitable[T]], /) -> Awaitable[T]:
        """Run ``call()`` (possibly several times, or not at all) and return its result."""
        ...


async def passthrough(operation: str, call: Callable[[], Awaitable[T]], /) -> T:
    """The default hook: run the call once."""
    return await call()
