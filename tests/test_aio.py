"""Tests of ai.backend.common.aio: TaskOwner (the task group a resource owns), map_errors."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from ai.backend.common.aio import (
    AsyncResource,
    ErrorTable,
    TaskOwner,
    TaskOwnerAlreadyStarted,
    TaskOwnerStopped,
    map_errors,
)
from ai.backend.common.exception import BackendAIError, ServiceUnavailable


async def test_stop_cancels_every_task() -> None:
    owner = TaskOwner("res")
    await owner.start()
    assert owner.running
    started = [asyncio.Event(), asyncio.Event()]
    cancelled: list[str] = []

    async def loop(i: int) -> None:
        started[i].set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(f"loop-{i}")
            raise

    tasks = [owner.spawn(loop(i), f"loop-{i}") for i in range(2)]
    assert [t.get_name() for t in tasks] == ["res-loop-0", "res-loop-1"]
    for event in started:
        await event.wait()
    await owner.stop()
    assert sorted(cancelled) == ["loop-0", "loop-1"]
    assert all(t.cancelled() for t in tasks)
    assert not owner.running
    await owner.stop()  # idempotent


async def test_a_failure_is_raised_from_stop() -> None:
    owner = TaskOwner("res")
    await owner.start()
    sibling_cancelled = asyncio.Event()

    async def sibling() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            sibling_cancelled.set()
            raise

    async def broken() -> None:
        raise KeyError("bug")

    owner.spawn(sibling(), "sibling")
    owner.spawn(broken(), "broken")
    await sibling_cancelled.wait()  # the failure cancels the others at once
    with pytest.raises(ExceptionGroup) as info:
        await owner.stop()
    assert info.group_contains(KeyError, match="bug")


async def test_spawn_after_stop_raises() -> None:
    owner = TaskOwner("res")
    ran = False

    async def work() -> None:
        nonlocal ran
        ran = True

    before = work()
    with pytest.raises(TaskOwnerStopped, match="res: background tasks are not running"):
        owner.spawn(before, "early")
    assert inspect.getcoroutinestate(before) == inspect.CORO_CLOSED  # never run
    await owner.start()
    await owner.stop()
    after = work()
    with pytest.raises(TaskOwnerStopped) as info:
        owner.spawn(after, "late")
    assert inspect.getcoroutinestate(after) == inspect.CORO_CLOSED
    assert not ran
    assert isinstance(info.value, BackendAIError)
    assert isinstance(info.value, RuntimeError)
    assert str(info.value.error_code()) == "backendai_execute_canceled"
    assert info.value.data == {"owner": "res", "task": "late"}


async def test_spawn_after_a_failure_raises() -> None:
    owner = TaskOwner("res")
    await owner.start()

    async def broken() -> None:
        raise KeyError("bug")

    task = owner.spawn(broken(), "broken")
    with pytest.raises(KeyError):
        await task
    await asyncio.sleep(0)  # let the group see the failure and end
    async with asyncio.timeout(5):
        while owner.running:  # noqa: ASYNC110 (the group ends within a few loop turns)
            await asyncio.sleep(0)

    async def work() -> None:
        pass

    with pytest.raises(TaskOwnerStopped):
        owner.spawn(work(), "after-failure")
    with pytest.raises(ExceptionGroup):
        await owner.stop()


async def _slow_to_cancel(release: asyncio.Event, cancelling: asyncio.Event) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelling.set()
        await release.wait()  # e.g. a final flush on close
        raise


async def _idle() -> None:
    await asyncio.Event().wait()


async def test_spawn_while_siblings_are_cancelling_raises_stopped() -> None:
    owner = TaskOwner("res")
    await owner.start()
    release, cancelling = asyncio.Event(), asyncio.Event()

    async def boom() -> None:
        raise RuntimeError("loop bug")

    owner.spawn(_slow_to_cancel(release, cancelling), "flusher")
    failed = owner.spawn(boom(), "worker")
    await cancelling.wait()  # the failure happened; the group is aborting, not finished
    assert failed.done()
    assert not owner.running
    late = _idle()
    with pytest.raises(TaskOwnerStopped):
        owner.spawn(late, "heartbeat")
    assert inspect.getcoroutinestate(late) == inspect.CORO_CLOSED
    release.set()
    with pytest.raises(ExceptionGroup) as info:
        await owner.stop()
    assert info.group_contains(RuntimeError, match="loop bug")


async def test_spawn_into_a_cancelled_group_raises_stopped() -> None:
    owner = TaskOwner("res")
    await owner.start()
    release, cancelling = asyncio.Event(), asyncio.Event()
    owner.spawn(_slow_to_cancel(release, cancelling), "flusher")
    (runner,) = [t for t in asyncio.all_tasks() if t.get_name() == "res-tasks"]
    runner.cancel()  # e.g. the loop shutting down: the group aborts by itself
    await cancelling.wait()
    late = _idle()
    with pytest.raises(TaskOwnerStopped) as info:
        owner.spawn(late, "heartbeat")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert inspect.getcoroutinestate(late) == inspect.CORO_CLOSED
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await owner.stop()
    assert runner.cancelled()


async def test_start_twice_raises() -> None:
    owner = TaskOwner("res")
    await owner.start()
    first = owner.spawn(_idle(), "first")
    with pytest.raises(TaskOwnerAlreadyStarted) as info:
        await owner.start()
    assert isinstance(info.value, BackendAIError)
    assert isinstance(info.value, RuntimeError)
    assert info.value.data == {"owner": "res"}
    assert owner.running
    second = owner.spawn(_idle(), "second")
    await owner.stop()
    assert first.cancelled()
    assert second.cancelled()
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("res-")] == []
    with pytest.raises(TaskOwnerAlreadyStarted):
        await owner.start()  # no restart after stop()
    assert not owner.running


class _Unavailable(ServiceUnavailable):
    """A package's 'backend unavailable' leaf, for the mapping tests."""


