"""Every public module's ``__all__`` is a tuple naming exactly what it defines publicly."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "abc",
    "breaker",
    "bulkhead",
    "clock",
    "config",
    "events",
    "exceptions",
    "fallback",
    "pipeline",
    "prometheus",
    "ratelimit",
    "retry",
    "store",
    "timeout",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_matches_definitions(name: str) -> None:
    module = importlib.import_module(f"ai.backend.common.resilience.{name}")
    exported = module.__all__
    assert isinstance(exported, tuple)
    defined = {
        key
        for key, value in vars(module).items()
        if not key.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module.__name__
    }
    assert defined <= set(exported)
    for key in exported:
        assert hasattr(module, key)
        doc = getattr(getattr(module, key), "__doc__", None)
        if inspect.isclass(getattr(module, key)) or inspect.isfunction(getattr(module, key)):
            assert doc, f"{name}.{key} has no docstring"


def test_package_reexports_every_public_name() -> None:
    package = importlib.import_module("ai.backend.common.resilience")
    assert isinstance(package.__all__, tuple)
    for key in package.__all__:
        assert hasattr(package, key)
    assert "PrometheusObserver" not in package.__all__  # prometheus is imported on demand
