"""Leader election and leader-only periodic tasks (upstream's names).

:class:`AbstractLeaderElection` (alias :data:`LeaderElection`) is one candidate for a role;
:class:`RedisLeaderElection` uses a lease key (``SET NX PX``, a Lua compare-and-``PEXPIRE`` to
renew, compare-and-``DEL`` to release) and :class:`EtcdLeaderElection` a key under an etcd
lease. :class:`LeaderCron` / :func:`run_on_leader` run periodic tasks on the leader only.

Guarantees:
- at most one leader at any time among candidates of a role
  [tests/leader/test_election_conformance.py::test_exactly_one_leader_among_candidates]
  [tests/leader/test_proof.py::test_killed_leader_hands_over_within_one_lease];
- a leader that cannot renew steps down after ``max_renew_failures`` failures, before its lease
  could have expired [tests/leader/test_redis.py::test_leader_steps_down_when_redis_dies];
- when the leader stops it releases the lease and another candidate takes over at once; when it
  dies another takes over within one lease period
  [tests/leader/test_election_conformance.py::test_stop_hands_over]
  [tests/leader/test_election_conformance.py::test_crash_hands_over_within_one_lease];
- a leader whose lease was taken away steps down
  [tests/leader/test_election_conformance.py::test_lost_lease_steps_down].

Limits:
- "at any time" assumes clocks advance at the same rate on the candidates and the server (the
  safety margin, 10 % of the TTL by default, absorbs drift);
- on Redis with Sentinel, replication is asynchronous: a failover can promote a replica that
  lacks the latest write of the lease key, so a second candidate may win while the first still
  believes it leads, until its ``valid_until``. ``RedisLeaderElection(wait_replicas=N)`` counts
  a lease taken or renewed only once ``N`` replicas acknowledged it (``WAIT``), which narrows
  the window without closing it; etcd (Raft) has no such window
  [tests/leader/test_redis.py::test_wait_replicas_on_sentinel].
"""

from .abc import AbstractLeaderElection
from .cron import CronStatistics, LeaderCron, run_on_leader
from .etcd import EtcdLeaderElection
from .exceptions import LeaderElectionClosed, LeaderElectionUnavailable, LeaderError
from .redis import RedisLeaderElection
from .types import LeadershipChange, LeadershipObserver, LeaderStatistics, PeriodicTask

LeaderElection = AbstractLeaderElection
"""The interface, under the name the issue uses."""

__all__ = (
    "AbstractLeaderElection",
    "CronStatistics",
    "EtcdLeaderElection",
    "LeaderCron",
    "LeaderElection",
    "LeaderElectionClosed",
    "LeaderElectionUnavailable",
    "LeaderError",
    "LeaderStatistics",
    "LeadershipChange",
    "LeadershipObserver",
    "PeriodicTask",
    "RedisLeaderElection",
    "run_on_leader",
)
