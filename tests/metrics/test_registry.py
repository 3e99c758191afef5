"""The exposition: promtool-clean by default; upstream naming's known lint findings."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ai.backend.common.exception import ErrorCode
from ai.backend.common.metrics import CommonMetricRegistry, MetricNaming

from .promtool import promtool_check
from .test_observers import _record_all


def test_exposition_passes_promtool() -> None:
    reg = CommonMetricRegistry(CollectorRegistry())
    _record_all(reg)
    reg.api.observe_request(
        method="POST",
        endpoint="/folders/{name}",
        status_code=401,
        duration=0.5,
        error_code=ErrorCode("auth", "authorize", "mismatch"),
    )
    reg.resilience.observe_circuit_transition(circuit="c", from_state="closed", to_state="open")
    reg.resilience.observe_bulkhead_entered(operation="q")
    reg.resilience.observe_rejected(operation="q", reason="circuit_open")
    reg.resilience.observe_timeout(operation="q")
    reg.resilience.observe_fallback(operation="q")
    text = reg.render()
    assert b"backendai_api_request_count_total" in text
    assert b'endpoint="/folders/{name}"' in text
    code, output = promtool_check(text)
    assert code == 0, output


def test_upstream_naming_lint_findings() -> None:
    reg = CommonMetricRegistry(CollectorRegistry(), naming=MetricNaming.UPSTREAM)
    _record_all(reg)
    code, output = promtool_check(reg.render())
    assert code != 0
    findings = {line.split(" ", 1)[0] for line in output.splitlines() if line.strip()}
    findings = {f.removesuffix("_created") for f in findings}
    assert findings == {
        "backendai_api_request_duration_sec",
        "backendai_event_processing_time_sec",
        "backendai_bgtask_count",
        "backendai_bgtask_processing_time_sec",
        "backendai_layer_operation_triggered_count",
        "backendai_layer_operation_duration_sec",
    }
