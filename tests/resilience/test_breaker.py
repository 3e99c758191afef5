"""CircuitBreaker: windows, thresholds, transitions, probes under concurrency, sharing."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ai.backend.common.exception import InvalidArgument
from ai.backend.common.resilience import (
    BreakerOpen,
    BreakerStateChanged,
    BreakerStateName,
    BreakerStateStore,
    CallRejected,
    CircuitBreaker,
    FakeClock,
    MemoryBreakerStateStore,
    Pipeline,
    RejectReason,
    WindowKind,
)
from ai.backend.common.resilience._window import FAILED, SLOW, CountWindow, TimeWindow

from ._helpers import Recorder, Script

CLOSED, OPEN, HALF_OPEN = BreakerStateName.CLOSED, BreakerStateName.OPEN, BreakerStateName.HALF_OPEN


async def ok() -> str:
    return "ok"


async def fail() -> None:
    raise ConnectionError("down")


async def run(breaker: CircuitBreaker, fn: Any) -> Any:
    try:
        return await breaker.call(fn)
    except (ConnectionError, BreakerOpen) as exc:
        return exc


async def test_opens_on_failure_rate() -> None:
    clock = FakeClock()
    rec = Recorder()
    breaker = CircuitBreaker(
        name="db", window_size=10, minimum_calls=4, clock=clock, observers=(rec,)
    )
    for _ in range(3):
        await run(breaker, fail)
    assert breaker.state is CLOSED  # 3 calls < minimum_calls
    await run(breaker, ok)  # 4 calls, 75 % failures: the success reaches the minimum
    assert breaker.state is OPEN
    (changed,) = rec.of(BreakerStateChanged)
    assert (changed.old, changed.new, changed.cause, changed.dependency) == (
        "closed",
        "open",
        "failure_rate",
        "db",
    )


async def test_stays_closed_below_threshold() -> None:
    breaker = CircuitBreaker(name="db", window_size=4, minimum_calls=4, clock=FakeClock())
    for fn in (fail, ok, ok, ok, fail, ok, ok, ok, ok):
        await run(breaker, fn)
    assert breaker.state is CLOSED
    stats = breaker.statistics()
    assert (stats.calls, stats.failures, stats.failure_rate) == (4, 0, 0.0)


async def test_count_window_slides() -> None:
    breaker = CircuitBreaker(
        name="db", window_size=4, minimum_calls=4, failure_rate_threshold=0.75, clock=FakeClock()
    )
    for fn in (fail, fail, ok, ok):
        await run(breaker, fn)
    assert breaker.statistics().failures == 2
    await run(breaker, ok)  # the first failure slides out
    assert breaker.statistics().failures == 1
    for fn in (fail, fail):
        await run(breaker, fn)
    assert breaker.state is CLOSED  # [ok, ok, fail, fail]: 50 %
    await run(breaker, fail)  # [ok, fail, fail, fail]: 75 %
    assert breaker.state is OPEN


async def test_time_window_rolls() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        name="api",
        window=WindowKind.TIME,
        window_size=10.0,
        window_buckets=10,
        minimum_calls=3,
        clock=clock,
    )
    await run(breaker, fail)
    await run(breaker, fail)
    clock.advance(5.0)
    stats = breaker.statistics()
    assert (stats.calls, stats.failures) == (2, 2)
    await run(breaker, ok)
    assert breaker.state is OPEN  # 2/3 >= 0.5 once the minimum is reached
    breaker.reset()

    await run(breaker, fail)
    await run(breaker, fail)
    clock.advance(10.5)  # both failures roll out
    assert breaker.statistics().calls == 0
    await run(breaker, fail)
    await run(breaker, ok)
    assert breaker.state is CLOSED  # 1 failure in 2 calls: below the minimum
    clock.advance(4.0)
    await run(breaker, ok)
    await run(breaker, ok)
    assert breaker.state is CLOSED  # 1 of 4
    assert breaker.statistics().failures == 1


async def test_time_window_opens_when_successes_roll_out() -> None:
    # Old successes leaving a time window raise the failure rate: the next outcome, even a
    # success, must open the breaker once the rate has reached the threshold.
    clock = FakeClock()
    rec = Recorder()
    breaker = CircuitBreaker(
        name="api",
        window=WindowKind.TIME,
        window_size=10.0,
        window_buckets=10,
        minimum_calls=5,
        failure_rate_threshold=0.5,
        clock=clock,
        observers=(rec,),
    )
    for _ in range(6):
        await run(breaker, ok)
    clock.advance(5.0)
    await run(breaker, ok)
    for _ in range(4):
        await run(breaker, fail)
    stats = breaker.statistics()
    assert (stats.state, stats.calls, stats.failures) == (CLOSED, 11, 4)  # 4/11 < 0.5
    clock.advance(5.0)  # t=10: the six successes of t=0 roll out
    await run(breaker, ok)  # 6 calls, 4 failures: 0.67
    assert breaker.state is OPEN
    (changed,) = rec.of(BreakerStateChanged)
    assert (changed.old, changed.new, changed.cause) == ("closed", "open", "failure_rate")


async def test_time_window_judges_at_the_next_outcome() -> None:
    # Time passing alone records nothing: the first call after the rate rose is admitted, and
    # its outcome opens the breaker.
    clock = FakeClock()
    breaker = CircuitBreaker(
        name="api", window=WindowKind.TIME, window_size=10.0, minimum_calls=1, clock=clock
    )
    for fn in (ok, ok, ok):
        await run(breaker, fn)
    clock.advance(5.0)
    await run(breaker, fail)  # 1 of 4
    clock.advance(5.0)  # the successes roll out: 1 of 1
    stats = breaker.statistics()
    assert (stats.state, stats.failure_rate) == (CLOSED, 1.0)
    assert await breaker.call(ok) == "ok"  # admitted: no outcome was recorded since
    assert breaker.state is OPEN  # 1 of 2 >= 0.5


async def test_open_fails_fast_then_half_opens() -> None:
    clock = FakeClock()
    rec = Recorder()
    breaker = CircuitBreaker(
        name="storage",
        window_size=2,
        minimum_calls=2,
        wait_in_open=30.0,
        half_open_calls=2,
        clock=clock,
        observers=(rec,),
    )
    await run(breaker, fail)
    await run(breaker, fail)
    assert breaker.state is OPEN
    dep = Script(["ok"])
    clock.advance(10.0)
    with pytest.raises(BreakerOpen) as info:
        await breaker.call(dep)
    assert dep.calls == 0
    err = info.value
    assert "storage" in str(err)
    assert err.policy == "storage"
    assert err.retry_after == pytest.approx(20.0)
    assert err.status_code == 503
    assert rec.of(CallRejected)[-1].reason is RejectReason.BREAKER_OPEN

    clock.advance(20.0)
    assert await breaker.call(dep) == "ok"
    assert breaker.state is HALF_OPEN
    assert await breaker.call(dep) == "ok"
    assert breaker.state is CLOSED
    assert [(e.old, e.new, e.cause) for e in rec.of(BreakerStateChanged)] == [
        ("closed", "open", "failure_rate"),
        ("open", "half_open", "wait_elapsed"),
        ("half_open", "closed", "probes_passed"),
    ]


async def test_failed_probes_reopen() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        name="s", window_size=1, minimum_calls=1, wait_in_open=5.0, half_open_calls=2, clock=clock
    )
    await run(breaker, fail)
    clock.advance(5.0)
    await run(breaker, ok)
    await run(breaker, fail)  # 1 of 2 probes failed: 50 % >= 50 %
    assert breaker.state is OPEN
    with pytest.raises(BreakerOpen) as info:
        await breaker.call(ok)
    assert info.value.retry_after == pytest.approx(5.0)


async def test_half_open_admits_exactly_n() -> None:
    clock = FakeClock()
    n = 5
    breaker = CircuitBreaker(
        name="dep", window_size=1, minimum_calls=1, half_open_calls=n, clock=clock
    )
    await run(breaker, fail)
    clock.advance(30.0)
    release = asyncio.Event()
    reached = 0
    peak = in_flight = 0

    async def dependency() -> str:
        nonlocal reached, peak, in_flight
        reached += 1
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()
        in_flight -= 1
        return "ok"

    async def caller() -> str:
        try:
            return await breaker.call(dependency)
        except BreakerOpen:
            return "rejected"

    tasks = [asyncio.create_task(caller()) for _ in range(1000)]
    for _ in range(20):
        await asyncio.sleep(0)
    assert reached == n
    assert breaker.statistics().probes_in_flight == n
    release.set()
    results = await asyncio.gather(*tasks)
    assert results.count("ok") == n
    assert results.count("rejected") == 1000 - n
    assert reached == n
    assert peak == n
    assert breaker.state is CLOSED


async def test_cancelled_probe_frees_slot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        name="dep", window_size=1, minimum_calls=1, half_open_calls=1, clock=clock
    )
    await run(breaker, fail)
    clock.advance(30.0)
    blocker = asyncio.Event()

    async def hang() -> None:
        await blocker.wait()

    probe = asyncio.create_task(breaker.call(hang))
    await asyncio.sleep(0)
    assert breaker.state is HALF_OPEN
    with pytest.raises(BreakerOpen):
        await breaker.call(ok)  # the only probe slot is taken
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.state is HALF_OPEN  # a cancelled probe is no failure
    assert await breaker.call(ok) == "ok"  # its slot was freed
    assert breaker.state is CLOSED


async def test_cancelled_call_is_not_counted() -> None:
    breaker = CircuitBreaker(name="dep", window_size=4, minimum_calls=1, clock=FakeClock())
    task = asyncio.create_task(breaker.call(asyncio.sleep, 3600))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.statistics().calls == 0
    assert breaker.state is CLOSED


async def test_stale_result_is_not_a_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(name="dep", window_size=2, minimum_calls=2, clock=clock)
    gate = asyncio.Event()

    async def slow_ok() -> str:
        await gate.wait()
        return "ok"

    slow = asyncio.create_task(breaker.call(slow_ok))  # admitted while closed
    await asyncio.sleep(0)
    await run(breaker, fail)
    await run(breaker, fail)
    assert breaker.state is OPEN
    clock.advance(30.0)
    probe = asyncio.create_task(breaker.call(slow_ok))
    await asyncio.sleep(0)
    assert breaker.state is HALF_OPEN
    gate.set()
    assert await slow == "ok"
    assert await probe == "ok"
    assert breaker.state is CLOSED
    assert breaker.statistics().calls == 0  # the stale success did not enter the new window


async def test_slow_calls_open_the_breaker() -> None:
    clock = FakeClock(auto_advance=True)
    rec = Recorder()
    breaker = CircuitBreaker(
        name="slow",
        slow_call_duration=1.0,
        slow_call_rate_threshold=0.5,
        window_size=4,
        minimum_calls=4,
        clock=clock,
        observers=(rec,),
    )

    async def takes(seconds: float) -> str:
        await clock.sleep(seconds)
        return "ok"

    for seconds in (0.1, 2.0, 0.1):
        await breaker.call(takes, seconds)
    assert breaker.statistics().slow_calls == 1
    await breaker.call(takes, 3.0)
    assert breaker.state is OPEN
    assert rec.of(BreakerStateChanged)[0].cause == "slow_call_rate"


async def test_ignored_errors_count_neither_way() -> None:
    breaker = CircuitBreaker(
        name="dep", window_size=2, minimum_calls=1, ignore_on=(KeyError,), clock=FakeClock()
    )
    with pytest.raises(KeyError):
        await breaker.call(Script([KeyError("k")]))
    assert breaker.statistics().calls == 0
    only_conn = CircuitBreaker(
        name="dep2", minimum_calls=1, record_on=(ConnectionError,), clock=FakeClock()
    )
    with pytest.raises(ValueError):
        await only_conn.call(Script([ValueError("v")]))
    assert only_conn.state is CLOSED


async def test_manual_controls() -> None:
    rec = Recorder()
    breaker = CircuitBreaker(name="m", minimum_calls=1, clock=FakeClock(), observers=(rec,))
    breaker.force_open()
    with pytest.raises(BreakerOpen) as info:
        await breaker.call(ok)
    assert info.value.retry_after is None
    assert breaker.statistics().state is BreakerStateName.FORCED_OPEN
    breaker.disable()
    for _ in range(5):
        await run(breaker, fail)
    assert breaker.statistics().state is BreakerStateName.DISABLED
    assert breaker.statistics().calls == 0
    breaker.reset()
    assert breaker.statistics().state is CLOSED
    assert {e.cause for e in rec.of(BreakerStateChanged)} == {"manual"}
    assert breaker.statistics().rejected == 1


async def test_manual_transition_reaches_every_observer_once() -> None:
    own, inner_rec, outer_rec = Recorder(), Recorder(), Recorder()
    breaker = CircuitBreaker(name="m", clock=FakeClock(), observers=(own,))
    inner = Pipeline([breaker], dependency="inner", observers=(own, inner_rec))
    Pipeline([inner], dependency="outer", observers=(outer_rec, inner_rec))
    Pipeline([breaker], dependency="again", observers=(inner_rec,))  # seen once all the same
    breaker.force_open()
    breaker.reset()
    for rec, dependency in ((own, "m"), (inner_rec, "inner"), (outer_rec, "inner")):
        changes = rec.of(BreakerStateChanged)
        assert [(e.old, e.new, e.cause) for e in changes] == [
            ("closed", "forced_open", "manual"),
            ("forced_open", "closed", "manual"),
        ]
        # labelled by the first place the observer was attached in (the breaker, else the
        # innermost pipeline around it)
        assert {(e.dependency, e.policy) for e in changes} == {(dependency, "m")}


async def test_automatic_transition_reaches_the_calling_pipeline() -> None:
    clock = FakeClock()
    rec_a, rec_b = Recorder(), Recorder()
    breaker = CircuitBreaker(name="shared", window_size=1, minimum_calls=1, clock=clock)
    a = Pipeline([breaker], dependency="a", observers=(rec_a,))
    Pipeline([breaker], dependency="b", observers=(rec_b,))
    with pytest.raises(ConnectionError):
        await a.call(fail)
    assert breaker.state is OPEN
    assert [(e.dependency, e.new) for e in rec_a.of(BreakerStateChanged)] == [("a", "open")]
    assert rec_b.events == []  # b learns of the open breaker at its next call (CallRejected)


async def test_hung_probe_holds_half_open() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(name="h", window_size=1, minimum_calls=1, clock=clock)
    await run(breaker, fail)
    clock.advance(30.0)
    probe = asyncio.create_task(breaker.call(asyncio.Event().wait))
    await asyncio.sleep(0)
    clock.advance(3600.0)
    with pytest.raises(BreakerOpen):
        await breaker.call(ok)
    assert breaker.state is HALF_OPEN
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe


async def test_guard_records_the_block() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(name="g", window_size=2, minimum_calls=2, clock=clock)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            async with breaker.guard():
                raise ConnectionError("down")
    assert breaker.state is OPEN
    with pytest.raises(BreakerOpen):
        async with breaker.guard():
            pytest.fail("an open breaker must not run the block")
    clock.advance(30.0)
    async with breaker.guard():
        pass
    assert breaker.state is CLOSED


async def test_shared_store_opens_peer() -> None:
    clock = FakeClock()
    store = MemoryBreakerStateStore(clock=clock)
    rec = Recorder()
    a = CircuitBreaker(name="redis", window_size=2, minimum_calls=2, store=store, clock=clock)
    b = CircuitBreaker(name="redis", sync_interval=1.0, store=store, clock=clock, observers=(rec,))
    assert await b.call(ok) == "ok"  # first sync: nothing shared yet
    await run(a, fail)
    await run(a, fail)
    assert a.state is OPEN
    assert await store.open_remaining("redis") == pytest.approx(30.0)
    assert await b.call(ok) == "ok"  # b syncs at most once per second
    clock.advance(1.0)
    with pytest.raises(BreakerOpen) as info:
        await b.call(ok)
    assert info.value.retry_after == pytest.approx(29.0)
    assert rec.of(BreakerStateChanged)[0].cause == "shared"
    clock.advance(29.0)
    assert await a.call(ok) == "ok"  # a probes and closes, clearing the mark
    assert a.state is CLOSED
    assert await store.open_remaining("redis") is None
    assert await b.call(ok) == "ok"  # b half-opens on its own after the shared wait
    assert b.state is CLOSED


class BrokenStore(BreakerStateStore):
    """A store whose backend is unreachable: every operation fails."""

    async def trip(self, name: str, open_for: float) -> None:
        raise ConnectionError("store down")

    async def clear(self, name: str) -> None:
        raise ConnectionError("store down")

    async def open_remaining(self, name: str) -> float | None:
        raise ConnectionError("store down")


async def test_store_errors_ignored() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        name="x", window_size=2, minimum_calls=2, store=BrokenStore(), clock=clock
    )
    assert await breaker.call(ok) == "ok"
    clock.advance(1.0)
    await run(breaker, fail)
    clock.advance(1.0)
    await run(breaker, fail)
    assert breaker.state is OPEN
    stats = breaker.statistics()
    assert stats.store_errors == 4  # three reads, one write
    clock.advance(30.0)
    assert await breaker.call(ok) == "ok"
    assert breaker.state is CLOSED


def test_invalid_settings_name_the_field() -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("name", {"name": ""}),
        ("failure_rate_threshold", {"failure_rate_threshold": 0.0}),
        ("window_size", {"window_size": 2.5}),
        ("window_size", {"window": "time", "window_size": -1.0}),
        ("minimum_calls", {"minimum_calls": 0}),
        ("half_open_calls", {"half_open_calls": 0}),
        ("wait_in_open", {"wait_in_open": -1.0}),
        ("slow_call_duration", {"slow_call_duration": 0.0}),
        ("record_on", {"record_on": ("x",)}),
    ]
    for fname, kwargs in cases:
        kwargs.setdefault("name", "b")
        with pytest.raises(InvalidArgument, match=fname):
            CircuitBreaker(**kwargs)


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 20),
    outcomes=st.lists(st.sampled_from([0, FAILED, SLOW, FAILED | SLOW]), max_size=100),
)
def test_window_counts_property(size: int, outcomes: list[int]) -> None:
    window = CountWindow(size)
    for i, outcome in enumerate(outcomes):
        window.record(outcome, 0.0)
        last = outcomes[max(0, i + 1 - size) : i + 1]
        assert window.total == len(last) <= size
        assert window.failures == sum(1 for o in last if o & FAILED) >= 0
        assert window.slow == sum(1 for o in last if o & SLOW) >= 0


@settings(max_examples=200, deadline=None)
@given(
    buckets=st.integers(1, 10),
    steps=st.lists(
        st.tuples(st.floats(0.0, 5.0), st.sampled_from([0, FAILED, SLOW, FAILED | SLOW])),
        max_size=80,
    ),
)
def test_time_window_counts_property(buckets: int, steps: list[tuple[float, int]]) -> None:
    duration = 10.0
    window = TimeWindow(duration, buckets)
    width = duration / buckets
    now = 0.0
    history: list[tuple[int, int]] = []  # (slice number, outcome)
    for advance, outcome in steps:
        now += advance
        window.record(outcome, now)
        history.append((int(now // width), outcome))
        head = int(now // width)
        live = [o for s, o in history if s > head - buckets]
        assert 0 <= window.failures <= window.total
        assert 0 <= window.slow <= window.total
        assert window.total == len(live)
        assert window.failures == sum(1 for o in live if o & FAILED)
        assert window.slow == sum(1 for o in live if o & SLOW)


@settings(max_examples=200, deadline=None)
@example(  # successes of t=0 roll out at t=6, leaving 1 failure in 2 calls
    kind=WindowKind.TIME,
    timed=False,
    threshold=0.5,
    minimum=1,
    steps=[(0.0, "ok"), (0.0, "ok"), (0.0, "ok"), (3.0, "fail"), (3.0, "ok")],
)
@given(
    kind=st.sampled_from([WindowKind.COUNT, WindowKind.TIME]),
    timed=st.booleans(),
    threshold=st.sampled_from([0.2, 0.5, 0.75, 1.0]),
    minimum=st.integers(1, 6),
    steps=st.lists(
        st.tuples(st.sampled_from([0.0, 0.0, 0.7, 3.0]), st.sampled_from(["ok", "slow", "fail"])),
        max_size=60,
    ),
)
def test_closed_breaker_stays_below_thresholds_property(
    kind: WindowKind,
    timed: bool,
    threshold: float,
    minimum: int,
    steps: list[tuple[float, str]],
) -> None:
    # After every recorded outcome, a breaker still closed has fewer calls than the minimum or
    # rates below both thresholds. With a count window a fast success never raises a rate (it
    # replaces an outcome at least as bad, or adds a call), so the cheap path that judges a
    # success only when it completes the minimum is exercised here too (timed=False).

    async def scenario() -> None:
        clock = FakeClock()
        breaker = CircuitBreaker(
            name="p",
            window=kind,
            window_size=6 if kind is WindowKind.COUNT else 5.0,
            window_buckets=5,
            minimum_calls=minimum,
            failure_rate_threshold=threshold,
            slow_call_rate_threshold=threshold,
            slow_call_duration=1.0 if timed else None,
            clock=clock,
        )

        async def call(outcome: str) -> str:
            if outcome == "slow":
                clock.advance(1.5)
            if outcome == "fail":
                raise ConnectionError("x")
            return "ok"

        for advance, outcome in steps:
            clock.advance(advance)
            if breaker.state is not CLOSED:
                breaker.reset()
            with contextlib.suppress(ConnectionError):
                await breaker.call(call, outcome)
            s = breaker.statistics()
            if s.state is CLOSED and s.calls >= min(minimum, 6):
                assert s.failures < threshold * s.calls
                if timed:
                    assert s.slow_calls < threshold * s.calls

    asyncio.run(scenario())


@settings(max_examples=100, deadline=None)
@given(
    ops=st.lists(st.sampled_from(["ok", "fail", "ignored", "advance"]), max_size=60),
    probes=st.integers(1, 4),
    size=st.integers(1, 8),
)
def test_breaker_invariants_property(ops: list[str], probes: int, size: int) -> None:
    outcomes: dict[str, Any] = {"ok": "ok", "fail": ConnectionError("x"), "ignored": KeyError("k")}

    async def scenario() -> None:
        clock = FakeClock()
        breaker = CircuitBreaker(
            name="p",
            window_size=size,
            minimum_calls=min(size, 3),
            half_open_calls=probes,
            wait_in_open=5.0,
            ignore_on=(KeyError,),
            clock=clock,
        )
        for op in ops:
            if op == "advance":
                clock.advance(3.0)
            else:
                with contextlib.suppress(ConnectionError, KeyError, BreakerOpen):
                    await breaker.call(Script([outcomes[op]]))
            stats = breaker.statistics()
            assert 0 <= stats.failures <= stats.calls <= size
            assert 0 <= stats.slow_calls <= stats.calls
            assert 0 <= stats.probes_in_flight <= probes
            if stats.state is not CLOSED:
                assert stats.calls == 0

    asyncio.run(scenario())
