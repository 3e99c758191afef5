"""Pipeline: order, the three forms, operation binding, cancellation through the chain."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ai.backend.common.exception import InvalidArgument
from ai.backend.common.resilience import (
    Backoff,
    BreakerOpen,
    BreakerStateName,
    Bulkhead,
    CallSite,
    CallTimeout,
    CircuitBreaker,
    FakeClock,
    Fallback,
    FallbackUsed,
    Pipeline,
    Policy,
    Retry,
    RetryAttempted,
    Runner,
    Timeout,
    TimeoutOccurred,
    current_operation,
)

from ._helpers import Recorder, Script


class Tag(Policy):
    """A policy that logs when the call passes through it, in and out."""

    __slots__ = ("log", "name", "observers")

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.observers = ()
        self._init_runner()

    def bind(self, nxt: Runner, site: CallSite) -> Runner:
        async def run(
            fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            self.log.append(f"{self.name}>")
            try:
                return await nxt(fn, args, kwargs)
            finally:
                self.log.append(f"<{self.name}")

        return run


async def test_order_outermost_first() -> None:
    log: list[str] = []
    pipeline = Pipeline([Tag("a", log), Tag("b", log), Tag("c", log)])

    async def fn() -> str:
        log.append("fn")
        return "r"

    assert await pipeline.call(fn) == "r"
    assert log == ["a>", "b>", "c>", "fn", "<c", "<b", "<a"]
    assert pipeline.policies[0].name == "a"


async def test_three_forms() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(name="dep", minimum_calls=5, window_size=5, clock=clock)
    pipeline = Pipeline(
        [Retry(max_attempts=2, clock=FakeClock(auto_advance=True)), breaker], dependency="dep"
    )
    dep = Script([ConnectionError("once"), "value"])

    @pipeline
    async def decorated(x: int) -> str:
        return f"{await dep()}-{x}"

    assert await decorated(1) == "value-1"
    assert await pipeline.call(dep) == "value"
    with pytest.raises(InvalidArgument, match="Retry cannot guard"):
        pipeline.guard()
    guarded = Pipeline([breaker, Timeout(seconds=5.0, clock=clock)])
    async with guarded.guard():
        await asyncio.sleep(0)
    assert breaker.statistics().calls == 4  # 1 failure, 2 successes, 1 guarded block


async def test_empty_and_nested_pipelines() -> None:
    assert await Pipeline().call(Script(["x"])) == "x"
    outer_rec, inner_rec = Recorder(), Recorder()
    clock = FakeClock(auto_advance=True)
    inner = Pipeline(
        [Retry(max_attempts=2, backoff=Backoff(kind="fixed", initial=1.0), clock=clock)],
        observers=(inner_rec,),
    )
    outer = Pipeline(
        [Fallback(value="fb"), inner], dependency="svc", operation="op", observers=(outer_rec,)
    )
    assert await outer.call(Script([OSError("down")])) == "fb"
    attempted = inner_rec.of(RetryAttempted)
    assert [(e.dependency, e.operation) for e in attempted] == [("svc", "op")]
    assert outer_rec.of(RetryAttempted) == attempted  # the outer pipeline sees inner events
    assert len(outer_rec.of(FallbackUsed)) == 1


async def test_operation_bound_around_call() -> None:
    rec = Recorder()
    clock = FakeClock()
    pipeline = Pipeline(
        [Timeout(seconds=1.0, clock=clock)], dependency="redis", operation="get", observers=(rec,)
    )
    seen: list[str | None] = []

    async def fn() -> None:
        seen.append(current_operation())
        await asyncio.Event().wait()

    task = asyncio.create_task(pipeline.call(fn))
    await clock.wait_pending(1)
    clock.advance(1.0)
    with pytest.raises(CallTimeout, match="'redis' \\(get\\)"):
        await task
    assert seen == ["get"]
    assert current_operation() is None
    (event,) = rec.of(TimeoutOccurred)
    assert (event.dependency, event.operation) == ("redis", "get")

    async def probe() -> str | None:
        return current_operation()

    async with Pipeline([Timeout(seconds=1.0)], operation="scan").guard():
        assert current_operation() == "scan"
    assert await Pipeline([], operation="list").call(probe) == "list"


async def test_cancel_inside_pipeline() -> None:
    breaker = CircuitBreaker(name="dep", window_size=10, minimum_calls=5)
    pipeline = Pipeline(
        [
            Retry(max_attempts=3, backoff=Backoff(kind="fixed", initial=3600.0, max_delay=3600.0)),
            breaker,
            Timeout(seconds=3600.0),
        ]
    )
    dep = Script([ConnectionError("down"), "never"])
    task = asyncio.create_task(pipeline.call(dep))
    for _ in range(10):
        await asyncio.sleep(0)
    assert dep.calls == 1  # now sleeping before the retry
    task.cancel()
    async with asyncio.timeout(5):  # a deadline, not a measured duration
        with pytest.raises(asyncio.CancelledError):
            await task
    assert dep.calls == 1
    assert breaker.statistics().calls == 1  # the failure only

    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(pipeline.call(hang))
    await started.wait()
    task.cancel()
    async with asyncio.timeout(5):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert breaker.statistics().calls == 1  # the cancelled call is no failure
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_cancel_releases_everything() -> None:
    clock = FakeClock()
    bulkhead = Bulkhead(max_concurrent=1)
    breaker = CircuitBreaker(
        name="dep", window_size=1, minimum_calls=1, half_open_calls=1, clock=clock
    )
    pipeline = Pipeline([bulkhead, breaker, Timeout(seconds=60.0, clock=clock)])
    with pytest.raises(ConnectionError):
        await pipeline.call(Script([ConnectionError("down")]))
    assert breaker.state is BreakerStateName.OPEN
    clock.advance(30.0)
    probe = asyncio.create_task(pipeline.call(asyncio.Event().wait))
    await asyncio.sleep(0)
    assert bulkhead.statistics().in_flight == 1
    assert breaker.statistics().probes_in_flight == 1
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert bulkhead.statistics().in_flight == 0
    assert breaker.statistics().probes_in_flight == 0
    assert breaker.statistics().state is BreakerStateName.HALF_OPEN
    assert await pipeline.call(Script(["ok"])) == "ok"
    assert breaker.statistics().state is BreakerStateName.CLOSED


async def test_retry_stops_at_an_open_breaker_with_a_long_wait() -> None:
    clock = FakeClock(auto_advance=True)
    breaker = CircuitBreaker(
        name="dep", window_size=2, minimum_calls=2, wait_in_open=60.0, clock=clock
    )
    pipeline = Pipeline(
        [Retry(max_attempts=10, backoff=Backoff(kind="fixed", initial=1.0), clock=clock), breaker]
    )
    dep = Script([ConnectionError("down")])
    with pytest.raises(BreakerOpen):
        await pipeline.call(dep)
    assert dep.calls == 2  # the breaker opened; its 60s wait exceeds the 10s backoff cap


async def test_retry_waits_for_a_short_open_breaker() -> None:
    clock = FakeClock(auto_advance=True)
    breaker = CircuitBreaker(
        name="dep", window_size=2, minimum_calls=2, wait_in_open=5.0, clock=clock
    )
    pipeline = Pipeline(
        [Retry(max_attempts=5, backoff=Backoff(kind="fixed", initial=1.0), clock=clock), breaker]
    )
    dep = Script([ConnectionError("1"), ConnectionError("2"), "ok"])
    assert await pipeline.call(dep) == "ok"
    assert clock.sleeps == [1.0, 1.0, 4.0]  # the last sleep is the breaker's retry_after
    assert dep.calls == 3


def test_policies_are_immutable_and_compared_by_identity() -> None:
    retry = Retry(max_attempts=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        retry.max_attempts = 5  # type: ignore[misc]
    pipeline = Pipeline([retry])
    with pytest.raises(dataclasses.FrozenInstanceError):
        pipeline.policies = ()  # type: ignore[misc]
    twin = CircuitBreaker(name="same")
    assert twin != CircuitBreaker(name="same")  # same settings, distinct state
    assert len({twin, twin}) == 1


def test_rejects_non_policies() -> None:
    with pytest.raises(InvalidArgument, match=r"policies\[1\]"):
        Pipeline([Timeout(seconds=1.0), "retry"])  # type: ignore[list-item]
