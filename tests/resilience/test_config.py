"""Configs: each policy built from a pydantic model; errors name the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from ai.backend.common.exception import ConfigurationError
from ai.backend.common.resilience import (
    BackoffKind,
    BreakerConfig,
    Bulkhead,
    BulkheadConfig,
    CircuitBreaker,
    FakeClock,
    MemoryBreakerStateStore,
    PipelineConfig,
    RateLimiter,
    RateLimiterConfig,
    Retry,
    RetryBudget,
    RetryConfig,
    Timeout,
    TimeoutConfig,
    WindowKind,
    parse_config,
)


def test_build_each_policy() -> None:
    clock = FakeClock()
    retry = parse_config(
        RetryConfig,
        {
            "max_attempts": 4,
            "backoff": {"kind": "exponential", "initial": "200ms", "max_delay": 3},
            "max_elapsed": "1m",
            "budget": {"capacity": 5, "refill_per_second": 0.5},
        },
    ).build(retry_on=(ConnectionError,), clock=clock, name="redis")
    assert isinstance(retry, Retry)
    assert retry.max_attempts == 4
    assert retry.backoff.kind is BackoffKind.EXPONENTIAL
    assert (retry.backoff.initial, retry.backoff.max_delay) == (0.2, 3.0)
    assert retry.max_elapsed == 60.0
    assert retry.retry_on == (ConnectionError,)
    assert isinstance(retry.budget, RetryBudget)
    assert retry.budget.capacity == 5.0

    timeout = parse_config(TimeoutConfig, {"seconds": "1.5s"}).build(clock=clock)
    assert isinstance(timeout, Timeout)
    assert timeout.seconds == 1.5

    breaker = parse_config(
        BreakerConfig,
        {"window": "time", "window_size": 60, "minimum_calls": 20, "wait_in_open": "10s"},
    ).build("etcd", clock=clock)
    assert isinstance(breaker, CircuitBreaker)
    assert (breaker.name, breaker.window, breaker.window_size) == ("etcd", WindowKind.TIME, 60.0)
    assert (breaker.minimum_calls, breaker.wait_in_open) == (20, 10.0)

    counted = BreakerConfig(window_size=50).build("x")
    assert counted.window_size == 50
    assert isinstance(counted.window_size, int)

    bulkhead = parse_config(
        BulkheadConfig, {"max_concurrent": 8, "max_queue": 16, "queue_timeout": 2}
    ).build()
    assert isinstance(bulkhead, Bulkhead)
    assert (bulkhead.max_concurrent, bulkhead.max_queue, bulkhead.queue_timeout) == (8, 16, 2.0)

    limiter = parse_config(RateLimiterConfig, {"rate": 100, "period": "1m", "max_wait": 1}).build()
    assert isinstance(limiter, RateLimiter)
    assert (limiter.rate, limiter.period, limiter.burst, limiter.max_wait) == (
        100.0,
        60.0,
        100.0,
        1.0,
    )


def test_errors_name_the_field() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config(
            PipelineConfig,
            {"retry": {"backoff": {"initial": 5, "max_delay": 1}}, "timeout": -1},
            source="resilience.toml",
        )
    err = info.value
    locs = {e["loc"] for e in err.data["errors"]}
    assert locs == {"retry.backoff", "timeout"}
    assert "resilience.toml" in str(err)
    assert "max_delay" in str(err)

    cases: list[tuple[type[BaseModel], dict[str, Any], str]] = [
        (RetryConfig, {"max_attempts": 0}, "max_attempts"),
        (BreakerConfig, {"failure_rate_threshold": 1.5}, "failure_rate_threshold"),
        (BreakerConfig, {"window_size": 2.5}, "window_size"),
        (BulkheadConfig, {}, "max_concurrent"),
        (RateLimiterConfig, {"rate": 1, "period": "soon"}, "period"),
        (TimeoutConfig, {"seconds": 1, "extra": True}, "extra"),
    ]
    for model, data, field in cases:
        with pytest.raises(ConfigurationError, match=field):
            parse_config(model, data)


def test_pipeline_order() -> None:
    store = MemoryBreakerStateStore()
    pipeline = parse_config(
        PipelineConfig,
        {
            "deadline": 10,
            "retry": {"max_attempts": 2},
            "breaker": {},
            "rate_limit": {"rate": 10},
            "bulkhead": {"max_concurrent": 4},
            "timeout": "2s",
        },
    ).build("storage", operation="get", store=store)
    kinds = [type(p).__name__ for p in pipeline.policies]
    assert kinds == ["Timeout", "Retry", "CircuitBreaker", "RateLimiter", "Bulkhead", "Timeout"]
    first, last = pipeline.policies[0], pipeline.policies[-1]
    assert isinstance(first, Timeout)
    assert isinstance(last, Timeout)
    assert (first.seconds, last.seconds) == (10.0, 2.0)
    breaker = pipeline.policies[2]
    assert isinstance(breaker, CircuitBreaker)
    assert (breaker.name, breaker.store) == ("storage", store)
    assert (pipeline.dependency, pipeline.operation) == ("storage", "get")
    assert PipelineConfig().build("nothing").policies == ()
