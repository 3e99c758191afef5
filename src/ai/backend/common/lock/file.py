"""File lock: ``fcntl.flock`` on a file, for processes of one host (and tasks of one process).

Guarantees: the conformance suite [tests/lock/test_lock_conformance.py]; the OS frees the lock
when its process dies [tests/lock/test_file.py::test_killed_holder_frees_the_lock].
Limits: local file systems only (``flock`` over NFS is not reliable); waiters poll every
``retry_interval``; the lifetime is enforced by a timer of the holder's event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from .abc import DEFAULT_LIFETIME, DEFAULT_TIMEOUT, AbstractDistributedLock
from .exceptions import LockError

__all__ = ("FileLock",)


class FileLock(AbstractDistributedLock):
    """A lock on ``path`` (created if missing, never deleted)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lifetime: float = DEFAULT_LIFETIME,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry_interval: float = 0.02,
        time_source: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(lifetime=lifetime, timeout=timeout, time_source=time_source)
        self._path = Path(path)
        self._retry = retry_interval
        self._fd: int | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"FileLock({str(self._path)!r})"

    async def _acquire(self) -> float:
        try:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LockError(f"cannot open lock file {str(self._path)!r}: {exc}") from exc
        while True:
            started = self._now()
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                await asyncio.sleep(self._retry)
                continue
            except OSError as exc:
                raise LockError(f"cannot lock {str(self._path)!r}: {exc}") from exc
            self._timer = asyncio.get_running_loop().call_later(self._lifetime, self._expire)
            return started

    def _expire(self) -> None:
        """The lifetime ended while held: free the lock for the next holder."""
        self._timer = None
        self._unlock()

    def _unlock(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    async def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._unlock()
