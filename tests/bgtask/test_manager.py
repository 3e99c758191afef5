"""BackgroundTaskManager on the memory store: managers sharing one store form a cluster.

Store time (leases, retention) is a ManualClock the tests move; the managers' loops run on short
real intervals, so a test moves the clock and then waits for a condition (with a deadline).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from ai.backend.common.bgtask import (
    BackgroundTaskConfig,
    BackgroundTaskManager,
    BgtaskMetrics,
    InvalidTaskArgs,
    ManagerClosed,
    MemoryTaskStore,
    ProgressReporter,
    ShutdownPolicy,
    StaleFencingToken,
    TaskId,
    TaskNotFound,
    TaskRecord,
    TaskRegistry,
    TaskResult,
    TaskState,
    UnknownTaskName,
)
from ai.backend.common.contexts import ContextBundle, bind_request_id, current_request_id
from ai.backend.common.events import DeliveryPattern, EventCodec, EventProducer
from ai.backend.common.exception import InvalidArgument
from ai.backend.common.message_queue import (
    ManualClock,
    MemoryBroker,
    MemoryMessageQueue,
    QueueConfig,
)
from tests._helpers import until
from tests._vectors import load_vectors

LEASE = 10.0
BASE = BackgroundTaskConfig(
    lease_ttl=LEASE,
    heartbeat_interval=0.02,
    adopt_interval=0.02,
    progress_interval=0.0,
    cancel_grace=2.0,
    sweep_interval=0.05,
    retention=100.0,
)


class Args(BaseModel):
    n: int = 0


class Cluster:
    """Nodes (managers) sharing one memory store and one memory broker, plus an event log."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.store = MemoryTaskStore(self.clock)
        self.broker = MemoryBroker()
        self.registry = TaskRegistry()
        self.managers: list[BackgroundTaskManager] = []
        self.queues: list[MemoryMessageQueue] = []
        self.events: list[tuple[str, str]] = []
        self._listener: asyncio.Task[None] | None = None

    async def node(
        self,
        name: str,
        *,
        registry: TaskRegistry | None = None,
        metrics: BgtaskMetrics | None = None,
        store: MemoryTaskStore | None = None,
        **overrides: Any,
    ) -> BackgroundTaskManager:
        queue = MemoryMessageQueue(self.broker, QueueConfig(source=name))
        await queue.open()
        self.queues.append(queue)
        manager = BackgroundTaskManager(
            store if store is not None else self.store,
            node_id=name,
            registry=registry if registry is not None else self.registry,
            producer=EventProducer(queue, name),
            config=dataclasses.replace(BASE, **overrides),
            metrics=metrics,
        )
        await manager.open()
        self.managers.append(manager)
        return manager

    async def listen(self) -> None:
        queue = MemoryMessageQueue(self.broker, QueueConfig(source="listener"))
        await queue.open()
        self.queues.append(queue)
        messages = queue.subscribe()

        async def collect() -> None:
            async for message in messages:
                self.events.append((message.fields["name"], message.fields["payload"]))

        self._listener = asyncio.create_task(collect())

    def events_of(self, task_id: TaskId) -> list[tuple[str, dict[str, Any]]]:
        codec = EventCodec()
        found = []
        for name, payload in self.events:
            event = codec.decode_fields(
                {"name": name, "source": "x", "payload": payload, "metadata": "{}"},
                delivery=DeliveryPattern.BROADCAST,
            ).event
            data = event.model_dump(mode="json")
            if data.get("task_id") == str(task_id):
                found.append((name, data))
        return found

    def expire(self) -> None:
        self.clock.advance(LEASE + 0.1)

    async def record(self, task_id: TaskId) -> TaskRecord:
        record = await self.store.get(task_id)
        assert record is not None
        return record

    async def wait_state(
        self, task_id: TaskId, *states: TaskState, within: float = 30.0
    ) -> TaskRecord:
        async def reached() -> bool:
            return (await self.record(task_id)).state in states

        await until(reached, within, f"task {task_id} in {states}")
        return await self.record(task_id)

    async def aclose(self) -> None:
        for manager in reversed(self.managers):
            await manager.aclose()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        for queue in reversed(self.queues):
            await queue.aclose()
        await self.store.aclose()


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster()
    await c.listen()
    try:
        yield c
    finally:
        await c.aclose()


