"""Observers: names and labels, per-registry isolation, cached label children."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from prometheus_client import CollectorRegistry

from ai.backend.common.exception import ErrorCode, InvalidArgument
from ai.backend.common.metrics import (
    APIMetricObserver,
    BgTaskMetricObserver,
    CommonMetricRegistry,
    EventMetricObserver,
    LayerMetricObserver,
    MetricAlreadyRegistered,
    MetricNaming,
    ResilienceMetricObserver,
)


def _families(registry: CollectorRegistry) -> dict[str, tuple[str, set[str]]]:
    """name -> (type, label names of its samples) as collected."""
    result: dict[str, tuple[str, set[str]]] = {}
    for family in registry.collect():
        labels: set[str] = set()
        for sample in family.samples:
            labels |= set(sample.labels) - {"le"}
        result[family.name] = (family.type, labels)
    return result


def _record_all(reg: CommonMetricRegistry) -> None:
    reg.api.observe_request(method="GET", endpoint="/folders", status_code=200, duration=0.01)
    reg.event.observe_event_success(event_type="bgtask_updated", duration=0.1)
    reg.event.observe_event_failure(
        event_type="bgtask_updated", duration=0.1, exception=InvalidArgument("x")
    )
    reg.event.observe_event_dead_lettered(event_type="bgtask_updated")
    reg.event.observe_event_redelivered(event_type="bgtask_updated")
    reg.bgtask.observe_bgtask_started(task_name="clone")
    reg.bgtask.observe_bgtask_done(task_name="clone", status="success", duration=2.0)
    with reg.layer.measure(domain="client", layer="storage_proxy_client", operation="list"):
        pass
    reg.layer.observe_layer_retry(domain="client", layer="storage_proxy_client", operation="list")
    reg.resilience.observe_retry(operation="fetch")


UPSTREAM = {
    "backendai_api_request_count": (
        "counter",
        {"method", "endpoint", "domain", "operation", "error_detail", "status_code"},
    ),
    "backendai_api_request_duration_sec": (
        "histogram",
        {"method", "endpoint", "domain", "operation", "error_detail", "status_code"},
    ),
    "backendai_event_count": ("counter", {"event_type"}),
    "backendai_event_failure_count": (
        "counter",
        {"event_type", "exception", "domain", "operation", "error_detail"},
    ),
    "backendai_event_processing_time_sec": (
        "histogram",
        {"event_type", "status", "domain", "operation", "error_detail"},
    ),
    "backendai_bgtask_count": ("gauge", {"task_name"}),
    "backendai_bgtask_done_count": (
        "counter",
        {"task_name", "status", "domain", "operation", "error_detail"},
    ),
    "backendai_bgtask_processing_time_sec": (
        "histogram",
        {"task_name", "status", "domain", "operation", "error_detail"},
    ),
    "backendai_layer_operation_triggered_count": ("gauge", {"domain", "layer", "operation"}),
    "backendai_layer_operation_count": ("counter", {"domain", "layer", "operation", "success"}),
    "backendai_layer_retry_count": ("counter", {"domain", "layer", "operation"}),
    "backendai_layer_operation_duration_sec": (
        "histogram",
        {"domain", "layer", "operation", "success"},
    ),
}


def test_upstream_names() -> None:
    registry = CollectorRegistry()
    reg = CommonMetricRegistry(registry, naming=MetricNaming.UPSTREAM)
    _record_all(reg)
    families = _families(registry)
    for name, expected in UPSTREAM.items():
        assert families.get(name) == expected, name


def test_prometheus_naming_renames_only_lint_breakers() -> None:
    registry = CollectorRegistry()
    _record_all(CommonMetricRegistry(registry))
    families = _families(registry)
    renamed = {
        "backendai_api_request_duration_sec": "backendai_api_request_duration_seconds",
        "backendai_event_processing_time_sec": "backendai_event_processing_time_seconds",
        "backendai_bgtask_count": "backendai_bgtask_in_progress",
        "backendai_bgtask_processing_time_sec": "backendai_bgtask_processing_time_seconds",
        "backendai_layer_operation_triggered_count": "backendai_layer_operation_in_progress",
        "backendai_layer_operation_duration_sec": "backendai_layer_operation_duration_seconds",
    }
    for name, expected in UPSTREAM.items():
        assert families.get(renamed.get(name, name)) == expected, name


def test_registries_are_independent() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    a, b = APIMetricObserver(first), APIMetricObserver(second)
    a.observe_request(method="GET", endpoint="/x", status_code=200, duration=0.1)
    a.observe_request(method="GET", endpoint="/x", status_code=200, duration=0.1)
    b.observe_request(method="GET", endpoint="/x", status_code=200, duration=0.1)
    labels = {
        "method": "GET",
        "endpoint": "/x",
        "domain": "",
        "operation": "",
        "error_detail": "",
        "status_code": "200",
    }
    assert first.get_sample_value("backendai_api_request_count_total", labels) == 2
    assert second.get_sample_value("backendai_api_request_count_total", labels) == 1
    with pytest.raises(MetricAlreadyRegistered, match="backendai_api_request_count"):
        APIMetricObserver(first)
    for kind in (EventMetricObserver, BgTaskMetricObserver, LayerMetricObserver):
        kind(first)
        with pytest.raises(MetricAlreadyRegistered):
            kind(first)


def test_error_code_labels() -> None:
    registry = CollectorRegistry()
    api = APIMetricObserver(registry)
    code = ErrorCode("auth", "authorize", "mismatch")
    api.observe_request(
        method="POST", endpoint="/s", status_code=401, duration=0.2, error_code=code
    )
    assert (
        registry.get_sample_value(
            "backendai_api_request_count_total",
            {
                "method": "POST",
                "endpoint": "/s",
                "domain": "auth",
                "operation": "authorize",
                "error_detail": "mismatch",
                "status_code": "401",
            },
        )
        == 1
    )
    events = EventMetricObserver(registry)
    events.observe_event_failure(event_type="e", duration=1, exception=RuntimeError("boom"))
    assert (
        registry.get_sample_value(
            "backendai_event_failure_count_total",
            {
                "event_type": "e",
                "exception": "RuntimeError",
                "domain": "backendai",
                "operation": "generic",
                "error_detail": "internal-error",
            },
        )
        == 1
    )


def test_children_are_cached() -> None:
    registry = CollectorRegistry()
    api = APIMetricObserver(registry)
    for _ in range(100):
        api.observe_request(method="GET", endpoint="/a", status_code=200, duration=0.001)
    api.observe_request(method="GET", endpoint="/a", status_code=404, duration=0.001)
    assert api.cached_children() == 2
    families = {f.name: f for f in registry.collect()}
    counts = [
        s for s in families["backendai_api_request_count"].samples if s.name.endswith("_total")
    ]
    assert sorted(s.value for s in counts) == [1, 100]


def test_cache_limit_still_records() -> None:
    registry = CollectorRegistry()
    api = APIMetricObserver(registry, max_cached_children=2)
    for i in range(5):
        api.observe_request(method="GET", endpoint=f"/r{i}", status_code=200, duration=0.001)
        api.observe_request(method="GET", endpoint=f"/r{i}", status_code=200, duration=0.001)
    assert api.cached_children() == 2
    for i in range(5):
        value = registry.get_sample_value(
            "backendai_api_request_count_total",
            {
                "method": "GET",
                "endpoint": f"/r{i}",
                "domain": "",
                "operation": "",
                "error_detail": "",
                "status_code": "200",
            },
        )
        assert value == 2


def test_layer_measure_records_failure() -> None:
    registry = CollectorRegistry()
    layer = LayerMetricObserver(registry)
    labels = {"domain": "client", "layer": "agent_client", "operation": "ping"}
    seen: list[float | None] = []

    def failing_call() -> None:
        with layer.measure(**labels):
            seen.append(registry.get_sample_value("backendai_layer_operation_in_progress", labels))
            raise InvalidArgument("bad")

    with pytest.raises(InvalidArgument):
        failing_call()
    assert seen == [1]
    assert registry.get_sample_value("backendai_layer_operation_in_progress", labels) == 0
    failed = {**labels, "error_code": "backendai_generic_invalid-parameters"}
    assert registry.get_sample_value("backendai_layer_operation_error_count_total", failed) == 1
    assert (
        registry.get_sample_value(
            "backendai_layer_operation_count_total", {**labels, "success": "False"}
        )
        == 1
    )


def test_resilience_circuit_state() -> None:
    registry = CollectorRegistry()
    res = ResilienceMetricObserver(registry)
    res.observe_circuit_transition(circuit="storage", from_state="closed", to_state="open")
    assert (
        registry.get_sample_value("backendai_resilience_circuit_state", {"circuit": "storage"}) == 2
    )
    res.observe_circuit_transition(circuit="storage", from_state="open", to_state="half_open")
    assert (
        registry.get_sample_value("backendai_resilience_circuit_state", {"circuit": "storage"}) == 1
    )
    res.observe_bulkhead_entered(operation="q")
    res.observe_bulkhead_left(operation="q")
    res.observe_rejected(operation="q", reason="bulkhead_full")
    res.observe_timeout(operation="q")
    res.observe_fallback(operation="q")
    assert (
        registry.get_sample_value(
            "backendai_resilience_rejected_count_total",
            {"operation": "q", "reason": "bulkhead_full"},
        )
        == 1
    )


def test_instance_is_process_wide() -> None:
    # In a fresh interpreter: the global registry of this test process stays untouched.
    code = textwrap.dedent(
        """
        from prometheus_client import REGISTRY
        from ai.backend.common.metrics import (
            BgTaskMetricObserver, CommonMetricRegistry, ResilienceMetricObserver,
        )
        reg = CommonMetricRegistry.instance()
        assert reg is CommonMetricRegistry.instance()
        assert reg.registry is REGISTRY
        assert reg.bgtask is BgTaskMetricObserver.instance()
        assert ResilienceMetricObserver.instance() is reg.resilience
        reg.api.observe_request(method="GET", endpoint="/x", status_code=200, duration=0.1)
        assert b"backendai_api_request_count_total" in reg.render()
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.stdout.strip() == "ok", proc.stderr
