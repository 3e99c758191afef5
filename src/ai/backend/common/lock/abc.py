"""The distributed-lock interface, :class:`AbstractDistributedLock` (upstream's name).

Backends: :class:`~.etcd.EtcdLock`, :class:`~.redis.RedisLock`, :class:`~.file.FileLock`; all
pass ``tests/lock/test_lock_conformance.py``.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from .exceptions import LockError, LockTimeout, LockUsageError

__all__ = ("CLEANUP_TIMEOUT", "DEFAULT_LIFETIME", "DEFAULT_TIMEOUT", "AbstractDistributedLock")

DEFAULT_LIFETIME = 30.0
"""Seconds a lock is held at most unless released earlier."""

DEFAULT_TIMEOUT = 10.0
"""Seconds ``acquire()`` waits by default (``None`` waits forever)."""

CLEANUP_TIMEOUT = 5.0
"""Seconds a failed ``acquire()`` spends at most releasing what it may have won."""


class AbstractDistributedLock(abc.ABC):
    """A lock shared by processes (and by tasks of one process), held at most ``lifetime``.

    At most one holder at a time: while it holds the lock (and its lifetime has not ended), every
    other ``acquire()`` waits, then raises ``LockTimeout`` after ``timeout`` seconds. ``release()``
    (or leaving ``async with``) frees it for the next waiter. A holder that crashes or overstays
    loses the lock when ``lifetime`` ends; ``locked`` turns false at that moment, so check it
    before committing long work. One object is one holder: acquire it again only after release.
    """

    def __init__(
        self,
        *,
        lifetime: float = DEFAULT_LIFETIME,
        timeout: float | None = DEFAULT_TIMEOUT,
        time_source: Callable[[], float] = time.monotonic,
    ) -> None:
        if lifetime <= 0:
            raise LockUsageError(f"lock lifetime must be positive: {lifetime!r}")
        self._lifetime = lifetime
        self._timeout = timeout
        self._now = time_source
        self._held_until: float | None = None

    @property
    def lifetime(self) -> float:
        """Seconds the lock is held at most."""
        return self._lifetime

    @property
    def locked(self) -> bool:
        """Whether this object holds the lock now (acquired, not released, lifetime not over)."""
        return self._held_until is not None and self._now() < self._held_until

    async def __aenter__(self) -> Self:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Releasing is short and must happen even if the task is being cancelled.
        await asyncio.shield(self.release())

    async def acquire(self) -> None:
        """Wait until the lock is ours; ``LockTimeout`` after the ``timeout`` given at
        construction. If it fails, times out or is cancelled, nothing is left behind: a lock
        won at the last moment (the reply came too late) is released, and local resources
        (file descriptors) are freed."""
        if self._held_until is not None:
            raise LockUsageError(f"{self!r} is already held by this object; release it first")
        deadline = asyncio.timeout(self._timeout)
        try:
            async with deadline:
                won_at = await self._acquire()
        except BaseException as exc:
            error: BaseException = exc
            if isinstance(exc, TimeoutError) and deadline.expired():
                error = LockTimeout(
                    f"{self!r} was not acquired within {self._timeout} s",
                    data={"timeout": self._timeout},
                )
            await self._clean_up_failed_acquire(error)
            if error is exc:
                raise
            raise error from None
        self._held_until = won_at + self._lifetime

    async def _clean_up_failed_acquire(self, error: BaseException) -> None:
        """Release whatever a failed, timed-out or cancelled ``_acquire`` may hold."""
        # Short cleanup that must run even while the caller is cancelled: free a lock won at
        # the last moment, so it does not stay held by nobody until its lifetime ends. It is
        # bounded, and if it fails the lock still ends with its lifetime.
        try:
            await asyncio.shield(self._release_within(CLEANUP_TIMEOUT))
        except (LockError, TimeoutError) as cleanup:
            error.add_note(f"releasing {self!r} after the failed acquire failed too: {cleanup!r}")

    async def _release_within(self, seconds: float) -> None:
        async with asyncio.timeout(seconds):
            await self._release()

    async def release(self) -> None:
        """Free the lock; idempotent (releasing a lock not held does nothing)."""
        if self._held_until is None:
            return
        self._held_until = None
        await self._release()

    @abc.abstractmethod
    async def _acquire(self) -> float:
        """Wait until the lock is ours (cancelled by the timeout); returns ``self._now()`` as
        read just before the request that won it (the lifetime counts from there)."""

    @abc.abstractmethod
    async def _release(self) -> None:
        """Free the lock if we hold it (must be safe when we do not)."""
