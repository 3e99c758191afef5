"""Happy-path overhead per call of the resilience policies, against tenacity, stamina,
aiobreaker and the cheapest stdlib equivalent.

Each figure is the overhead of one call in ns. A round times N calls of the bare function, then
N calls of the wrapped one, several times (5; 3 with ``--quick``), and takes
``min(wrapped) - min(bare)`` per call over those repeats; the figure is the median of that over
the alternating rounds. Every implementation wraps the same ``async def`` that returns at once,
in its decorator form. ``bare_ns`` (impl ``bare``) is the bare call itself, the floor every
figure is measured above (median over the rounds of the round's fastest bare loop).

Why ``min(wrapped) - min(bare)``: timing noise on a shared machine only ever adds time, so the
minimum of each loop over the repeats is the best estimate of its noise-free cost; each sits a
little above its true floor, alike for both loops, so their difference has no pull towards low
values. The minimum of the paired differences
``wrapped - bare``, used before, picks the repeat whose bare loop was hit hardest by noise, so it
is biased low and can even go negative (it gave -151 ns for a floor). The median of the paired
differences is unbiased too but keeps the noise of both loops in every sample, so it scatters
more. The median over rounds then keeps one unlucky round from moving the figure.

Impls and metrics:

- ``ours``: ``@Retry(...)`` (retry_ns), ``@Timeout(...)`` (timeout_ns), ``@CircuitBreaker(...)``
  (breaker_ns), ``@Pipeline([Retry, CircuitBreaker, Timeout])`` (pipeline_ns);
- ``tenacity``: ``@tenacity.retry`` (retry_ns); ``stamina``: ``@stamina.retry`` (retry_ns);
- ``aiobreaker``: ``@aiobreaker.CircuitBreaker()`` (breaker_ns);
- ``floor``: a bare ``try/except`` wrapper (retry_ns), an ``asyncio.timeout`` wrapper
  (timeout_ns and pipeline_ns).

Ratios: ``retry_ns:ours/tenacity`` (target <= 0.05), ``retry_ns:ours/stamina``,
``breaker_ns:ours/aiobreaker`` (target <= 0.5), ``timeout_ns:ours/floor`` and
``pipeline_ns:ours/floor`` (target <= 1.5).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiobreaker  # no type information: see the mypy override in pyproject.toml
import stamina
import tenacity

from _bench import Report, alternate, parse_args
from ai.backend.common.resilience import Backoff, CircuitBreaker, Pipeline, Retry, Timeout

BENCH = "resilience"
IMPLS = ("ours", "tenacity", "stamina", "aiobreaker", "floor")
CHUNK = 100  # calls between two loop iterations, as in a real service


async def target() -> int:
    return 1


Fn = Callable[[], Awaitable[Any]]


def build() -> dict[str, dict[str, Fn]]:
    """The wrapped functions of each impl, by metric."""
    retry = Retry(max_attempts=3, backoff=Backoff(initial=0.1, max_delay=10.0))
    timeout = Timeout(seconds=10.0)
    breaker = CircuitBreaker(name="bench")
    pipeline = Pipeline(
        [
            Retry(max_attempts=3, backoff=Backoff(initial=0.1, max_delay=10.0)),
            CircuitBreaker(name="bench-pipeline"),
            Timeout(seconds=10.0),
        ]
    )

    async def floor_retry() -> int:
        try:
            return await target()
        except Exception:
            raise

    async def floor_timeout() -> int:
        async with asyncio.timeout(10.0):
            return await target()

    tenacity_retry = tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_random_exponential(multiplier=0.1, max=10.0),
        retry=tenacity.retry_if_exception_type(Exception),
        reraise=True,
    )(target)
    stamina_retry = stamina.retry(on=Exception, attempts=3, wait_initial=0.1, wait_max=10.0)(target)
    peer_breaker = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=30))

    return {
        "ours": {
            "retry_ns": retry(target),
            "timeout_ns": timeout(target),
            "breaker_ns": breaker(target),
            "pipeline_ns": pipeline(target),
        },
        "tenacity": {"retry_ns": tenacity_retry},
        "stamina": {"retry_ns": stamina_retry},
        "aiobreaker": {"breaker_ns": peer_breaker(target)},
        "floor": {
            "retry_ns": floor_retry,
            "timeout_ns": floor_timeout,
            "pipeline_ns": floor_timeout,
        },
    }


async def timed_loop(fn: Fn, n: int) -> int:
    """Nanoseconds for ``n`` awaited calls of ``fn``, yielding to the loop every CHUNK calls."""
    sleep = asyncio.sleep
    start = time.perf_counter_ns()
    for _ in range(n // CHUNK):
        for _ in range(CHUNK):
            await fn()
        await sleep(0)
    return time.perf_counter_ns() - start


async def measure(fn: Fn, n: int, repeats: int) -> tuple[float, float]:
    """``(min wrapped, min bare)`` over ``repeats`` paired loops of ``n`` calls, ns per call."""
    best_wrapped = best_bare = float("inf")
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            bare = await timed_loop(target, n)
            wrapped = await timed_loop(fn, n)
        finally:
            gc.enable()
        best_bare = min(best_bare, bare / n)
        best_wrapped = min(best_wrapped, wrapped / n)
    return best_wrapped, best_bare


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = 3 if args.quick else 5
    fast_n = 20_000 if args.quick else 100_000
    slow_n = 2_000 if args.quick else 10_000  # tenacity and stamina take ~10-40 us per call
    report = Report(BENCH, args.json)
    loop = asyncio.new_event_loop()
    try:
        wrapped = build()
        # Warm up every wrapper once (imports, caches, first-call paths).
        for metrics in wrapped.values():
            for fn in metrics.values():
                loop.run_until_complete(timed_loop(fn, CHUNK))

        def run(impl: str) -> dict[str, tuple[float, float]]:
            n = slow_n if impl in ("tenacity", "stamina") else fast_n
            return {
                metric: loop.run_until_complete(measure(fn, n, repeats))
                for metric, fn in wrapped[impl].items()
            }

        results = alternate(IMPLS, args.rounds, run)
    finally:
        loop.close()
    # The round's fastest bare loop, over every impl's measurements in that round.
    bare = [
        min(pair[1] for impl in IMPLS for pair in results[impl][r].values())
        for r in range(args.rounds)
    ]
    report.add("bare", "bare_ns", bare, "ns")
    for metric in ("retry_ns", "timeout_ns", "breaker_ns", "pipeline_ns"):
        for impl in IMPLS:
            samples = [r[metric][0] - r[metric][1] for r in results[impl] if metric in r]
            if samples:
                report.add(impl, metric, samples, "ns")
    report.ratio("retry_ns", "ours", "tenacity")
    report.ratio("retry_ns", "ours", "stamina")
    report.ratio("breaker_ns", "ours", "aiobreaker")
    report.ratio("timeout_ns", "ours", "floor")
    report.ratio("pipeline_ns", "ours", "floor")
    report.finish()


if __name__ == "__main__":
    main()
