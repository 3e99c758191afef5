"""The policy interface: how a policy wraps the next step of a call.

A policy is an immutable description (limits, thresholds, observers), compared by identity
since two equal-looking breakers still hold distinct state. When a pipeline is built,
each policy :meth:`Policy.bind` s itself once around the next step and returns a *runner*: an
async callable ``runner(fn, args, kwargs)`` that applies the policy and calls the next runner.
The innermost step is :func:`invoke`, which calls ``fn(*args, **kwargs)``. Per call, a pipeline
therefore runs one precomputed chain of runners: nothing is allocated to compose it.

Mutable runtime state (a breaker's window, a bulkhead's slots) lives in a state object owned by
the policy and shared by every runner bound from it, so one policy instance enforces one limit
across all pipelines that contain it.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, ParamSpec, TypeAlias, TypeVar

from ..exception import InvalidArgument
from .events import CallSite, Observer

__all__ = (
    "Policy",
    "Runner",
    "invoke",
)

P = ParamSpec("P")
T = TypeVar("T")

Runner: TypeAlias = Callable[
    [Callable[..., Awaitable[Any]], tuple[Any, ...], dict[str, Any]], Awaitable[Any]
]
"""One step of a call: ``runner(fn, args, kwargs)`` returns an awaitable of the result."""


def invoke(fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The innermost step: call ``fn(*args, **kwargs)`` and return its awaitable."""
    return fn(*args, **kwargs)


class Policy(ABC):
    """A resilience policy: immutable, shareable between tasks and pipelines."""

    __slots__ = ("_runner",)

    name: str
    observers: tuple[Observer, ...]
    _runner: Runner

    @abstractmethod
    def bind(self, nxt: Runner, site: CallSite) -> Runner:
        """Return this policy's runner around ``nxt``; called once per pipeline build."""

    def guard_at(self, site: CallSite) -> AbstractAsyncContextManager[None]:
        """A fresh async context manager applying this policy to a block (see :meth:`guard`)."""
        raise InvalidArgument(
            f"{type(self).__name__} cannot guard a block (it would need to re-run or replace "
            "it); use call() or the decorator",
            data={"policy": type(self).__name__},
        )

    def guard(self) -> AbstractAsyncContextManager[None]:
        """A fresh ``async with`` guard for one block (timeout, bulkhead, breaker, limiter)."""
        return self.guard_at(CallSite(observers=self.observers))

    def _init_runner(self) -> None:
        # The standalone runner used by call() and the decorator, built once.
        object.__setattr__(self, "_runner", self.bind(invoke, CallSite(observers=self.observers)))

    def call(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """Run ``fn(*args, **kwargs)`` under this policy; await the result.

        Cancelling the awaiting task cancels the call at once; the policy's state is left as if
        the call had not happened (no failure recorded, slots and probe permits released).
        """
        return self._runner(fn, args, kwargs)  # type: ignore[return-value]

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function so that every call runs under this policy (see ``call``)."""
        run = self._runner

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await run(fn, args, kwargs)  # type: ignore[no-any-return]

        return wrapper
