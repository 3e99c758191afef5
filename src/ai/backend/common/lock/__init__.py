"""Distributed locks with a lifetime, as async context managers (upstream's names).

``async with EtcdLock(etcd, "name", lifetime=30):`` (or :class:`RedisLock`, :class:`FileLock`)
holds the lock for the block; at most one holder at a time; a holder that crashes or overstays
loses it when its ``lifetime`` ends. ``acquire()`` raises :class:`LockTimeout` after
``timeout``.

Guarantees:
- mutual exclusion, also among many concurrent contenders
  [tests/lock/test_lock_conformance.py::test_contenders_never_overlap];
- a lock whose holder neither releases nor lives on is free after its lifetime
  [tests/lock/test_lock_conformance.py::test_lifetime_frees_the_lock];
- a waiter gets the lock soon after the holder releases it
  [tests/lock/test_lock_conformance.py::test_waiter_gets_the_lock_after_release];
- leaving the block releases, also on an exception or cancellation
  [tests/lock/test_lock_conformance.py::test_block_releases_on_exception];
- a holder whose lifetime ended cannot delete the lock of the next holder
  [tests/lock/test_lock_conformance.py::test_expired_holder_cannot_free_next];
- an ``acquire()`` that times out leaves nothing behind: no file descriptor, and no lock won
  too late for its caller to learn it (it is released before ``LockTimeout`` is raised)
  [tests/lock/test_lock_conformance.py::test_timed_out_acquire_leaves_nothing_behind]
  [tests/lock/test_lock_conformance.py::test_lock_won_too_late_is_released_on_timeout].

Limits: ``locked`` turns false when the lifetime ends, but work already started is not stopped.
"""

from .abc import CLEANUP_TIMEOUT, DEFAULT_LIFETIME, DEFAULT_TIMEOUT, AbstractDistributedLock
from .etcd import DEFAULT_ETCD_LOCK_PREFIX, EtcdLock
from .exceptions import LockError, LockTimeout, LockUnavailable, LockUsageError
from .file import FileLock
from .redis import DEFAULT_REDIS_LOCK_PREFIX, RedisLock

__all__ = (
    "CLEANUP_TIMEOUT",
    "DEFAULT_ETCD_LOCK_PREFIX",
    "DEFAULT_LIFETIME",
    "DEFAULT_REDIS_LOCK_PREFIX",
    "DEFAULT_TIMEOUT",
    "AbstractDistributedLock",
    "EtcdLock",
    "FileLock",
    "LockError",
    "LockTimeout",
    "LockUnavailable",
    "LockUsageError",
    "RedisLock",
)
