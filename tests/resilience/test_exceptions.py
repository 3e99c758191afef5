"""The resilience error tree: classes, codes, builtins, pickling."""

from __future__ import annotations

import pickle

from ai.backend.common.exception import BackendAIError, OperationTimeout, ServiceUnavailable
from ai.backend.common.resilience import (
    BreakerOpen,
    BulkheadFull,
    CallNotPermitted,
    CallTimeout,
    RateLimited,
    ResilienceError,
)


def test_tree_and_codes() -> None:
    for cls in (BreakerOpen, BulkheadFull, RateLimited):
        assert issubclass(cls, CallNotPermitted)
        assert issubclass(cls, ResilienceError)
    assert issubclass(ResilienceError, BackendAIError)
    assert not issubclass(CallNotPermitted, ServiceUnavailable)
    assert issubclass(CallTimeout, TimeoutError)
    assert issubclass(CallTimeout, OperationTimeout)
    assert str(BreakerOpen("x").error_code()) == "resilience_execute_unavailable"
    assert str(RateLimited("x").error_code()) == "resilience_execute_too-many-requests"
    assert str(CallTimeout("x").error_code()) == "resilience_execute_timeout"
    assert CallTimeout("x").status_code == 504


def test_pickle_round_trip() -> None:
    errors: list[BackendAIError] = [
        BreakerOpen("open", policy="db", retry_after=1.5),
        RateLimited("slow down", policy="api", retry_after=0.25),
        CallTimeout("late", timeout=2.0, policy="t"),
    ]
    for err in errors:
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err)
        assert str(copy) == str(err)
        assert copy.data == err.data
        assert copy.__dict__ == err.__dict__


def test_problem_names_the_breaker() -> None:
    body = BreakerOpen("circuit breaker 'db' is open", policy="db", retry_after=3.0).problem()
    assert body["data"] == {"policy": "db", "retry_after": 3.0}
    assert "db" in body["msg"]
