"""Resilience policies for asyncio calls: retry, timeout, circuit breaker, bulkhead, rate
limiter and fallback, composed in a :class:`Pipeline`, observable through typed events.

Every client of this package (Redis, etcd, agent RPC, HTTP) wraps its calls in these policies,
and applications use them for their own calls::

    pipeline = Pipeline(
        [Fallback(value=None, on=(BreakerOpen,)), Retry(max_attempts=3),
         CircuitBreaker(name="storage"), Timeout(seconds=2.0)],
        dependency="storage", operation="get_volume",
    )

    @pipeline
    async def get_volume(name: str) -> Volume | None: ...

    await pipeline.call(get_volume_raw, "vol1")        # or wrap a call
    async with Pipeline([bulkhead, breaker, timeout]).guard():   # or guard a block
        ...

Policies are immutable and shared freely between tasks and pipelines; runtime state (a breaker's
window, a bulkhead's slots, a budget's tokens) lives in a state object owned by the policy and is
updated without any ``await`` between a read and its write, so no lock is needed. Every
time-dependent policy takes a :class:`Clock`; :class:`FakeClock` makes tests deterministic.
Events reach :class:`Observer` s; ``resilience.prometheus.PrometheusObserver`` turns them
into ``backendai_resilience_*`` metrics. The configs of :mod:`.config` build each policy from
pydantic models.

Guarantees:
- exactly N probes reach the dependency when 1,000 callers hit a half-open breaker
  [tests/resilience/test_breaker.py::test_half_open_admits_exactly_n];
- cancelling a caller during a retry sleep or inside a timed call propagates at once and leaves
  no task behind [tests/resilience/test_pipeline.py::test_cancel_inside_pipeline];
- a cancelled call is not a failure, and releases its bulkhead slot and its probe slot
  [tests/resilience/test_pipeline.py::test_cancel_releases_everything];
- a breaker around a Redis server that is stopped opens, fails fast, probes and closes once
  the server is back [tests/resilience/test_redis_fault.py::test_breaker_against_stopped_redis];
- happy-path overhead per call: retry under 1/20 of tenacity's, breaker under half of
  aiobreaker's, retry+breaker+timeout under 1.5x a bare ``asyncio.timeout``
  [benchmarks/resilience.py].

Limits:
- the shared breaker state store shares only the *open* state; each process probes and closes
  on its own [tests/resilience/test_breaker.py::test_shared_store_opens_peer];
- policies are asyncio-only (no trio), and a policy's state assumes one event loop thread at a
  time [tests/resilience/test_timeout.py::test_new_loop_new_queue].
"""

from .abc import Policy, Runner, invoke
from .breaker import BreakerStateName, BreakerStatistics, CircuitBreaker, WindowKind
from .bulkhead import Bulkhead, BulkheadStatistics
from .clock import SYSTEM_CLOCK, Clock, FakeClock, SystemClock, TimerHandle
from .config import (
    BackoffConfig,
    BreakerConfig,
    BulkheadConfig,
    PipelineConfig,
    RateLimiterConfig,
    RetryBudgetConfig,
    RetryConfig,
    TimeoutConfig,
    parse_config,
)
from .events import (
    BreakerStateChanged,
    CallRejected,
    CallSite,
    FallbackUsed,
    Observer,
    RejectReason,
    ResilienceEvent,
    RetryAttempted,
    RetryExhausted,
    TimeoutOccurred,
    bind_operation,
    current_operation,
)
from .exceptions import (
    BreakerOpen,
    BulkheadFull,
    CallNotPermitted,
    CallTimeout,
    RateLimited,
    ResilienceError,
)
from .fallback import Fallback
from .pipeline import Pipeline
from .ratelimit import RateLimiter, RateLimiterStatistics
from .retry import (
    NEVER_RETRIED,
    Backoff,
    BackoffKind,
    ExceptionTypes,
    Retry,
    RetryBudget,
    RetryBudgetStatistics,
    SupportsRetryAfter,
)
from .store import BreakerStateStore, MemoryBreakerStateStore
from .timeout import Timeout

__all__ = (
    "NEVER_RETRIED",
    "SYSTEM_CLOCK",
    "Backoff",
    "BackoffConfig",
    "BackoffKind",
    "BreakerConfig",
    "BreakerOpen",
    "BreakerStateChanged",
    "BreakerStateName",
    "BreakerStateStore",
    "BreakerStatistics",
    "Bulkhead",
    "BulkheadConfig",
    "BulkheadFull",
    "BulkheadStatistics",
    "CallNotPermitted",
    "CallRejected",
    "CallSite",
    "CallTimeout",
    "CircuitBreaker",
    "Clock",
    "ExceptionTypes",
    "FakeClock",
    "Fallback",
    "FallbackUsed",
    "MemoryBreakerStateStore",
    "Observer",
    "Pipeline",
    "PipelineConfig",
    "Policy",
    "RateLimited",
    "RateLimiter",
    "RateLimiterConfig",
    "RateLimiterStatistics",
    "RejectReason",
    "ResilienceError",
    "ResilienceEvent",
    "Retry",
    "RetryAttempted",
    "RetryBudget",
    "RetryBudgetConfig",
    "RetryBudgetStatistics",
    "RetryConfig",
    "RetryExhausted",
    "Runner",
    "SupportsRetryAfter",
    "SystemClock",
    "Timeout",
    "TimeoutConfig",
    "TimeoutOccurred",
    "TimerHandle",
    "WindowKind",
    "bind_operation",
    "current_operation",
    "invoke",
    "parse_config",
)
