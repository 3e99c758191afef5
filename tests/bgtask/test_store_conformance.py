"""The task-store interface's promises, run against every backend (memory, Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid

import pytest

from ai.backend.common.bgtask import (
    AbstractTaskStore,
    Lease,
    LeaseStatus,
    StaleFencingToken,
    TaskAlreadyExists,
    TaskAlreadyFinished,
    TaskId,
    TaskNotFound,
    TaskOutcome,
    TaskState,
    TaskStoreUnavailable,
)
from ai.backend.common.exception import InvalidArgument

from .conftest import StoreBackend


def new_id() -> TaskId:
    return TaskId(uuid.uuid4())


async def create(
    store: AbstractTaskStore,
    backend: StoreBackend,
    *,
    owner: str = "node-a",
    name: str = "job",
    tags: tuple[str, ...] = (),
    retention: float = 60.0,
) -> TaskId:
    task_id = new_id()
    await store.create(
        task_id,
        name,
        owner=owner,
        lease_ttl=backend.lease,
        args={"n": 1, "nested": {"x": [1, 2]}},
        tags=tags,
        resumable=True,
        retention=retention,
    )
    return task_id


async def test_create_get_and_list(store: AbstractTaskStore, backend: StoreBackend) -> None:
    a1 = await create(store, backend, owner="node-a", tags=("images", "user:1"))
    a2 = await create(store, backend, owner="node-a", tags=("images",))
    b1 = await create(store, backend, owner="node-b", tags=("user:1",))

    record = await store.get(a1)
    assert record is not None
    assert record.task_id == a1
    assert record.name == "job"
    assert record.owner == "node-a"
    assert record.state is TaskState.PENDING
    assert record.token == 1
    assert record.run_count == 0
    assert record.args == {"n": 1, "nested": {"x": [1, 2]}}
    assert record.tags == ("images", "user:1")
    assert record.resumable
    assert record.lease_expires_at is not None
    assert record.lease_expires_at > record.created_at
    assert await store.get(new_id()) is None

    assert [r.task_id for r in await store.list_tasks(owner="node-a")] == [a1, a2]
    assert [r.task_id for r in await store.list_tasks(tag="user:1")] == [a1, b1]
    assert [r.task_id for r in await store.list_tasks(owner="node-b", tag="images")] == []
    assert {r.task_id for r in await store.list_tasks()} == {a1, a2, b1}

    await store.mark_running(Lease(a2, "node-a", 1), lease_ttl=backend.lease)
    running = await store.list_tasks(states=[TaskState.RUNNING])
    assert [r.task_id for r in running] == [a2]


async def test_duplicate_id_raises(store: AbstractTaskStore, backend: StoreBackend) -> None:
    task_id = await create(store, backend)
    with pytest.raises(TaskAlreadyExists, match=str(task_id)):
        await store.create(task_id, "job", owner="x", lease_ttl=1.0, retention=1.0)


async def test_mark_running_counts_runs(store: AbstractTaskStore, backend: StoreBackend) -> None:
    task_id = await create(store, backend)
    lease = Lease(task_id, "node-a", 1)
    first = await store.mark_running(lease, lease_ttl=backend.lease)
    assert first.state is TaskState.RUNNING
    assert first.run_count == 1
    assert first.started_at is not None
    again = await store.mark_running(lease, lease_ttl=backend.lease)
    assert again.run_count == 2
    assert again.started_at == first.started_at


async def test_progress_and_checkpoint(store: AbstractTaskStore, backend: StoreBackend) -> None:
    task_id = await create(store, backend)
    lease = Lease(task_id, "node-a", 1)
    await store.mark_running(lease, lease_ttl=backend.lease)
    await store.update_progress(lease, current=3, total=10, message="step 3")
    record = await store.get(task_id)
    assert record is not None
    assert (record.current, record.total, record.message) == (3.0, 10.0, "step 3")
    assert record.checkpoint is None

    await store.update_progress(
        lease, current=4, total=10, checkpoint={"done": [1, 2, 3]}, save_checkpoint=True
    )
    await store.update_progress(lease, current=5, total=10)
    record = await store.get(task_id)
    assert record is not None
    assert record.current == 5.0
    assert record.message is None
    assert record.checkpoint == {"done": [1, 2, 3]}


async def test_stale_token_is_rejected(store: AbstractTaskStore, backend: StoreBackend) -> None:
    task_id = await create(store, backend)
    old = Lease(task_id, "node-a", 1)
    await store.mark_running(old, lease_ttl=backend.lease)
    await store.update_progress(old, current=1, total=10, message="by a")
    await backend.advance(backend.lease + 0.05)
    adopted = await store.adopt(task_id, "node-b", lease_ttl=backend.lease)
    assert adopted is not None
    assert adopted.token == 2
    assert adopted.owner == "node-b"
    new = adopted.lease
    await store.update_progress(new, current=2, total=10, message="by b")

    # The paused old owner wakes up: every write it tries is rejected and changes nothing.
    with pytest.raises(StaleFencingToken) as caught:
        await store.update_progress(old, current=9, total=10, message="late write by a")
    text = str(caught.value)
    assert "node-a" in text
    assert "token 1" in text
    assert "node-b" in text
    assert "token 2" in text
    with pytest.raises(StaleFencingToken):
        await store.finish(old, TaskOutcome(TaskState.SUCCEEDED, message="a thinks it is done"))
    with pytest.raises(StaleFencingToken):
        await store.mark_running(old, lease_ttl=backend.lease)
    with pytest.raises(StaleFencingToken):
        await store.release(old)
    renewed = await store.renew("node-a", [old], lease_ttl=backend.lease)
    assert renewed == {task_id: LeaseStatus.LOST}

    record = await store.get(task_id)
    assert record is not None
    assert record.state is TaskState.RUNNING
    assert record.owner == "node-b"
    assert record.token == 2
    assert record.message == "by b"
    assert record.current == 2.0
    assert record.previous_owner == "node-a"


async def test_adopt_needs_an_expired_lease(
    store: AbstractTaskStore, backend: StoreBackend
) -> None:
    task_id = await create(store, backend)
    assert await store.adopt(task_id, "node-b", lease_ttl=backend.lease) is None
    assert await store.expired() == []
    await backend.advance(backend.lease + 0.05)

    expired = await store.expired()
    assert [e.task_id for e in expired] == [task_id]
    assert expired[0].name == "job"
    assert expired[0].overdue > 0

    adopted = await store.adopt(task_id, "node-b", lease_ttl=backend.lease)
    assert adopted is not None
    assert adopted.token == 2
    assert adopted.owner == "node-b"
    assert adopted.previous_owner == "node-a"
    # The new lease is live: nobody else can adopt it now.
    assert await store.adopt(task_id, "node-c", lease_ttl=backend.lease) is None
    assert await store.expired() == []
    assert [r.task_id for r in await store.list_tasks(owner="node-b")] == [task_id]
    assert await store.list_tasks(owner="node-a") == []
    assert await store.adopt(new_id(), "node-b", lease_ttl=backend.lease) is None


async def test_renew_extends_and_reports(store: AbstractTaskStore, backend: StoreBackend) -> None:
    kept = await create(store, backend)
    cancelled = await create(store, backend)
    lost = await create(store, backend)
    leases = [Lease(t, "node-a", 1) for t in (kept, cancelled, lost)]
    await store.request_cancel(cancelled)
    await backend.advance(backend.lease * 0.6)
    statuses = await store.renew("node-a", leases[:2], lease_ttl=backend.lease)
    assert statuses == {kept: LeaseStatus.RENEWED, cancelled: LeaseStatus.CANCEL_REQUESTED}
    await backend.advance(backend.lease * 0.6)
    # Past the first lease: the renewed ones are live, the other expired.
    assert [e.task_id for e in await store.expired()] == [lost]
    assert await store.adopt(kept, "node-b", lease_ttl=backend.lease) is None
    assert await store.adopt(lost, "node-b", lease_ttl=backend.lease) is not None
    statuses = await store.renew("node-a", leases, lease_ttl=backend.lease)
    assert statuses[lost] is LeaseStatus.LOST
    assert statuses[kept] is LeaseStatus.RENEWED
    assert await store.renew("node-a", [], lease_ttl=backend.lease) == {}


async def test_finish_records_outcome_and_purges_after_retention(
    store: AbstractTaskStore, backend: StoreBackend
) -> None:
    retention = backend.lease * 2
    task_id = await create(store, backend, tags=("t1", "t2"), retention=retention)
    other = await create(store, backend, tags=("t1",), retention=retention)
    lease = Lease(task_id, "node-a", 1)
    await store.mark_running(lease, lease_ttl=backend.lease)
    outcome = TaskOutcome(
        TaskState.PARTIALLY_SUCCEEDED,
        message="2 of 3",
        result={"ok": [1, 2]},
        errors=("item 3 failed",),
    )
    final = await store.finish(lease, outcome, current=3, total=3)
    assert final.state is TaskState.PARTIALLY_SUCCEEDED
    assert final.message == "2 of 3"
    assert final.result == {"ok": [1, 2]}
    assert final.errors == ("item 3 failed",)
    assert final.current == 3.0
    assert final.finished_at is not None
    assert final.lease_expires_at is None
    assert final.expires_at is not None
    assert final.expires_at >= final.finished_at + retention - 0.01

    with pytest.raises(TaskAlreadyFinished):
        await store.update_progress(lease, current=4, total=3)
    with pytest.raises(TaskAlreadyFinished):
        await store.finish(lease, TaskOutcome(TaskState.FAILED, message="again"))
    assert await store.renew("node-a", [lease], lease_ttl=backend.lease) == {
        task_id: LeaseStatus.LOST
    }
    assert (await store.request_cancel(task_id)).cancel_requested is False
    await backend.advance(backend.lease + 0.05)
    assert [e.task_id for e in await store.expired()] == [other]  # final tasks are never listed

    assert await store.purge() == 0
    assert [r.task_id for r in await store.list_tasks(tag="t2")] == [task_id]
    await backend.advance(retention)
    assert await store.purge() == 1
    assert await store.get(task_id) is None
    assert await store.list_tasks(tag="t2") == []
    assert [r.task_id for r in await store.list_tasks(tag="t1")] == [other]
    assert [r.task_id for r in await store.list_tasks(owner="node-a")] == [other]
    assert await store.purge() == 0


async def test_finish_with_error_code(store: AbstractTaskStore, backend: StoreBackend) -> None:
    task_id = await create(store, backend)
    lease = Lease(task_id, "node-a", 1)
    final = await store.finish(
        lease,
        TaskOutcome(TaskState.FAILED, message="boom", error_code="bgtask_execute_internal-error"),
    )
    assert final.state is TaskState.FAILED
    assert final.error_code == "bgtask_execute_internal-error"
    assert final.run_count == 0
    assert final.started_at is None


async def test_release_hands_over(store: AbstractTaskStore, backend: StoreBackend) -> None:
    task_id = await create(store, backend)
    lease = Lease(task_id, "node-a", 1)
    await store.mark_running(lease, lease_ttl=backend.lease)
    await store.release(lease)
    record = await store.get(task_id)
    assert record is not None
    assert record.state is TaskState.PENDING
    assert record.run_count == 1
    # No waiting: a released lease is expired at once.
    assert [e.task_id for e in await store.expired()] == [task_id]
    adopted = await store.adopt(task_id, "node-b", lease_ttl=backend.lease)
    assert adopted is not None
    assert adopted.owner == "node-b"
    assert adopted.previous_owner == "node-a"
    assert adopted.token > lease.token


async def test_released_lease_is_over(store: AbstractTaskStore, backend: StoreBackend) -> None:
    task_id = await create(store, backend)
    lease = Lease(task_id, "node-a", 1)
    await store.mark_running(lease, lease_ttl=backend.lease)
    await store.release(lease)
    # A heartbeat that was already on its way when the owner released the task: it must not
    # extend the lease again (that would delay the hand-over by a whole lease).
    assert await store.renew("node-a", [lease], lease_ttl=backend.lease) == {
        task_id: LeaseStatus.LOST
    }
    assert [e.task_id for e in await store.expired()] == [task_id]
    # Nor may the released lease write.
    with pytest.raises(StaleFencingToken):
        await store.update_progress(lease, current=1, total=2)
    with pytest.raises(StaleFencingToken):
        await store.finish(lease, TaskOutcome(TaskState.SUCCEEDED))
    with pytest.raises(StaleFencingToken):
        await store.release(lease)
    record = await store.get(task_id)
    assert record is not None
    assert record.state is TaskState.PENDING
    assert record.token > lease.token
    adopted = await store.adopt(task_id, "node-b", lease_ttl=backend.lease)
    assert adopted is not None
    assert adopted.token > record.token


async def test_request_cancel_notifies(store: AbstractTaskStore, backend: StoreBackend) -> None:
    task_id = await create(store, backend)
    other_store = await backend.open()
    received: list[TaskId] = []
    ready = asyncio.Event()

    async def listen() -> None:
        async with contextlib.aclosing(store.cancellations()) as notifications:
            ready.set()
            async for notified in notifications:
                received.append(notified)
                return

    listener = asyncio.create_task(listen())
    try:
        await ready.wait()
        await asyncio.sleep(0.05)  # let the subscription reach the server
        record = await other_store.request_cancel(task_id)
        assert record.cancel_requested
        assert record.state is TaskState.PENDING
        async with asyncio.timeout(5):
            await listener
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    assert received == [task_id]
    with pytest.raises(TaskNotFound):
        await store.request_cancel(new_id())


async def test_writes_to_unknown_task_raise(
    store: AbstractTaskStore, backend: StoreBackend
) -> None:
    lease = Lease(new_id(), "node-a", 1)
    with pytest.raises(TaskNotFound):
        await store.update_progress(lease, current=1, total=1)
    with pytest.raises(TaskNotFound):
        await store.finish(lease, TaskOutcome(TaskState.SUCCEEDED))


async def test_closed_store_raises_unavailable(backend: StoreBackend) -> None:
    store = await backend.open()
    await store.aclose()
    await store.aclose()
    with pytest.raises(TaskStoreUnavailable):
        await store.get(new_id())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lease_ttl", 0.0),
        ("lease_ttl", -1.0),
        ("lease_ttl", math.nan),
        ("lease_ttl", math.inf),
        ("retention", -1.0),
        ("retention", math.nan),
        ("retention", math.inf),
    ],
)
async def test_bad_durations_are_refused(
    store: AbstractTaskStore, backend: StoreBackend, field: str, value: float
) -> None:
    task_id = new_id()
    lease_ttl = value if field == "lease_ttl" else backend.lease
    retention = value if field == "retention" else 60.0
    with pytest.raises(InvalidArgument, match=field):
        await store.create(task_id, "job", owner="node-a", lease_ttl=lease_ttl, retention=retention)
    assert await store.get(task_id) is None
    if field == "lease_ttl":
        existing = await create(store, backend)
        lease = Lease(existing, "node-a", 1)
        with pytest.raises(InvalidArgument, match="lease_ttl"):
            await store.mark_running(lease, lease_ttl=value)
        with pytest.raises(InvalidArgument, match="lease_ttl"):
            await store.renew("node-a", [lease], lease_ttl=value)
        await backend.advance(backend.lease + 0.05)
        with pytest.raises(InvalidArgument, match="lease_ttl"):
            await store.adopt(existing, "node-b", lease_ttl=value)
        record = await store.get(existing)
        assert record is not None
        assert (record.state, record.owner, record.token) == (TaskState.PENDING, "node-a", 1)


async def test_zero_retention(store: AbstractTaskStore, backend: StoreBackend) -> None:
    task_id = await create(store, backend, tags=("zero",), retention=0.0)
    final = await store.finish(Lease(task_id, "node-a", 1), TaskOutcome(TaskState.SUCCEEDED))
    assert final.task_id == task_id
    assert final.state is TaskState.SUCCEEDED
    assert final.retention == 0.0
    assert final.finished_at is not None
    assert final.expires_at == final.finished_at
    await backend.advance(0.01)
    assert await store.purge() == 1
    assert await store.get(task_id) is None
    assert await store.list_tasks(tag="zero") == []
    assert await store.list_tasks(owner="node-a") == []
