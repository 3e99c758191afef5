"""Retry: backoff sequences, classification, server delays, budgets, cancellation."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai.backend.common.exception import InvalidArgument
from ai.backend.common.resilience import (
    Backoff,
    BackoffKind,
    BreakerOpen,
    FakeClock,
    Retry,
    RetryAttempted,
    RetryBudget,
    RetryExhausted,
    SupportsRetryAfter,
)

from ._helpers import Recorder, Script


class Throttled(Exception):
    def __init__(self, retry_after: float | None) -> None:
        super().__init__(f"throttled, retry after {retry_after}")
        self.retry_after = retry_after


async def test_exponential_sequence() -> None:
    clock = FakeClock(auto_advance=True)
    dep = Script([ConnectionError("down")] * 5 + ["ok"])
    retry = Retry(
        max_attempts=6,
        backoff=Backoff(kind=BackoffKind.EXPONENTIAL, initial=1.0, max_delay=5.0),
        clock=clock,
    )
    assert await retry.call(dep) == "ok"
    assert clock.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert dep.calls == 6


async def test_fixed_and_jittered_sequences() -> None:
    clock = FakeClock(auto_advance=True)
    fixed = Retry(
        max_attempts=4, backoff=Backoff(kind="fixed", initial=0.5, max_delay=1.0), clock=clock
    )
    await fixed.call(Script([OSError()] * 3 + [1]))
    assert clock.sleeps == [0.5, 0.5, 0.5]

    rng = random.Random(7)
    jitter = Backoff(kind="full_jitter", initial=1.0, max_delay=8.0, uniform=rng.uniform)
    twin = random.Random(7)
    expected = [twin.uniform(0.0, 1.0), twin.uniform(0.0, 2.0), twin.uniform(0.0, 4.0)]
    clock.sleeps.clear()
    await Retry(max_attempts=4, backoff=jitter, clock=clock).call(Script([OSError()] * 3 + [1]))
    assert clock.sleeps == expected


async def test_decorrelated_jitter_follows_previous_delay() -> None:
    rng, twin = random.Random(3), random.Random(3)
    backoff = Backoff(kind="decorrelated_jitter", initial=1.0, max_delay=30.0, uniform=rng.uniform)
    clock = FakeClock(auto_advance=True)
    await Retry(max_attempts=5, backoff=backoff, clock=clock).call(Script([OSError()] * 4 + [1]))
    previous, expected = 1.0, []
    for _ in range(4):
        previous = min(30.0, twin.uniform(1.0, max(1.0, min(30.0, previous * 3))))
        expected.append(previous)
    assert clock.sleeps == expected


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(BackoffKind)),
    initial=st.floats(0.0, 100.0),
    extra=st.floats(0.0, 1000.0),
    multiplier=st.floats(1.0, 50.0),
    retry=st.integers(1, 5000),
    previous=st.floats(0.0, 1e6),
    seed=st.integers(0, 2**32),
)
def test_backoff_within_bounds(
    kind: BackoffKind,
    initial: float,
    extra: float,
    multiplier: float,
    retry: int,
    previous: float,
    seed: int,
) -> None:
    rng = random.Random(seed)
    cap = initial + extra
    backoff = Backoff(
        kind=kind, initial=initial, max_delay=cap, multiplier=multiplier, uniform=rng.uniform
    )
    delay = backoff.delay(retry, previous)
    assert 0.0 <= delay <= cap


async def test_never_retried() -> None:
    retry = Retry(max_attempts=5, clock=FakeClock(auto_advance=True))
    for exc in (TypeError("bug"), AttributeError("bug"), NameError("bug"), AssertionError()):
        dep = Script([exc])
        with pytest.raises(type(exc)):
            await retry.call(dep)
        assert dep.calls == 1
    cancelled = Script([asyncio.CancelledError()])
    with pytest.raises(asyncio.CancelledError):
        await retry.call(cancelled)
    assert cancelled.calls == 1
    for exc2 in (KeyboardInterrupt(), SystemExit(1), asyncio.CancelledError()):
        assert not retry.is_retryable(exc2)


async def test_allow_and_deny_lists() -> None:
    clock = FakeClock(auto_advance=True)
    allow = Retry(max_attempts=3, retry_on=(ConnectionError,), clock=clock)
    other = Script([ValueError("no")])
    with pytest.raises(ValueError):
        await allow.call(other)
    assert other.calls == 1
    conn = Script([ConnectionError(), "ok"])
    assert await allow.call(conn) == "ok"

    deny = Retry(max_attempts=3, never_retry_on=ConnectionRefusedError, clock=clock)
    refused = Script([ConnectionRefusedError()])
    with pytest.raises(ConnectionRefusedError):
        await deny.call(refused)
    assert refused.calls == 1

    only_even = Retry(max_attempts=3, retry_if=lambda e: "even" in str(e), clock=clock)
    dep = Script([OSError("even"), OSError("odd")])
    with pytest.raises(OSError, match="odd"):
        await only_even.call(dep)
    assert dep.calls == 2


async def test_retry_after_honoured() -> None:
    clock = FakeClock(auto_advance=True)
    rec = Recorder()
    retry = Retry(
        max_attempts=3,
        backoff=Backoff(kind="fixed", initial=0.1, max_delay=10.0),
        clock=clock,
        observers=(rec,),
    )
    assert isinstance(Throttled(7.0), SupportsRetryAfter)
    assert await retry.call(Script([Throttled(7.0), Throttled(None), "ok"])) == "ok"
    assert clock.sleeps == [7.0, 0.1]

    too_long = Script([Throttled(60.0), "ok"])
    with pytest.raises(Throttled):
        await retry.call(too_long)
    assert too_long.calls == 1
    assert rec.of(RetryExhausted)[-1].reason == "retry_after"

    # An open breaker's retry_after is the rest of its wait.
    assert await retry.call(Script([BreakerOpen("open", retry_after=2.5), "ok"])) == "ok"
    assert clock.sleeps[-1] == 2.5


async def test_budget_stops_retry_storm() -> None:
    clock = FakeClock()
    budget = RetryBudget(capacity=3, refill_per_second=0.5, clock=clock, name="redis")
    rec = Recorder()
    retry = Retry(
        max_attempts=5,
        backoff=Backoff(kind="fixed", initial=0.0, max_delay=0.0),
        budget=budget,
        clock=clock,
        observers=(rec,),
    )
    dep = Script([ConnectionError("down")])
    for _ in range(10):
        with pytest.raises(ConnectionError):
            await retry.call(dep)
    assert dep.calls == 10 + 3  # ten first attempts, three budgeted retries
    assert budget.statistics().granted == 3
    assert [e.reason for e in rec.of(RetryExhausted)].count("budget") == 10
    clock.advance(2.0)  # refills one token
    with pytest.raises(ConnectionError):
        await retry.call(dep)
    assert dep.calls == 13 + 2
    stats = budget.statistics()
    assert stats.tokens == pytest.approx(0.0)
    assert stats.capacity == 3.0


async def test_cancel_during_sleep() -> None:
    clock = FakeClock()
    dep = Script([ConnectionError("down"), "never"])
    backoff = Backoff(kind="fixed", initial=30.0, max_delay=30.0)
    retry = Retry(max_attempts=3, backoff=backoff, clock=clock)
    task = asyncio.create_task(retry.call(dep))
    await clock.wait_pending(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert dep.calls == 1
    assert clock.pending() == 0


async def test_cancel_during_real_sleep_is_immediate() -> None:
    retry = Retry(max_attempts=3, backoff=Backoff(kind="fixed", initial=3600.0, max_delay=3600.0))
    dep = Script([ConnectionError("down"), "never"])
    task = asyncio.create_task(retry.call(dep))
    for _ in range(100):
        if dep.calls:
            break
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    async with asyncio.timeout(5):  # a deadline, not a measured duration
        with pytest.raises(asyncio.CancelledError):
            await task
    assert dep.calls == 1


async def test_last_error_reraised() -> None:
    errors = [ConnectionError("1"), ConnectionError("2"), ConnectionError("3")]
    retry = Retry(max_attempts=3, clock=FakeClock(auto_advance=True))
    with pytest.raises(ConnectionError) as info:
        await retry.call(Script(errors))
    assert info.value is errors[-1]
    assert info.value.__context__ is None  # not chained onto the earlier attempts


async def test_max_elapsed_stops() -> None:
    clock = FakeClock(auto_advance=True)
    rec = Recorder()
    retry = Retry(
        max_attempts=100,
        backoff=Backoff(kind="fixed", initial=4.0, max_delay=4.0),
        max_elapsed=10.0,
        clock=clock,
        observers=(rec,),
    )
    dep = Script([OSError("down")])
    with pytest.raises(OSError):
        await retry.call(dep)
    assert clock.sleeps == [4.0, 4.0]  # a third sleep would end 12s after the first failure
    assert dep.calls == 3
    assert rec.of(RetryExhausted)[0].reason == "deadline"


async def test_events_describe_each_retry() -> None:
    rec = Recorder()
    clock = FakeClock(auto_advance=True)
    retry = Retry(
        max_attempts=3,
        backoff=Backoff(kind="exponential", initial=1.0),
        clock=clock,
        name="r",
        observers=(rec,),
    )
    err = OSError("down")
    with pytest.raises(OSError):
        await retry.call(Script([err]))
    attempted = rec.of(RetryAttempted)
    assert [(e.attempt, e.delay, e.policy, e.dependency) for e in attempted] == [
        (1, 1.0, "r", "r"),
        (2, 2.0, "r", "r"),
    ]
    (exhausted,) = rec.of(RetryExhausted)
    assert (exhausted.attempts, exhausted.reason, exhausted.error) == (3, "attempts", err)


async def test_decorator_keeps_metadata_and_args() -> None:
    retry = Retry(max_attempts=2, clock=FakeClock(auto_advance=True))
    seen: list[tuple[int, str]] = []

    @retry
    async def fetch(key: int, *, mode: str) -> str:
        """Fetch a key."""
        seen.append((key, mode))
        if len(seen) == 1:
            raise OSError("flaky")
        return f"{key}:{mode}"

    assert await fetch(1, mode="x") == "1:x"
    assert seen == [(1, "x"), (1, "x")]
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a key."


def test_invalid_settings_name_the_field() -> None:
    with pytest.raises(InvalidArgument, match="max_attempts"):
        Retry(max_attempts=0)
    with pytest.raises(InvalidArgument, match="retry_on"):
        Retry(retry_on=("OSError",))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="max_delay"):
        Backoff(initial=2.0, max_delay=1.0)
    with pytest.raises(InvalidArgument, match="multiplier"):
        Backoff(multiplier=0.5)
    with pytest.raises(InvalidArgument, match="capacity"):
        RetryBudget(capacity=0)
    with pytest.raises(InvalidArgument, match="max_elapsed"):
        Retry(max_elapsed=-1.0)


async def test_single_attempt_is_a_pass_through() -> None:
    dep = Script([OSError("x")])
    with pytest.raises(OSError):
        await Retry(max_attempts=1).call(dep)
    assert dep.calls == 1
