"""ProgressReporter: what a running handler uses to report progress and see cancel requests.

``update()`` only records the latest values (it never blocks); the manager writes them to the
store and broadcasts ``bgtask_updated`` at most once per ``progress_interval`` per task, so a
handler may call it in a tight loop. The latest values are always written before the task's
final event. ``save_checkpoint()`` writes at once (fenced), for resumable handlers.

Guarantees:
- updates are coalesced to at most one write per ``progress_interval``, and the last values are
  written before the final event [tests/bgtask/test_manager.py::test_progress_is_coalesced]
  [tests/bgtask/test_manager.py::test_final_progress_is_always_written].
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from ..exception import InvalidArgument
from .types import TaskId

__all__ = ("ProgressReporter", "ProgressSnapshot")


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """The values of a reporter at one moment; ``seq`` counts the updates so far."""

    seq: int
    current: float
    total: float
    message: str | None


class _ProgressSink(Protocol):
    def progress_changed(self, task_id: TaskId) -> None: ...

    async def save_checkpoint(self, task_id: TaskId, value: Any) -> None: ...


class ProgressReporter:
    """Handed to a task's handler (upstream's name): progress, checkpoint, cancel requests."""

    def __init__(
        self,
        task_id: TaskId,
        sink: _ProgressSink,
        *,
        fencing_token: int,
        run_count: int = 1,
        last_checkpoint: Any = None,
        current: float = 0.0,
        total: float = 0.0,
        message: str | None = None,
    ) -> None:
        self._task_id = task_id
        self._sink = sink
        self._token = fencing_token
        self._run_count = run_count
        self._checkpoint = last_checkpoint
        self._current = float(current)
        self._total = float(total)
        self._message = message
        self._seq = 0
        self._flushed_seq = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._cancel_requested = asyncio.Event()

    # -- what the handler reads ------------------------------------------------------

    @property
    def task_id(self) -> TaskId:
        """The task's id."""
        return self._task_id

    @property
    def fencing_token(self) -> int:
        """This run's fencing token: pass it to external systems that can fence writes."""
        return self._token

    @property
    def run_count(self) -> int:
        """1 on the first run, more when the task is resumed after its owner was lost."""
        return self._run_count

    @property
    def resumed(self) -> bool:
        """Whether an earlier run of this task was interrupted (this is a resume)."""
        return self._run_count > 1

    @property
    def last_checkpoint(self) -> Any:
        """The last value saved with :meth:`save_checkpoint` (by this or an earlier run)."""
        return self._checkpoint

    @property
    def current_progress(self) -> float:
        """The current progress value (upstream's name)."""
        return self._current

    @property
    def total_progress(self) -> float:
        """The total progress value (upstream's name)."""
        return self._total

    @total_progress.setter
    def total_progress(self, value: float) -> None:
        self.update(total=value)

    @property
    def message(self) -> str | None:
        """The last progress message."""
        return self._message

    @property
    def cancel_requested(self) -> bool:
        """Whether cancellation was requested (the handler is also cancelled)."""
        return self._cancel_requested.is_set()

    async def wait_cancel_requested(self) -> None:
        """Return once cancellation is requested."""
        await self._cancel_requested.wait()

    # -- what the handler does --------------------------------------------------------

    def update(
        self,
        increment: float = 0,
        message: str | None = None,
        *,
        current: float | None = None,
        total: float | None = None,
    ) -> None:
        """Add ``increment`` (or set ``current``), optionally set ``total`` and ``message``.

        Never blocks: the manager writes the latest values at its bounded rate.
        """
        if current is not None and increment:
            raise InvalidArgument(
                "ProgressReporter.update(): pass increment or current, not both",
                data={"field": "current"},
            )
        if current is not None:
            self._current = float(current)
        else:
            self._current += float(increment)
        if total is not None:
            self._total = float(total)
        if message is not None:
            self._message = message
        self._seq += 1
        self._sink.progress_changed(self._task_id)

    async def flush(self) -> None:
        """Wait until the values of the last :meth:`update` are written (at the bounded rate).

        Cancelling leaves the write scheduled.
        """
        target = self._seq
        if self._flushed_seq >= target:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        await future

    async def save_checkpoint(self, value: Any) -> None:
        """Store ``value`` (JSON-able) with the task at once, fenced; a resumed run reads it
        back as :attr:`last_checkpoint`. Raises ``StaleFencingToken`` if this node lost the
        task."""
        await self._sink.save_checkpoint(self._task_id, value)
        self._checkpoint = value

    def raise_if_cancel_requested(self) -> None:
        """Raise ``asyncio.CancelledError`` if cancellation was requested."""
        if self._cancel_requested.is_set():
            raise asyncio.CancelledError()

    # -- what the manager uses --------------------------------------------------------

    def snapshot(self) -> ProgressSnapshot:
        """The current values and update count."""
        return ProgressSnapshot(self._seq, self._current, self._total, self._message)

    @property
    def unflushed(self) -> bool:
        """Whether some update is not written yet."""
        return self._seq > self._flushed_seq

    def mark_flushed(self, seq: int) -> None:
        """Record that the values of update ``seq`` are written; wake :meth:`flush` callers."""
        if seq <= self._flushed_seq:
            return
        self._flushed_seq = seq
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for target, future in self._waiters:
            if target <= seq:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((target, future))
        self._waiters = keep

    def release_waiters(self) -> None:
        """Wake every :meth:`flush` caller (the task ended; nothing more will be written)."""
        for _, future in self._waiters:
            if not future.done():
                future.set_result(None)
        self._waiters = []

    def request_cancel(self) -> None:
        """Mark cancellation as requested."""
        self._cancel_requested.set()