class _Failed(BackendAIError):
    """A package's base error, for the mapping tests."""


class _NativeError(Exception):
    pass


class _NativeConnectionError(_NativeError):
    pass


_TABLE: ErrorTable = {
    (_NativeConnectionError, ConnectionResetError): _Unavailable,
    _NativeError: _Failed,
}


def test_map_errors_first_match_in_order() -> None:
    for native, ours in [
        (_NativeConnectionError("refused"), _Unavailable),
        (ConnectionResetError("reset"), _Unavailable),
        (_NativeError("bad reply"), _Failed),
    ]:
        with pytest.raises(ours) as info, map_errors("get('k')", _TABLE):
            raise native
        assert type(info.value) is ours
        assert str(info.value) == f"get('k'): {native}"
        assert info.value.__cause__ is native
    with pytest.raises(KeyError), map_errors("get('k')", _TABLE):
        raise KeyError("unmapped")
    with pytest.raises(asyncio.CancelledError), map_errors("get('k')", {BaseException: _Failed}):
        raise asyncio.CancelledError
    with map_errors("get('k')", _TABLE):
        pass  # no error, nothing raised


class _Recorder(AsyncResource):
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def open(self) -> None:
        self.calls.append("open")

    async def aclose(self) -> None:
        self.calls.append("aclose")


async def test_async_resource_opens_and_closes() -> None:
    resource = _Recorder()
    async with resource as entered:
        assert entered is resource
        assert resource.calls == ["open"]
    assert resource.calls == ["open", "aclose"]
    failing = _Recorder()
    with pytest.raises(LookupError):
        async with failing:
            raise LookupError("inside the block")
    assert failing.calls == ["open", "aclose"]


def test_async_resource_requires_open_and_aclose() -> None:
    class OnlyOpen(AsyncResource):
        async def open(self) -> None:
            return None

    with pytest.raises(TypeError):
        OnlyOpen()  # type: ignore[abstract]
