"""Events, observers and the current operation name."""

from __future__ import annotations

import logging

import pytest

from ai.backend.common.resilience import (
    CallSite,
    Observer,
    ResilienceEvent,
    TimeoutOccurred,
    bind_operation,
    current_operation,
)


class Recorder:
    def __init__(self) -> None:
        self.events: list[ResilienceEvent] = []

    def on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)


class Broken:
    def on_event(self, event: ResilienceEvent) -> None:
        raise RuntimeError("observer bug")


def test_failing_observer_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    before, after = Recorder(), Recorder()
    site = CallSite(observers=(before, Broken(), after))
    event = TimeoutOccurred(dependency="d", operation="o", policy="p", timeout=1.0)
    with caplog.at_level(logging.ERROR):
        site.emit(event)
    assert before.events == [event]
    assert after.events == [event]
    assert "observer bug" in caplog.text


def test_bind_operation_restores() -> None:
    assert current_operation() is None
    with bind_operation("outer"):
        assert current_operation() == "outer"
        try:
            with bind_operation("inner"):
                assert current_operation() == "inner"
                raise ValueError("boom")
        except ValueError:
            pass
        assert current_operation() == "outer"
    assert current_operation() is None


def test_site_names_prefer_pipeline_then_bound_operation() -> None:
    assert CallSite().names("breaker") == ("breaker", "")
    assert CallSite(dependency="redis", operation="get").names("breaker") == ("redis", "get")
    with bind_operation("scan"):
        assert CallSite(dependency="redis").names("") == ("redis", "scan")


def test_recorder_is_an_observer() -> None:
    assert isinstance(Recorder(), Observer)
