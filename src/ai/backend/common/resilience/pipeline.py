"""Pipeline: an immutable, ordered composition of policies, outermost first.

``Pipeline([Fallback(...), Retry(...), CircuitBreaker(...), Timeout(...)])`` runs a call as
``Fallback(Retry(CircuitBreaker(Timeout(fn))))``: the first policy sees the call first and the
result (or error) last. The usual order, and what each position means:

- ``Fallback`` outermost: it replaces the final error, after retries gave up;
- ``Timeout`` before ``Retry``: an overall deadline covering every attempt and sleep;
- ``Retry``: each attempt passes through everything after it;
- ``CircuitBreaker`` inside ``Retry``: every attempt is recorded, and an open breaker fails the
  attempt fast (its ``retry_after`` tells the retry how long the breaker stays open);
- ``RateLimiter`` / ``Bulkhead``: each attempt takes a permit or slot;
- ``Timeout`` innermost: a per-attempt limit, whose :class:`CallTimeout` the breaker records
  as a failure and the retry may retry.

The chain of runners is built once, in the constructor; a call runs it with no per-call
composition work. When the pipeline has an ``operation`` name, it is bound
(:func:`current_operation`) around each call.

Guarantees:
- policies apply in list order, outermost first
  [tests/resilience/test_pipeline.py::test_order_outermost_first];
- a pipeline works as a decorator, as ``await pipeline.call(fn, *args)``, and as
  ``async with pipeline.guard():`` when every policy can guard a block
  [tests/resilience/test_pipeline.py::test_three_forms];
- ``current_operation()`` is the pipeline's operation inside the call and restored after it
  [tests/resilience/test_pipeline.py::test_operation_bound_around_call].
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..exception import InvalidArgument
from .abc import Policy, Runner, invoke
from .events import CallSite, Observer, _operation, bind_operation

__all__ = ("Pipeline",)


def _bind_operation(run: Runner, operation: str) -> Runner:
    async def operation_runner(
        fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        token = _operation.set(operation)
        try:
            return await run(fn, args, kwargs)
        finally:
            _operation.reset(token)

    return operation_runner


async def _await(
    fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    return await fn(*args, **kwargs)


@dataclass(frozen=True, slots=True, init=False, eq=False)
class Pipeline(Policy):
    """Policies applied in order, outermost first; itself a policy, so pipelines nest."""

    policies: tuple[Policy, ...]
    """The policies, outermost first."""
    dependency: str
    """Labels the events of every policy inside (else each policy's own name is used)."""
    operation: str | None
    """Bound as :func:`current_operation` around each call and labels the events."""
    observers: tuple[Observer, ...]
    """Receive the events of every policy inside, after each policy's own observers."""

    def __init__(
        self,
        policies: Iterable[Policy] = (),
        *,
        dependency: str = "",
        operation: str | None = None,
        observers: Sequence[Observer] = (),
    ) -> None:
        items = tuple(policies)
        for i, p in enumerate(items):
            if not isinstance(p, Policy):
                raise InvalidArgument(
                    f"policies[{i}]={p!r}: not a resilience Policy",
                    data={"field": f"policies[{i}]", "value": repr(p)},
                )
        object.__setattr__(self, "policies", items)
        object.__setattr__(self, "dependency", dependency)
        object.__setattr__(self, "operation", operation)
        object.__setattr__(self, "observers", tuple(observers))
        self._init_runner()

    @property
    def name(self) -> str:  # type: ignore[override]
        """The pipeline's dependency name."""
        return self.dependency

    def _site_of(self, policy: Policy, outer: CallSite) -> CallSite:
        observers: dict[int, Observer] = {}  # by identity: a nested pipeline repeats ours
        for observer in (*policy.observers, *self.observers, *outer.observers):
            observers.setdefault(id(observer), observer)
        return CallSite(
            dependency=self.dependency or outer.dependency,
            operation=self.operation if self.operation is not None else outer.operation,
            observers=tuple(observers.values()),
        )

    def bind(self, nxt: Runner, site: CallSite) -> Runner:
        """Bind every policy, innermost first, around ``nxt``."""
        run = nxt
        for policy in reversed(self.policies):
            run = policy.bind(run, self._site_of(policy, site))
        if run is invoke:
            run = _await  # an empty pipeline still returns a coroutine
        if self.operation is not None:
            run = _bind_operation(run, self.operation)
        return run

    def guard_at(self, site: CallSite) -> AbstractAsyncContextManager[None]:
        """Enter each policy's guard in order (raises if one cannot guard a block)."""
        guards = [p.guard_at(self._site_of(p, site)) for p in self.policies]
        return _guard_all(guards, self.operation)

    def guard(self) -> AbstractAsyncContextManager[None]:
        """A fresh ``async with`` guard applying every policy to one block."""
        return self.guard_at(CallSite())

    def _init_runner(self) -> None:
        object.__setattr__(self, "_runner", self.bind(invoke, CallSite()))


@asynccontextmanager
async def _guard_all(
    guards: list[AbstractAsyncContextManager[None]], operation: str | None
) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        if operation is not None:
            stack.enter_context(bind_operation(operation))
        for g in guards:
            await stack.enter_async_context(g)
        yield
