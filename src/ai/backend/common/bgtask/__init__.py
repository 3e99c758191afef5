"""Background tasks: leased ownership, progress, cancellation from any node, crash recovery.

A component starts long work with :class:`BackgroundTaskManager` and gets a task id at once;
clients follow it through upstream's bgtask events (:class:`TaskFollower`, the SSE handler of
:mod:`.sse`) until it ends. Tasks are registered by name with a pydantic manifest
(:class:`TaskRegistry`) so that another node can resume or fail them after a crash. The state
lives in an :class:`AbstractTaskStore`: :class:`~.redis.RedisTaskStore` (imported from
``ai.backend.common.bgtask.redis``) or :class:`MemoryTaskStore`.

Redis keys (all start with ``bgtask``, so an upstream peer never reads them): ``bgtask:t:<id>``
(hash per task), ``bgtask:leases`` (zset of lease deadlines), ``bgtask:done`` (zset of purge
deadlines), ``bgtask:o:<node>`` and ``bgtask:g:<tag>`` (index sets), channel ``bgtask:cancel``;
events keep upstream's cache key ``bgtask.<id>``.

Guarantees:
- a write presenting an older fencing token is rejected with ``StaleFencingToken`` and changes
  nothing; adoption needs an expired lease and raises the token
  [tests/bgtask/test_store_conformance.py::test_stale_token_is_rejected]
  [tests/bgtask/test_store_conformance.py::test_adopt_needs_an_expired_lease];
- a released lease (graceful hand-over) is over at once: a heartbeat still under way cannot
  renew it, so the next adoption scan takes the task
  [tests/bgtask/test_store_conformance.py::test_released_lease_is_over];
- a crashed owner's tasks are adopted within two lease periods and resumed or failed with the
  reason; nothing stays ``running`` [tests/bgtask/test_kill.py::test_kill_9_owner_is_adopted]
  [tests/bgtask/test_manager.py::test_adoption_resumes_or_fails];
- a paused owner's late write is rejected once another node adopted its task
  [tests/bgtask/test_kill.py::test_paused_owner_is_fenced];
- ``cancel()`` works from any node and the task ends ``cancelled``
  [tests/bgtask/test_redis.py::test_cancel_from_second_node];
- closing hands tasks over or marks them, never forgets them
  [tests/bgtask/test_manager.py::test_shutdown_policies];
- progress is coalesced to a bounded rate and the final values are always written
  [tests/bgtask/test_manager.py::test_progress_is_coalesced]
  [tests/bgtask/test_manager.py::test_final_progress_is_always_written];
- the events are upstream's, names and fields
  [tests/bgtask/test_manager.py::test_events_match_upstream_vectors];
- final tasks are purged after their retention with every index entry: no ``bgtask*`` key is
  left [tests/bgtask/test_redis.py::test_no_key_left_after_retention];
- an SSE client that leaves early leaves no propagator, task or metric series behind
  [tests/bgtask/test_sse.py::test_early_disconnect_releases_everything].

Limits:
- fencing covers the store; a paused owner's own side effects run until its next heartbeat
  [tests/bgtask/test_kill.py::test_paused_owner_is_fenced];
- the Redis store needs one server or a Sentinel set (its scripts touch several keys, so it
  does not run on a Cluster) [tests/bgtask/test_redis.py::test_cluster_target_is_refused].
"""

from __future__ import annotations

from .abc import AbstractTaskStore
from .exceptions import (
    BgtaskError,
    DuplicateTaskName,
    InvalidTaskArgs,
    ManagerClosed,
    StaleFencingToken,
    TaskAlreadyExists,
    TaskAlreadyFinished,
    TaskCancelled,
    TaskNotFound,
    TaskStoreUnavailable,
    UnknownTaskName,
)
from .follow import FollowerStatistics, TaskFollower, subscribe_bgtask_events
from .manager import BackgroundTaskConfig, BackgroundTaskManager, ManagerStatistics
from .memory import MemoryTaskStore
from .metrics import BgtaskMetrics
from .registry import HandlerResult, TaskDefinition, TaskHandler, TaskRegistry
from .reporter import ProgressReporter, ProgressSnapshot
from .types import (
    ExpiredLease,
    Lease,
    LeaseStatus,
    ShutdownPolicy,
    SystemWallClock,
    TaskId,
    TaskOutcome,
    TaskRecord,
    TaskResult,
    TaskState,
    WallClock,
)

__all__ = (
    "AbstractTaskStore",
    "BackgroundTaskConfig",
    "BackgroundTaskManager",
    "BgtaskError",
    "BgtaskMetrics",
    "DuplicateTaskName",
    "ExpiredLease",
    "FollowerStatistics",
    "HandlerResult",
    "InvalidTaskArgs",
    "Lease",
    "LeaseStatus",
    "ManagerClosed",
    "ManagerStatistics",
    "MemoryTaskStore",
    "ProgressReporter",
    "ProgressSnapshot",
    "ShutdownPolicy",
    "StaleFencingToken",
    "SystemWallClock",
    "TaskAlreadyExists",
    "TaskAlreadyFinished",
    "TaskCancelled",
    "TaskDefinition",
    "TaskFollower",
    "TaskHandler",
    "TaskId",
    "TaskNotFound",
    "TaskOutcome",
    "TaskRecord",
    "TaskRegistry",
    "TaskResult",
    "TaskState",
    "TaskStoreUnavailable",
    "UnknownTaskName",
    "WallClock",
    "subscribe_bgtask_events",
)
