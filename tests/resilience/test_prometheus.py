"""PrometheusObserver: events become backendai_resilience_* metrics."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from ai.backend.common.resilience import (
    Backoff,
    BreakerOpen,
    BreakerStateChanged,
    CallRejected,
    CircuitBreaker,
    FakeClock,
    FallbackUsed,
    Pipeline,
    RejectReason,
    Retry,
    RetryAttempted,
    RetryExhausted,
    TimeoutOccurred,
)
from ai.backend.common.resilience.prometheus import PrometheusObserver

from ._helpers import Script


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_events_become_metrics() -> None:
    registry = CollectorRegistry()
    obs = PrometheusObserver(registry=registry)
    base = {"dependency": "redis", "operation": "get", "policy": "p"}
    err = OSError("x")
    obs.on_event(RetryAttempted(**base, attempt=1, delay=0.2, error=err))
    obs.on_event(RetryAttempted(**base, attempt=2, delay=0.4, error=err))
    obs.on_event(RetryExhausted(**base, attempts=3, reason="budget", error=err))
    obs.on_event(CallRejected(**base, reason=RejectReason.BULKHEAD_FULL))
    obs.on_event(TimeoutOccurred(**base, timeout=1.0))
    obs.on_event(FallbackUsed(**base, error=err))
    obs.on_event(BreakerStateChanged(**base, old="closed", new="open", cause="failure_rate"))
    labels = {"dependency": "redis", "operation": "get"}
    assert value(registry, "backendai_resilience_retries_total", **labels) == 2.0
    assert value(registry, "backendai_resilience_retry_delay_seconds_count", **labels) == 2.0
    assert value(registry, "backendai_resilience_retry_delay_seconds_sum", **labels) == (
        pytest.approx(0.6)
    )
    assert (
        value(registry, "backendai_resilience_retries_exhausted_total", **labels, reason="budget")
        == 1.0
    )
    rejected = "backendai_resilience_calls_rejected_total"
    assert value(registry, rejected, **labels, reason="bulkhead_full") == 1.0
    assert value(registry, "backendai_resilience_timeouts_total", **labels) == 1.0
    assert value(registry, "backendai_resilience_fallbacks_total", **labels) == 1.0
    transition = {"dependency": "redis", "breaker": "p", "from_state": "closed", "to_state": "open"}
    assert value(registry, "backendai_resilience_breaker_transitions_total", **transition) == 1.0
    state = "backendai_resilience_breaker_state"
    assert value(registry, state, dependency="redis", breaker="p", state="open") == 1.0
    assert value(registry, state, dependency="redis", breaker="p", state="closed") == 0.0


async def test_pipeline_labels() -> None:
    registry = CollectorRegistry()
    obs = PrometheusObserver(registry=registry)
    clock = FakeClock(auto_advance=True)
    breaker = CircuitBreaker(name="etcd-breaker", window_size=2, minimum_calls=2, clock=clock)
    pipeline = Pipeline(
        [Retry(max_attempts=3, backoff=Backoff(kind="fixed", initial=1.0), clock=clock), breaker],
        dependency="etcd",
        operation="put",
        observers=(obs,),
    )
    with pytest.raises(BreakerOpen):  # two failures open the breaker; the third attempt fails fast
        await pipeline.call(Script([ConnectionError("down")]))
    labels = {"dependency": "etcd", "operation": "put"}
    assert value(registry, "backendai_resilience_retries_total", **labels) == 2.0
    assert (
        value(
            registry,
            "backendai_resilience_calls_rejected_total",
            **labels,
            reason="breaker_open",
        )
        == 1.0
    )
    state = {"dependency": "etcd", "breaker": "etcd-breaker", "state": "open"}
    assert value(registry, "backendai_resilience_breaker_state", **state) == 1.0


async def test_pipeline_gauge_follows_manual_transitions() -> None:
    registry = CollectorRegistry()
    obs = PrometheusObserver(registry=registry)
    breaker = CircuitBreaker(name="etcd-breaker", window_size=1, minimum_calls=1, clock=FakeClock())
    pipeline = Pipeline([breaker], dependency="etcd", operation="put", observers=(obs,))
    with pytest.raises(ConnectionError):
        await pipeline.call(Script([ConnectionError("down")]))

    def gauge() -> dict[str, float | None]:
        return {
            state: value(
                registry,
                "backendai_resilience_breaker_state",
                dependency="etcd",
                breaker="etcd-breaker",
                state=state,
            )
            for state in ("closed", "open", "forced_open", "disabled")
        }

    assert gauge() == {"closed": 0.0, "open": 1.0, "forced_open": 0.0, "disabled": 0.0}
    breaker.force_open()
    assert gauge() == {"closed": 0.0, "open": 0.0, "forced_open": 1.0, "disabled": 0.0}
    breaker.disable()
    assert gauge() == {"closed": 0.0, "open": 0.0, "forced_open": 0.0, "disabled": 1.0}
    breaker.reset()
    assert gauge() == {"closed": 1.0, "open": 0.0, "forced_open": 0.0, "disabled": 0.0}
    transition = {"dependency": "etcd", "breaker": "etcd-breaker"}
    name = "backendai_resilience_breaker_transitions_total"
    assert value(registry, name, **transition, from_state="open", to_state="forced_open") == 1.0
    assert value(registry, name, **transition, from_state="disabled", to_state="closed") == 1.0


def test_one_observer_per_registry() -> None:
    registry = CollectorRegistry()
    PrometheusObserver(registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusObserver(registry=registry)
    PrometheusObserver(registry=registry, prefix="other")  # another prefix is fine
