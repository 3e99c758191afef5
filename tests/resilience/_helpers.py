"""Shared helpers of the resilience tests: an event recorder and a scripted dependency."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from ai.backend.common.resilience import ResilienceEvent

E = TypeVar("E", bound=ResilienceEvent)


class Recorder:
    """An observer keeping every event."""

    def __init__(self) -> None:
        self.events: list[ResilienceEvent] = []

    def on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


class Script:
    """An async dependency that raises or returns the scripted outcomes in turn."""

    def __init__(self, outcomes: Iterable[BaseException | Any]) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        outcome = self.outcomes[min(self.calls, len(self.outcomes)) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
