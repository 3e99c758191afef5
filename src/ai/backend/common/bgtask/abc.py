"""The task-store interface: task records, leases with fencing tokens, indexes, retention.

Backends: :class:`~.redis.RedisTaskStore` (one Redis hash per task, Lua scripts for every
fenced write) and :class:`~.memory.MemoryTaskStore` (one process, injectable clock). Both pass
one conformance suite, ``tests/bgtask/test_store_conformance.py``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from typing import Any

from ..aio import AsyncResource
from ..exception import InvalidArgument
from .types import ExpiredLease, Lease, LeaseStatus, TaskId, TaskOutcome, TaskRecord, TaskState

__all__ = ("AbstractTaskStore",)


class AbstractTaskStore(AsyncResource):
    """Where every node of a cluster keeps and finds background tasks.

    Promises (every backend):

    - every write to a task (``mark_running``, ``update_progress``, ``finish``, ``release``)
      presents a :class:`~.types.Lease`; it is applied atomically only if the lease's owner and
      fencing token are the task's current ones, else it raises ``StaleFencingToken`` and
      changes nothing (a final task raises ``TaskAlreadyFinished``);
    - ``adopt`` succeeds only once the lease has expired on the store's clock, and gives the
      adopter a token one higher than the last, so the previous owner's writes are rejected;
    - ``release`` ends the lease at once: the token moves one up, so the released lease can
      neither be renewed nor write;
    - a task keeps its lease only while its owner renews it; an unfinished task whose lease ran
      out is listed by ``expired``;
    - a final task is listed and readable for its retention period; then ``purge`` removes the
      record and every index entry of it (nothing of it is left in the store);
    - ``request_cancel`` sets a flag that the owner sees on its next renewal
      (``LeaseStatus.CANCEL_REQUESTED``), and notifies ``cancellations()`` iterators (a hint
      that may be lost: the flag is the truth).

    Each call is applied atomically or not at all; a cancelled call may or may not have been
    applied. Errors are :class:`~.exceptions.BgtaskError` subclasses (``TaskStoreUnavailable``
    when the backend cannot be reached), or ``InvalidArgument`` for a bad argument, never a
    backend's own: a ``lease_ttl`` that is not a finite number > 0, or a ``retention`` that is
    not a finite number >= 0, is refused (naming it) before anything is written
    (``retention=0`` is valid: the final record may be purged at once). ``async with`` opens,
    ``aclose()`` closes (idempotent); a store handed an already open client never closes it.
    """

    @staticmethod
    def _check_durations(
        what: str, *, lease_ttl: float | None = None, retention: float | None = None
    ) -> None:
        """Raise ``InvalidArgument`` for a lease TTL that is not a finite number > 0 or a
        retention that is not a finite number >= 0 (for the backends, before any write)."""
        if lease_ttl is not None and not (math.isfinite(lease_ttl) and lease_ttl > 0):
            raise InvalidArgument(
                f"{what}: lease_ttl must be a finite number of seconds > 0, got {lease_ttl!r}",
                data={"field": "lease_ttl"},
            )
        if retention is not None and not (math.isfinite(retention) and retention >= 0):
            raise InvalidArgument(
                f"{what}: retention must be a finite number of seconds >= 0, got {retention!r}",
                data={"field": "retention"},
            )

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect; idempotent."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections and end ``cancellations()`` iterators; idempotent."""

    # -- create and read ------------------------------------------------------------------

    @abc.abstractmethod
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
        """Record a new ``pending`` task owned by ``owner`` with fencing token 1 and a lease of
        ``lease_ttl`` seconds. A taken id raises ``TaskAlreadyExists``."""

    @abc.abstractmethod
    async def get(self, task_id: TaskId) -> TaskRecord | None:
        """The task's record, or ``None`` if it does not exist (or was purged)."""

    @abc.abstractmethod
    async def list_tasks(
        self,
        *,
        owner: str | None = None,
        tag: str | None = None,
        states: Collection[TaskState] | None = None,
    ) -> list[TaskRecord]:
        """Tasks of ``owner`` and/or with ``tag`` (all tasks when neither is given), optionally
        only in ``states``, oldest first. Final tasks are listed until purged."""

    # -- the owner's writes (fenced) ----------------------------------------------------

    @abc.abstractmethod
    async def mark_running(self, lease: Lease, *, lease_ttl: float) -> TaskRecord:
        """``pending`` -> ``running`` (or stay ``running`` on a resume): count one more run,
        set ``started_at`` the first time, and renew the lease."""

    @abc.abstractmethod
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
        """Record progress (and the checkpoint when ``save_checkpoint``)."""

    @abc.abstractmethod
    async def finish(
        self,
        lease: Lease,
        outcome: TaskOutcome,
        *,
        current: float | None = None,
        total: float | None = None,
    ) -> TaskRecord:
        """End the task in ``outcome.state`` (a final state); it is purged after its retention.
        ``current``/``total`` record the last progress in the same write."""

    @abc.abstractmethod
    async def release(self, lease: Lease) -> None:
        """Give the task up: it goes back to ``pending`` with an expired lease, so another node
        adopts it on its next scan (graceful hand-over).

        The released lease is over: the task's fencing token moves one up, so a renewal
        presenting the old lease (a heartbeat already under way) reports ``LOST`` and extends
        nothing, and a write presenting it raises ``StaleFencingToken``."""

    @abc.abstractmethod
    async def renew(
        self, owner: str, leases: Sequence[Lease], *, lease_ttl: float
    ) -> dict[TaskId, LeaseStatus]:
        """Extend the leases ``owner`` still holds by ``lease_ttl`` seconds, in one round trip;
        reports each task as renewed, renewed with a cancel request, or lost."""

    # -- any node --------------------------------------------------------------------

    @abc.abstractmethod
    async def request_cancel(self, task_id: TaskId) -> TaskRecord:
        """Flag the task for cancellation and notify ``cancellations()``; returns the record.

        A final task is returned unchanged; an unknown id raises ``TaskNotFound``.
        """

    @abc.abstractmethod
    async def expired(self, *, limit: int = 100) -> list[ExpiredLease]:
        """Unfinished tasks whose lease has run out, the longest expired first."""

    @abc.abstractmethod
    async def adopt(self, task_id: TaskId, owner: str, *, lease_ttl: float) -> TaskRecord | None:
        """Take over a task whose lease has expired: ``owner`` gets it with the next fencing
        token and a fresh lease; ``previous_owner`` says who had it. ``None`` when the lease is
        still live, the task is final or gone, or another node adopted it first."""

    @abc.abstractmethod
    async def purge(self, *, limit: int = 500) -> int:
        """Remove up to ``limit`` final tasks whose retention has passed, with all their index
        entries (and their cached bgtask event, where the backend can reach it); returns how
        many were removed."""

    @abc.abstractmethod
    def cancellations(self) -> AsyncGenerator[TaskId, None]:
        """Yield the ids of tasks whose cancellation is requested from now on, until the store
        closes. A hint for low latency: notifications may be lost (the renewal reports the flag
        anyway). Close it when stopping early (``contextlib.aclosing``)."""
