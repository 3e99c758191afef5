"""Fallback: replace chosen errors (an open breaker, a timeout, ...) with a value or a coroutine.

Guarantees:
- only errors of the chosen types are replaced; ``CancelledError`` and other non-``Exception``
  errors always propagate [tests/resilience/test_fallback.py::test_only_chosen_errors];
- the handler receives the error and its own failure propagates, chained to it
  [tests/resilience/test_fallback.py::test_handler_gets_error].
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..exception import InvalidArgument
from .abc import Policy, Runner
from .events import CallSite, FallbackUsed, Observer

__all__ = ("Fallback",)

_MISSING: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Fallback(Policy):
    """On an error of type ``on``, return ``value`` or ``await handler(error)`` instead."""

    value: Any = _MISSING
    """The replacement result (exclusive with ``handler``)."""
    handler: Callable[[Exception], Awaitable[Any]] | None = None
    """An async function computing the replacement from the error."""
    on: type[Exception] | tuple[type[Exception], ...] = (Exception,)
    """The error types replaced (``Exception`` subclasses only)."""
    name: str = ""
    observers: tuple[Observer, ...] = ()

    def __post_init__(self) -> None:
        if (self.value is _MISSING) == (self.handler is None):
            raise InvalidArgument(
                "Fallback needs exactly one of value= or handler=",
                data={"field": "value", "value": "both" if self.handler else "neither"},
            )
        types = self.on
        if isinstance(types, type):
            types = (types,)
            object.__setattr__(self, "on", types)
        if not types or not all(isinstance(t, type) and issubclass(t, Exception) for t in types):
            raise InvalidArgument(
                f"on={types!r}: must be a non-empty tuple of Exception subclasses "
                "(cancellation and exit requests are never replaced)",
                data={"field": "on", "value": repr(types)},
            )
        object.__setattr__(self, "observers", tuple(self.observers))
        self._init_runner()

    def bind(self, nxt: Runner, site: CallSite) -> Runner:
        """Wrap ``nxt``: on a chosen error, emit :class:`FallbackUsed` and return the fallback."""
        on, handler, value, name = self.on, self.handler, self.value, self.name

        async def fallback_runner(
            fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            try:
                return await nxt(fn, args, kwargs)
            except on as exc:
                if site.observers:
                    dependency, operation = site.names(name)
                    site.emit(
                        FallbackUsed(
                            dependency=dependency, operation=operation, policy=name, error=exc
                        )
                    )
                if handler is not None:
                    return await handler(exc)
                return value

        return fallback_runner
