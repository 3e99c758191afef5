"""TaskRegistry: names, manifests and their validation."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from ai.backend.common.bgtask import (
    DuplicateTaskName,
    InvalidTaskArgs,
    ProgressReporter,
    TaskRegistry,
    UnknownTaskName,
)


class PullArgs(BaseModel):
    image: str
    retries: int = 3


async def pull(reporter: ProgressReporter, args: PullArgs) -> None:
    return None


def test_duplicate_and_invalid_args() -> None:
    registry = TaskRegistry()
    definition = registry.register("image_pull", PullArgs, pull, resumable=True)
    assert definition.resumable
    assert registry.get("image_pull") is definition
    assert "image_pull" in registry
    assert len(registry) == 1
    assert list(registry) == [definition]
    with pytest.raises(DuplicateTaskName, match="image_pull"):
        registry.register("image_pull", PullArgs, pull)
    with pytest.raises(UnknownTaskName, match="image_push"):
        registry.resolve("image_push")
    assert registry.get("image_push") is None

    assert definition.validate({"image": "python:3.11"}) == PullArgs(image="python:3.11")
    same = PullArgs(image="x")
    assert definition.validate(same) is same
    with pytest.raises(InvalidTaskArgs) as caught:
        definition.validate({"retries": "many"})
    assert "image" in str(caught.value)
    assert "retries" in str(caught.value)
    assert {e["loc"] for e in caught.value.data["errors"]} == {"image", "retries"}


def test_decorator_registers() -> None:
    registry = TaskRegistry()

    @registry.task("noop", PullArgs)
    async def noop(reporter: ProgressReporter, args: PullArgs) -> str:
        return "ok"

    found = registry.resolve("noop")
    assert found.handler is noop
    assert not found.resumable
    with pytest.raises(InvalidTaskArgs):
        registry.register("", PullArgs, noop)