class Gate:
    """Handlers block on it; records what each run saw."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.started: list[tuple[str, int]] = []
        self.cancelled: list[TaskId] = []
        self.resumed: list[tuple[TaskId, Any]] = []

    async def block(self, reporter: ProgressReporter, tag: str) -> None:
        self.started.append((tag, reporter.run_count))
        if reporter.resumed:
            self.resumed.append((reporter.task_id, reporter.last_checkpoint))
        try:
            await self.opened.wait()
        except asyncio.CancelledError:
            self.cancelled.append(reporter.task_id)
            raise


def register_blocking(cluster: Cluster, gate: Gate) -> None:
    @cluster.registry.task("resumable", Args, resumable=True)
    async def resumable(reporter: ProgressReporter, args: Args) -> TaskResult:
        if not reporter.resumed:
            await reporter.save_checkpoint({"step": args.n})
        await gate.block(reporter, "resumable")
        return TaskResult(message="resumable done", data={"runs": reporter.run_count})

    @cluster.registry.task("fragile", Args)
    async def fragile(reporter: ProgressReporter, args: Args) -> str:
        await gate.block(reporter, "fragile")
        return "fragile done"


async def test_start_runs_and_records_result(cluster: Cluster) -> None:
    @cluster.registry.task("add", Args)
    async def add(reporter: ProgressReporter, args: Args) -> TaskResult:
        reporter.update(current=1, total=1, message="added")
        return TaskResult(message="sum", data={"n": args.n + 1})

    node = await cluster.node("node-a")
    task_id = await node.start("add", {"n": 41}, tags=["math"])
    record = await node.wait(task_id)
    assert record.state is TaskState.SUCCEEDED
    assert record.result == {"n": 42}
    assert record.message == "sum"
    assert record.owner == "node-a"
    assert record.run_count == 1
    assert record.current == 1.0
    assert record.tags == ("math",)
    assert record.args == {"n": 41}
    assert node.statistics().owned == 0
    assert node.statistics().finished == 1

    await until(lambda: any(n == "bgtask_done" for n, _ in cluster.events_of(task_id)))
    events = cluster.events_of(task_id)
    assert events[0] == (
        "bgtask_updated",
        {
            "task_id": str(task_id),
            "current_progress": 0.0,
            "total_progress": 0.0,
            "message": "Task started",
        },
    )
    assert events[-1] == ("bgtask_done", {"task_id": str(task_id), "message": "sum"})
    await node.aclose()
    await node.aclose()
    with pytest.raises(ManagerClosed):
        await node.start("add", {"n": 1})


async def test_failure_and_partial_success(cluster: Cluster) -> None:
    @cluster.registry.task("bad_arg", Args)
    async def bad_arg(reporter: ProgressReporter, args: Args) -> None:
        raise InvalidArgument(f"n={args.n} is not allowed")

    @cluster.registry.task("crash", Args)
    async def crash(reporter: ProgressReporter, args: Args) -> None:
        raise RuntimeError("disk on fire")

    @cluster.registry.task("partial", Args)
    async def partial(reporter: ProgressReporter, args: Args) -> TaskResult:
        return TaskResult(message="2 of 3 done", data=[1, 2], errors=["item 3: gone"])

    node = await cluster.node("node-a")
    bad = await node.wait(await node.start("bad_arg", {"n": 7}))
    assert bad.state is TaskState.FAILED
    assert bad.error_code == "backendai_generic_invalid-parameters"
    assert bad.message == "InvalidArgument: n=7 is not allowed"

    crashed = await node.wait(await node.start("crash"))
    assert crashed.state is TaskState.FAILED
    assert crashed.error_code == "bgtask_execute_internal-error"
    assert crashed.message == "RuntimeError: disk on fire"

    part = await node.wait(await node.start("partial"))
    assert part.state is TaskState.PARTIALLY_SUCCEEDED
    assert part.errors == ("item 3: gone",)
    assert part.result == [1, 2]

    def ended() -> bool:
        return all(
            cluster.events_of(t)[-1:] and cluster.events_of(t)[-1][0] != "bgtask_updated"
            for t in (bad.task_id, crashed.task_id, part.task_id)
        )

    await until(ended)
    assert cluster.events_of(bad.task_id)[-1] == (
        "bgtask_failed",
        {"task_id": str(bad.task_id), "message": "InvalidArgument: n=7 is not allowed"},
    )
    assert cluster.events_of(part.task_id)[-1] == (
        "bgtask_partial_success",
        {"task_id": str(part.task_id), "message": "2 of 3 done", "errors": ["item 3: gone"]},
    )


async def test_start_errors(cluster: Cluster) -> None:
    register_blocking(cluster, Gate())
    node = await cluster.node("node-a")
    with pytest.raises(UnknownTaskName, match="nope"):
        await node.start("nope")
    with pytest.raises(InvalidTaskArgs, match="n"):
        await node.start("fragile", {"n": "not a number"})
    with pytest.raises(TaskNotFound):
        await node.get(TaskId(uuid.uuid4()))
    with pytest.raises(TaskNotFound):
        await node.cancel(TaskId(uuid.uuid4()))


async def test_adoption_resumes_or_fails(cluster: Cluster) -> None:
    gate = Gate()
    register_blocking(cluster, gate)
    node_a = await cluster.node("node-a", adopt=False, max_concurrency=2)
    resumable = await node_a.start("resumable", {"n": 5})
    fragile = await node_a.start("fragile")
    never_started = await node_a.start("fragile")
    await cluster.wait_state(resumable, TaskState.RUNNING)
    await cluster.wait_state(fragile, TaskState.RUNNING)
    await until(lambda: len(gate.started) == 2)
    assert (await cluster.record(never_started)).state is TaskState.PENDING
    assert (await cluster.record(resumable)).checkpoint == {"step": 5}

    await node_a.abort()  # the process dies: nothing is written
    assert (await cluster.record(resumable)).state is TaskState.RUNNING
    gate.opened.set()  # runs on node-b finish at once
    node_b = await cluster.node("node-b")
    cluster.expire()

    done = await cluster.wait_state(resumable, TaskState.SUCCEEDED)
    assert done.owner == "node-b"
    assert done.token == 2
    assert done.previous_owner == "node-a"
    assert done.run_count == 2
    assert done.result == {"runs": 2}
    assert gate.resumed == [(resumable, {"step": 5})]

    failed = await cluster.wait_state(fragile, TaskState.FAILED)
    assert failed.owner == "node-b"
    assert failed.token == 2
    assert failed.message is not None
    assert "'node-a' stopped renewing its lease" in failed.message
    assert "'fragile' is not resumable" in failed.message

    started = await cluster.wait_state(never_started, TaskState.SUCCEEDED)
    assert started.owner == "node-b"
    assert started.run_count == 1
    assert node_b.statistics().adopted == 3
    assert await cluster.store.list_tasks(states=[TaskState.RUNNING, TaskState.PENDING]) == []
    await until(lambda: cluster.events_of(fragile)[-1][0] == "bgtask_failed")


async def test_lost_lease_stops_the_handler(cluster: Cluster) -> None:
    go = asyncio.Event()
    seen: list[BaseException] = []

    @cluster.registry.task("worker", Args)
    async def worker(reporter: ProgressReporter, args: Args) -> str:
        await go.wait()
        try:
            await reporter.save_checkpoint({"late": True})
        except StaleFencingToken as exc:
            seen.append(exc)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError as exc:
            seen.append(exc)
            raise
        return "unreachable"

    # node-a heartbeats rarely, so it keeps running after its lease expired (a paused node).
    node_a = await cluster.node("node-a", adopt=False, heartbeat_interval=5.0)
    node_b = await cluster.node("node-b", adopt=False)
    task_id = await node_a.start("worker")
    await cluster.wait_state(task_id, TaskState.RUNNING)
    cluster.expire()
    assert await node_b.adopt_expired() == [task_id]
    adopted = await cluster.wait_state(task_id, TaskState.FAILED)
    assert adopted.owner == "node-b"
    assert adopted.token == 2

    go.set()  # node-a wakes up and writes: rejected, and its handler is stopped
    await until(lambda: len(seen) == 2)
    assert isinstance(seen[0], StaleFencingToken)
    assert "node-b" in str(seen[0])
    assert "token 2" in str(seen[0])
    assert isinstance(seen[1], asyncio.CancelledError)
    await until(lambda: node_a.statistics().owned == 0)
    assert node_a.statistics().lost == 1
    assert await cluster.record(task_id) == adopted  # nothing node-a did changed the record


async def test_heartbeat_stops_a_handler_whose_lease_was_taken(cluster: Cluster) -> None:
    gate = Gate()
    register_blocking(cluster, gate)
    node_a = await cluster.node("node-a", adopt=False)
    task_id = await node_a.start("fragile")
    await cluster.wait_state(task_id, TaskState.RUNNING)
    await until(lambda: len(gate.started) == 1)
    cluster.expire()
    assert await cluster.store.adopt(task_id, "node-b", lease_ttl=LEASE) is not None
    await until(lambda: gate.cancelled == [task_id])
    await until(lambda: node_a.statistics().owned == 0)
    record = await cluster.record(task_id)
    assert record.state is TaskState.RUNNING
    assert record.owner == "node-b"


async def test_cancel_from_another_node(cluster: Cluster) -> None:
    gate = Gate()
    register_blocking(cluster, gate)
    node_a = await cluster.node("node-a")
    node_b = await cluster.node("node-b")
    task_id = await node_a.start("fragile")
    await until(lambda: len(gate.started) == 1)

    requested = await node_b.cancel(task_id)
    assert requested.cancel_requested
    assert requested.owner == "node-a"
    record = await cluster.wait_state(task_id, TaskState.CANCELLED)
    assert gate.cancelled == [task_id]
    assert record.message == "cancelled on request"
    assert record.error_code == "bgtask_execute_canceled"
    await until(lambda: cluster.events_of(task_id)[-1][0] == "bgtask_cancelled")
    # Cancelling a final task returns it unchanged.
    assert (await node_b.cancel(task_id)).state is TaskState.CANCELLED


class QuietStore(MemoryTaskStore):
    """A memory store whose cancel notifications are all lost (the heartbeat must notice)."""

    async def cancellations(self) -> AsyncGenerator[TaskId, None]:
        await asyncio.Event().wait()
        yield TaskId(uuid.uuid4())  # pragma: no cover


async def test_cancel_seen_by_heartbeat_when_notifications_are_lost(cluster: Cluster) -> None:
    gate = Gate()
    register_blocking(cluster, gate)
    store = QuietStore(cluster.clock)
    node_a = await cluster.node("node-a", store=store)
    node_b = await cluster.node("node-b", store=store)
    task_id = await node_a.start("fragile")
    await until(lambda: len(gate.started) == 1)
    await node_b.cancel(task_id)

    async def cancelled() -> bool:
        record = await store.get(task_id)
        return record is not None and record.state is TaskState.CANCELLED

    await until(cancelled)
    assert gate.cancelled == [task_id]


async def test_cancel_on_the_owner_returns_the_final_record(cluster: Cluster) -> None:
    gate = Gate()
    register_blocking(cluster, gate)
    node_a = await cluster.node("node-a")
    task_id = await node_a.start("fragile")
    await until(lambda: len(gate.started) == 1)
    record = await node_a.cancel(task_id)
    assert record.state is TaskState.CANCELLED
    assert gate.cancelled == [task_id]


async def test_cancel_while_owner_is_gone(cluster: Cluster) -> None:
    gate = Gate()
    register_blocking(cluster, gate)
    node_a = await cluster.node("node-a", adopt=False)
    task_id = await node_a.start("resumable")
    await until(lambda: len(gate.started) == 1)
    await node_a.abort()
    node_b = await cluster.node("node-b")
    requested = await node_b.cancel(task_id)
    assert requested.state is TaskState.RUNNING
    assert requested.cancel_requested
    cluster.expire()
    record = await cluster.wait_state(task_id, TaskState.CANCELLED)
    assert record.owner == "node-b"
    assert record.message is not None
    assert "'node-a' stopped renewing its lease" in record.message
    assert gate.started == [("resumable", 1)]  # not resumed: cancelled instead


async def test_handler_ignoring_cancel_is_recorded_after_grace(cluster: Cluster) -> None:
    release = asyncio.Event()
    swallowed: list[int] = []

    @cluster.registry.task("stubborn", Args)
    async def stubborn(reporter: ProgressReporter, args: Args) -> str:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                swallowed.append(1)  # ignores it
        return "finished anyway"

    node = await cluster.node("node-a", cancel_grace=0.1)
    task_id = await node.start("stubborn")
    await cluster.wait_state(task_id, TaskState.RUNNING)
    await asyncio.sleep(0)
    record = await node.cancel(task_id)
    assert record.state is TaskState.CANCELLED
    assert record.message is not None
    assert "0.1 s grace period" in record.message
    assert swallowed == [1]
    release.set()
    await until(lambda: node.statistics().owned == 0)
    assert (await cluster.record(task_id)).state is TaskState.CANCELLED


@pytest.mark.parametrize("policy", list(ShutdownPolicy))
async def test_shutdown_policies(cluster: Cluster, policy: ShutdownPolicy) -> None:
    gate = Gate()
    register_blocking(cluster, gate)
    node_a = await cluster.node("node-a", adopt=False, max_concurrency=2, shutdown_policy=policy)
    resumable = await node_a.start("resumable")
    fragile = await node_a.start("fragile")
    waiting = await node_a.start("fragile")
    await until(lambda: len(gate.started) == 2)

    await node_a.aclose()
    assert sorted(gate.cancelled) == sorted([resumable, fragile])
    records = {t: await cluster.record(t) for t in (resumable, fragile, waiting)}
    shut = "node 'node-a' shut down"
    if policy is ShutdownPolicy.HANDOVER:
        assert records[resumable].state is TaskState.PENDING
        assert records[waiting].state is TaskState.PENDING
        assert records[fragile].state is TaskState.FAILED
        message = records[fragile].message
        assert message is not None
        assert shut in message
        assert "not resumable" in message
        # The released leases are expired at once: another node adopts without waiting.
        gate.opened.set()
        node_b = await cluster.node("node-b")
        resumed = await cluster.wait_state(resumable, TaskState.SUCCEEDED)
        assert resumed.owner == "node-b"
        assert resumed.run_count == 2
        started = await cluster.wait_state(waiting, TaskState.SUCCEEDED)
        assert started.owner == "node-b"
        assert started.run_count == 1
        assert node_b.statistics().adopted == 2
    else:
        expected = TaskState.CANCELLED if policy is ShutdownPolicy.CANCEL else TaskState.FAILED
        for record in records.values():
            assert record.state is expected
            assert record.message == shut
    assert node_a.statistics().owned == 0


async def test_drain_timeout_lets_tasks_finish(cluster: Cluster) -> None:
    gate = Gate()
    register_blocking(cluster, gate)
    node = await cluster.node("node-a", drain_timeout=5.0)
    task_id = await node.start("fragile")
    await until(lambda: len(gate.started) == 1)
    closing = asyncio.create_task(node.aclose())
    await asyncio.sleep(0.05)
    gate.opened.set()
    await closing
    assert (await cluster.record(task_id)).state is TaskState.SUCCEEDED


async def test_progress_is_coalesced(cluster: Cluster) -> None:
    interval = 0.2
    measured: dict[str, float] = {}
    phase_two = asyncio.Event()

    @cluster.registry.task("chatty", Args)
    async def chatty(reporter: ProgressReporter, args: Args) -> None:
        reporter.total_progress = 1000
        for _ in range(100):
            reporter.update(1)
        await reporter.flush()
        await phase_two.wait()
        loop = asyncio.get_running_loop()
        begin = loop.time()
        for _ in range(30):
            reporter.update(1, message="busy")
            await asyncio.sleep(0.01)
        await reporter.flush()
        measured["elapsed"] = loop.time() - begin

    node = await cluster.node("node-a", progress_interval=interval)
    task_id = await node.start("chatty")

    async def first_phase_written() -> bool:
        return (await cluster.record(task_id)).current == 100.0

    await until(first_phase_written)
    assert node.statistics().progress_writes == 1  # 100 updates, one write
    phase_two.set()
    record = await node.wait(task_id)
    assert record.current == 130.0
    assert record.total == 1000.0
    writes = node.statistics().progress_writes - 1
    assert 1 <= writes <= measured["elapsed"] / interval + 2
    updates = [e for n, e in cluster.events_of(task_id) if n == "bgtask_updated"]
    assert len(updates) <= writes + 2  # "Task started" + the coalesced ones (+ final flush)


async def test_final_progress_is_always_written(cluster: Cluster) -> None:
    @cluster.registry.task("quick", Args)
    async def quick(reporter: ProgressReporter, args: Args) -> None:
        reporter.update(current=1, total=10)
        await reporter.flush()
        reporter.update(current=7, message="seven")  # coalesced away for a minute...

    node = await cluster.node("node-a", progress_interval=60.0)
    task_id = await node.start("quick")
    record = await node.wait(task_id)
    assert (record.current, record.total) == (7.0, 10.0)  # ...but the final write has it
    await until(lambda: cluster.events_of(task_id)[-1][0] == "bgtask_done")
    updates = [e for n, e in cluster.events_of(task_id) if n == "bgtask_updated"]
    assert [(u["current_progress"], u["message"]) for u in updates] == [
        (0.0, "Task started"),
        (1.0, None),
        (7.0, "seven"),
    ]


async def test_events_match_upstream_vectors(cluster: Cluster) -> None:
    vectors = {v["event_name"]: v for v in load_vectors()["event_envelopes"]}
    updated, done = vectors["bgtask_updated"], vectors["bgtask_done"]
    task_id = TaskId(uuid.UUID(updated["anycast_stream_fields"]["payload"][12:48]))

    @cluster.registry.task("vector", Args)
    async def vector(reporter: ProgressReporter, args: Args) -> None:
        reporter.update(current=3, total=10, message="step 3 of 10")
        await reporter.flush()

    node = await cluster.node("node-a")
    assert await node.start("vector", task_id=task_id) == task_id
    await node.wait(task_id)
    await until(lambda: any(n == "bgtask_done" for n, _ in cluster.events))
    payloads = {(n, p) for n, p in cluster.events}
    assert ("bgtask_updated", updated["event_json"]) in payloads
    assert ("bgtask_done", done["event_json"]) in payloads
    # The cached copy for late readers is under upstream's key.
    cached = await cluster.queues[0].fetch_cached_broadcast(f"bgtask.{task_id}")
    assert cached is not None
    assert cached["name"] == "bgtask_done"


async def test_metrics_count_started_and_finished(cluster: Cluster) -> None:
    @cluster.registry.task("ok", Args)
    async def ok(reporter: ProgressReporter, args: Args) -> None:
        return None

    @cluster.registry.task("boom", Args)
    async def boom(reporter: ProgressReporter, args: Args) -> None:
        raise RuntimeError("boom")

    registry = CollectorRegistry()
    node = await cluster.node("node-a", metrics=BgtaskMetrics(registry))
    await node.wait(await node.start("ok"))
    await node.wait(await node.start("ok"))
    await node.wait(await node.start("boom"))

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("backendai_bgtask_started_total", task_name="ok", origin="new") == 2
    assert sample("backendai_bgtask_in_progress", task_name="ok") == 0
    no_error = {"domain": "", "operation": "", "error_detail": ""}
    assert (
        sample(
            "backendai_bgtask_done_count_total", task_name="ok", status="bgtask_done", **no_error
        )
        == 2
    )
    failed = {"domain": "bgtask", "operation": "execute", "error_detail": "internal-error"}
    assert (
        sample(
            "backendai_bgtask_done_count_total", task_name="boom", status="bgtask_failed", **failed
        )
        == 1
    )
    assert (
        sample(
            "backendai_bgtask_processing_time_seconds_count",
            task_name="ok",
            status="bgtask_done",
            **no_error,
        )
        == 2
    )


async def test_context_reaches_handler(cluster: Cluster) -> None:
    seen: list[str | None] = []

    @cluster.registry.task("ctx", Args)
    async def ctx(reporter: ProgressReporter, args: Args) -> None:
        seen.append(current_request_id())

    node = await cluster.node("node-a")
    with bind_request_id("req-bgtask-1"):
        task_id = await node.start("ctx")
    await node.wait(task_id)
    assert seen == ["req-bgtask-1"]


async def test_max_concurrency_keeps_tasks_pending(cluster: Cluster) -> None:
    gate = Gate()
    register_blocking(cluster, gate)
    node = await cluster.node("node-a", max_concurrency=1)
    first = await node.start("fragile")
    second = await node.start("fragile")
    await cluster.wait_state(first, TaskState.RUNNING)
    assert (await cluster.record(second)).state is TaskState.PENDING
    assert node.statistics().owned == 2
    assert node.statistics().running == 1
    gate.opened.set()
    assert (await node.wait(second)).state is TaskState.SUCCEEDED


async def test_list_by_owner_and_tag(cluster: Cluster) -> None:
    gate = Gate()
    register_blocking(cluster, gate)
    node_a = await cluster.node("node-a")
    node_b = await cluster.node("node-b")
    a1 = await node_a.start("fragile", tags=["user:1"])
    b1 = await node_b.start("fragile", tags=["user:1", "images"])
    b2 = await node_b.start("fragile", tags=["images"])
    assert [r.task_id for r in await node_a.list_tasks(owner="node-b")] == [b1, b2]
    assert [r.task_id for r in await node_a.list_tasks(tag="user:1")] == [a1, b1]
    assert sorted(node_b.owned()) == sorted([b1, b2])
    gate.opened.set()
    for task_id in (a1, b1, b2):
        await node_a.wait(task_id)
    finished = await node_b.list_tasks(tag="images", states=[TaskState.SUCCEEDED])
    assert [r.task_id for r in finished] == [b1, b2]


async def test_retention_purges_finished_tasks(cluster: Cluster) -> None:
    @cluster.registry.task("ok", Args)
    async def ok(reporter: ProgressReporter, args: Args) -> None:
        return None

    node = await cluster.node("node-a")
    task_id = await node.start("ok", tags=["x"])
    await node.wait(task_id)
    assert await node.purge_expired() == 0
    cluster.clock.advance(BASE.retention + 1)

    async def purged() -> bool:
        return await cluster.store.get(task_id) is None

    await until(purged)  # the sweep loop did it
    assert cluster.store.keys() == []
    with pytest.raises(TaskNotFound):
        await node.get(task_id)


async def test_coroutine_task_of_a_lost_node_is_failed(cluster: Cluster) -> None:
    started = asyncio.Event()

    async def adhoc(reporter: ProgressReporter) -> None:
        started.set()
        await asyncio.Event().wait()

    node_a = await cluster.node("node-a", adopt=False)
    task_id = await node_a.start_coroutine(adhoc, name="adhoc_job")
    await started.wait()
    assert (await cluster.record(task_id)).name == "adhoc_job"
    await node_a.abort()
    await cluster.node("node-b", unknown_name_grace=0.0)
    cluster.expire()
    record = await cluster.wait_state(task_id, TaskState.FAILED)
    assert record.message is not None
    assert "no handler named 'adhoc_job'" in record.message


async def test_unknown_names_are_left_to_capable_nodes_first(cluster: Cluster) -> None:
    gate = Gate()
    register_blocking(cluster, gate)
    node_a = await cluster.node("node-a", adopt=False)
    task_id = await node_a.start("resumable")
    await until(lambda: len(gate.started) == 1)
    await node_a.abort()
    incapable = await cluster.node("node-x", registry=TaskRegistry(), adopt=False)
    cluster.expire()
    assert await incapable.adopt_expired() == []  # within the grace: not its business
    cluster.clock.advance(LEASE)
    assert await incapable.adopt_expired() == [task_id]
    record = await cluster.wait_state(task_id, TaskState.FAILED)
    assert record.owner == "node-x"


def test_config_validation() -> None:
    with pytest.raises(InvalidArgument, match="lease_ttl"):
        BackgroundTaskConfig(lease_ttl=0)
    with pytest.raises(InvalidArgument, match="heartbeat_interval"):
        BackgroundTaskConfig(lease_ttl=1, heartbeat_interval=1)
    with pytest.raises(InvalidArgument, match="max_concurrency"):
        BackgroundTaskConfig(max_concurrency=0)
    config = BackgroundTaskConfig(lease_ttl=9)
    assert config.effective_heartbeat_interval == 3
    assert config.effective_adopt_interval == 2.25
    assert config.effective_unknown_name_grace == 9


async def test_a_node_does_not_adopt_its_own_running_task(cluster: Cluster) -> None:
    gate = Gate()
    register_blocking(cluster, gate)
    node_a = await cluster.node("node-a", adopt=False, heartbeat_interval=5.0)
    task_id = await node_a.start("fragile")
    await until(lambda: len(gate.started) == 1)
    cluster.expire()  # node-a is slow to renew, but alive and still running it
    assert await node_a.adopt_expired() == []
    node_b = await cluster.node("node-b", adopt=False)
    assert await node_b.adopt_expired() == [task_id]


class StallingProducer(EventProducer):
    """Its "Task started" broadcast hangs until released (a slow Redis, a full publish gate)."""

    def __init__(self, queue: MemoryMessageQueue, source: str) -> None:
        super().__init__(queue, source)
        self.stalled = asyncio.Event()
        self.resume = asyncio.Event()

    async def broadcast_event_with_cache(
        self,
        event: Any,
        *,
        cache_id: str | None = None,
        context: ContextBundle | None = None,
    ) -> None:
        if getattr(event, "message", None) == "Task started" and not self.resume.is_set():
            self.stalled.set()
            await self.resume.wait()
        await super().broadcast_event_with_cache(event, cache_id=cache_id, context=context)


async def test_start_cancelled_during_its_broadcast_still_runs(cluster: Cluster) -> None:
    ran: list[TaskId] = []

    @cluster.registry.task("quick", Args)
    async def quick(reporter: ProgressReporter, args: Args) -> str:
        ran.append(reporter.task_id)
        return "ran"

    queue = MemoryMessageQueue(cluster.broker, QueueConfig(source="node-a"))
    await queue.open()
    cluster.queues.append(queue)
    producer = StallingProducer(queue, "node-a")
    node_a = BackgroundTaskManager(
        cluster.store, node_id="node-a", registry=cluster.registry, producer=producer, config=BASE
    )
    await node_a.open()
    cluster.managers.append(node_a)
    await cluster.node("node-b")

    caller = asyncio.create_task(node_a.start("quick"))
    await producer.stalled.wait()
    caller.cancel()  # e.g. the HTTP client of the request that started it went away
    with pytest.raises(asyncio.CancelledError):
        await caller
    producer.resume.set()
    [record] = await cluster.store.list_tasks()
    task_id = record.task_id
    # Store time stands still, so no lease expires by itself: only a task that runs here, or
    # that node-a gave up for adoption, can end. An orphan stays pending (and renewed) forever.
    final = await cluster.wait_state(task_id, TaskState.SUCCEEDED, within=5.0)
    assert final.run_count == 1
    assert ran == [task_id]
    await until(lambda: node_a.owned() == [] and node_a.statistics().running == 0)


@pytest.mark.parametrize("how", ["cancel()", ShutdownPolicy.CANCEL, ShutdownPolicy.FAIL])
async def test_handler_that_cleans_up_and_returns_is_not_a_success(
    cluster: Cluster, how: str
) -> None:
    cleaned: list[TaskId] = []
    started = asyncio.Event()

    @cluster.registry.task("tidy", Args)
    async def tidy(reporter: ProgressReporter, args: Args) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # clean up, then return instead of re-raising
            cleaned.append(reporter.task_id)
            return "cleaned up"
        return "unreachable"

    policy = ShutdownPolicy.HANDOVER if how == "cancel()" else ShutdownPolicy(how)
    node = await cluster.node("node-a", adopt=False, shutdown_policy=policy)
    task_id = await node.start("tidy")
    await started.wait()
    if how == "cancel()":
        record = await node.cancel(task_id)
        expected, message = TaskState.CANCELLED, "cancelled on request"
    else:
        await node.aclose()
        record = await cluster.record(task_id)
        expected = TaskState.CANCELLED if how is ShutdownPolicy.CANCEL else TaskState.FAILED
        message = "node 'node-a' shut down"
    assert cleaned == [task_id]
    assert record.state is expected
    assert record.message == message
    final = "bgtask_cancelled" if expected is TaskState.CANCELLED else "bgtask_failed"
    await until(lambda: cluster.events_of(task_id)[-1][0] == final)


async def pull_image(reporter: ProgressReporter, image: str) -> None:
    """An ad-hoc task function that takes an argument (started through functools.partial)."""


async def test_partial_tasks_share_one_name(cluster: Cluster) -> None:
    registry = CollectorRegistry()
    node = await cluster.node("node-a", metrics=BgtaskMetrics(registry))
    ids = [
        await node.start_coroutine(functools.partial(pull_image, image=f"img{i}"))
        for i in range(50)
    ]
    twice = functools.partial(functools.partial(pull_image), image="x")
    ids.append(await node.start_coroutine(twice))
    for task_id in ids:
        await node.wait(task_id, poll_interval=0.01)
    assert {(await cluster.record(t)).name for t in ids} == {"pull_image"}
    labels = {
        sample.labels["task_name"]
        for family in registry.collect()
        for sample in family.samples
        if "task_name" in sample.labels
    }
    assert labels == {"pull_image"}


DURATION_FIELDS = [
    "lease_ttl",
    "heartbeat_interval",
    "adopt_interval",
    "unknown_name_grace",
    "progress_interval",
    "store_progress_interval",
    "retention",
    "sweep_interval",
    "cancel_grace",
    "drain_timeout",
]


@pytest.mark.parametrize("field", DURATION_FIELDS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_config_refuses_non_finite_durations(field: str, value: float) -> None:
    overrides: dict[str, Any] = {field: value}
    with pytest.raises(InvalidArgument, match=f"BackgroundTaskConfig.{field} ") as caught:
        BackgroundTaskConfig(**overrides)
    assert caught.value.data == {"field": field}
    assert str(value) in str(caught.value)
