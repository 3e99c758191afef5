"""Every public module's ``__all__`` is a tuple naming what it defines, each with a docstring."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "abc",
    "exceptions",
    "follow",
    "manager",
    "memory",
    "metrics",
    "redis",
    "registry",
    "reporter",
    "sse",
    "types",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_matches_definitions(name: str) -> None:
    module = importlib.import_module(f"ai.backend.common.bgtask.{name}")
    assert module.__doc__
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
        value = getattr(module, key)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, f"{name}.{key} has no docstring"


def test_package_reexports_every_public_name() -> None:
    package = importlib.import_module("ai.backend.common.bgtask")
    assert isinstance(package.__all__, tuple)
    for key in package.__all__:
        assert hasattr(package, key)
    # The Redis backend is imported on demand, so the package never imports redis-py itself.
    assert "RedisTaskStore" not in package.__all__
