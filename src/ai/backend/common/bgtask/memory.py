"""In-process backend of the task store (stdlib only): several managers sharing one
:class:`MemoryTaskStore` behave as several nodes sharing one Redis.

Time (lease expiry, retention) comes from an injectable wall clock, so tests expire leases by
moving a ``ManualClock`` instead of waiting.

Guarantees: the whole conformance suite of the interface
[tests/bgtask/test_store_conformance.py].

Limits: state lives in one process and is lost with it; one event loop
[tests/bgtask/test_store_conformance.py].
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from typing import Any

from ..exception import InvalidArgument
from .abc import AbstractTaskStore
from .exceptions import (
    StaleFencingToken,
    TaskAlreadyExists,
    TaskAlreadyFinished,
    TaskNotFound,
    TaskStoreUnavailable,
)
from .types import (
    ExpiredLease,
    Lease,
    LeaseStatus,
    SystemWallClock,
    TaskId,
    TaskOutcome,
    TaskRecord,
    TaskState,
    WallClock,
)

__all__ = ("MemoryTaskStore",)

_CLOSED = object()


class MemoryTaskStore(AbstractTaskStore):
    """The task store of one process; share one instance between the managers of a test."""

    def __init__(self, clock: WallClock | None = None) -> None:
        self._clock: WallClock = clock if clock is not None else SystemWallClock()
        self._tasks: dict[TaskId, TaskRecord] = {}
        self._listeners: set[asyncio.Queue[object]] = set()
        self._closed = False

    async def open(self) -> None:
        """Nothing to connect; refuses a closed store."""
        self._check_open()

    async def aclose(self) -> None:
        """End every ``cancellations()`` iterator; idempotent."""
        if self._closed:
            return
        self._closed = True
        for listener in self._listeners:
            listener.put_nowait(_CLOSED)

    def _check_open(self) -> None:
        if self._closed:
            raise TaskStoreUnavailable("MemoryTaskStore is closed")

    def keys(self) -> list[TaskId]:
        """Ids of every task still held (final ones until purged), for leak checks."""
        return list(self._tasks)

    # -- create and read ----------------------------------------------------------------

    async def create(
        self,
        task_id: TaskId,
        name: str,
        *,
        owner: str,
        lease_ttl: float,
        args: Mapping[str, Any] | None = None,
        tags: Collection[str] = (),
        resumable: bool = False,
        retention: float,
    ) -> TaskRecord:
        """Record a new pending task with token 1."""
        self._check_durations("create()", lease_ttl=lease_ttl, retention=retention)
        self._check_open()
        if task_id in self._tasks:
            raise TaskAlreadyExists(
                f"background task {task_id} already exists", data={"task_id": str(task_id)}
            )
        now = self._clock.time()
        record = TaskRecord(
            task_id=task_id,
            name=name,
            state=TaskState.PENDING,
            owner=owner,
            token=1,
            args=copy.deepcopy(dict(args or {})),
            tags=tuple(dict.fromkeys(tags)),
            resumable=resumable,
            created_at=now,
            updated_at=now,
            lease_expires_at=now + lease_ttl,
            retention=retention,
        )
        self._tasks[task_id] = record
        return record

    async def get(self, task_id: TaskId) -> TaskRecord | None:
        """The record, or ``None``."""
        self._check_open()
        return self._tasks.get(task_id)

    async def list_tasks(
        self,
        *,
        owner: str | None = None,
        tag: str | None = None,
        states: Collection[TaskState] | None = None,
    ) -> list[TaskRecord]:
        """Matching tasks, oldest first."""
        self._check_open()
        wanted = None if states is None else set(states)
        found = [
            r
            for r in self._tasks.values()
            if (owner is None or r.owner == owner)
            and (tag is None or tag in r.tags)
            and (wanted is None or r.state in wanted)
        ]
        found.sort(key=lambda r: r.created_at)  # stable: creation order on ties
        return found

    # -- fenced writes ----------------------------------------------------------------

    def _fenced(self, lease: Lease, what: str) -> TaskRecord:
        self._check_open()
        record = self._tasks.get(lease.task_id)
        if record is None:
            raise TaskNotFound(
                f"background task {lease.task_id} not found ({what} by {lease.owner})",
                data={"task_id": str(lease.task_id)},
            )
        if record.token != lease.token or record.owner != lease.owner:
            raise StaleFencingToken(
                f"background task {lease.task_id}: {what} by {lease.owner!r} with fencing token "
                f"{lease.token} rejected: the task is owned by {record.owner!r} with token "
                f"{record.token}",
                data={
                    "task_id": str(lease.task_id),
                    "owner": lease.owner,
                    "token": lease.token,
                    "current_owner": record.owner,
                    "current_token": record.token,
                },
            )
        if record.state.is_final:
            raise TaskAlreadyFinished(
                f"background task {lease.task_id}: {what} by {lease.owner!r} rejected: the task "
                f"already ended as {record.state}",
                data={"task_id": str(lease.task_id), "state": str(record.state)},
            )
        return record

    def _put(self, record: TaskRecord, **changes: Any) -> TaskRecord:
        updated = dataclasses.replace(record, updated_at=self._clock.time(), **changes)
        self._tasks[record.task_id] = updated
        return updated

    async def mark_running(self, lease: Lease, *, lease_ttl: float) -> TaskRecord:
        """Pending -> running, one more run, lease renewed."""
        self._check_durations("mark_running()", lease_ttl=lease_ttl)
        record = self._fenced(lease, "mark_running")
        now = self._clock.time()
        return self._put(
            record,
            state=TaskState.RUNNING,
            run_count=record.run_count + 1,
            started_at=record.started_at if record.started_at is not None else now,
            lease_expires_at=now + lease_ttl,
        )

    async def update_progress(
        self,
        lease: Lease,
        *,
        current: float,
        total: float,
        message: str | None = None,
        checkpoint: Any = None,
        save_checkpoint: bool = False,
    ) -> None:
        """Record progress."""
        record = self._fenced(lease, "update_progress")
        changes: dict[str, Any] = {"current": current, "total": total, "message": message}
        if save_checkpoint:
            changes["checkpoint"] = copy.deepcopy(checkpoint)
        self._put(record, **changes)

    async def finish(
        self,
        lease: Lease,
        outcome: TaskOutcome,
        *,
        current: float | None = None,
        total: float | None = None,
    ) -> TaskRecord:
        """End the task; it is purged after its retention."""
        if not outcome.state.is_final:
            raise InvalidArgument(
                f"finish(): state {outcome.state!r} is not final", data={"field": "state"}
            )
        record = self._fenced(lease, "finish")
        now = self._clock.time()
        return self._put(
            record,
            state=outcome.state,
            message=outcome.message,
            result=copy.deepcopy(outcome.result),
            errors=tuple(outcome.errors),
            error_code=outcome.error_code,
            finished_at=now,
            lease_expires_at=None,
            expires_at=now + record.retention,
            current=record.current if current is None else current,
            total=record.total if total is None else total,
        )

    async def release(self, lease: Lease) -> None:
        """Back to pending with an expired lease; the released lease's token is retired."""
        record = self._fenced(lease, "release")
        self._put(
            record,
            state=TaskState.PENDING,
            token=record.token + 1,
            lease_expires_at=self._clock.time(),
        )

    async def renew(
        self, owner: str, leases: Sequence[Lease], *, lease_ttl: float
    ) -> dict[TaskId, LeaseStatus]:
        """Extend the leases still held."""
        self._check_durations("renew()", lease_ttl=lease_ttl)
        self._check_open()
        now = self._clock.time()
        out: dict[TaskId, LeaseStatus] = {}
        for lease in leases:
            record = self._tasks.get(lease.task_id)
            if (
                record is None
                or record.state.is_final
                or record.owner != owner
                or record.token != lease.token
            ):
                out[lease.task_id] = LeaseStatus.LOST
                continue
            self._tasks[lease.task_id] = dataclasses.replace(
                record, lease_expires_at=now + lease_ttl
            )
            out[lease.task_id] = (
                LeaseStatus.CANCEL_REQUESTED if record.cancel_requested else LeaseStatus.RENEWED
            )
        return out

    # -- any node ------------------------------------------------------------------------

    async def request_cancel(self, task_id: TaskId) -> TaskRecord:
        """Flag for cancellation and notify listeners."""
        self._check_open()
        record = self._tasks.get(task_id)
        if record is None:
            raise TaskNotFound(
                f"background task {task_id} not found", data={"task_id": str(task_id)}
            )
        if record.state.is_final:
            return record
        record = self._put(record, cancel_requested=True)
        for listener in self._listeners:
            listener.put_nowait(task_id)
        return record

    async def expired(self, *, limit: int = 100) -> list[ExpiredLease]:
        """Unfinished tasks with a lease in the past."""
        self._check_open()
        now = self._clock.time()
        found = [
            ExpiredLease(r.task_id, r.name, r.lease_expires_at, now - r.lease_expires_at)
            for r in self._tasks.values()
            if not r.state.is_final and r.lease_expires_at is not None and r.lease_expires_at <= now
        ]
        found.sort(key=lambda e: (e.expired_at, str(e.task_id)))
        return found[:limit]

    async def adopt(self, task_id: TaskId, owner: str, *, lease_ttl: float) -> TaskRecord | None:
        """Take over an expired lease with the next token."""
        self._check_durations("adopt()", lease_ttl=lease_ttl)
        self._check_open()
        record = self._tasks.get(task_id)
        now = self._clock.time()
        if (
            record is None
            or record.state.is_final
            or record.lease_expires_at is None
            or record.lease_expires_at > now
        ):
            return None
        return self._put(
            record,
            owner=owner,
            token=record.token + 1,
            previous_owner=record.owner,
            lease_expires_at=now + lease_ttl,
        )

    async def purge(self, *, limit: int = 500) -> int:
        """Drop final tasks past their retention."""
        self._check_open()
        now = self._clock.time()
        due = [
            r.task_id
            for r in self._tasks.values()
            if r.state.is_final and r.expires_at is not None and r.expires_at <= now
        ][:limit]
        for task_id in due:
            del self._tasks[task_id]
        return len(due)

    async def cancellations(self) -> AsyncGenerator[TaskId, None]:
        """Ids of tasks whose cancellation is requested from now on."""
        self._check_open()
        listener: asyncio.Queue[object] = asyncio.Queue()
        self._listeners.add(listener)
        try:
            while True:
                item = await listener.get()
                if item is _CLOSED:
                    return
                yield TaskId(item)  # type: ignore[arg-type]
        finally:
            self._listeners.discard(listener)
