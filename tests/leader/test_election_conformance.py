"""The AbstractLeaderElection contract, run against every backend."""

from __future__ import annotations

import asyncio
import time

import pytest

from ai.backend.common.leader import AbstractLeaderElection, LeaderElectionClosed, LeadershipChange

from .conftest import ElectionEnv

HANDOVER_MARGIN = 0.75
"""Seconds past one lease period within which a crashed leader's follower has taken over.

Measured from the abort: 1.00 s on Redis and in-memory etcd (TTL 1 s), 2.29-2.38 s on a real
etcd (TTL 2 s: it revokes expired leases on a 500 ms check).
"""


async def _leader_of(cands: list[AbstractLeaderElection], within: float) -> AbstractLeaderElection:
    async with asyncio.timeout(within):
        while True:
            leaders = [c for c in cands if c.is_leader]
            assert len(leaders) <= 1, [c.server_id for c in leaders]
            if leaders:
                return leaders[0]
            await asyncio.sleep(0.01)


async def test_single_candidate_becomes_leader(election_env: ElectionEnv) -> None:
    candidate = await election_env.open("solo")
    async with asyncio.timeout(election_env.ttl + 5):
        await candidate.wait_for_leadership()
    assert candidate.is_leader
    assert candidate.statistics().terms == 1
    assert await election_env.current_leader() == "solo"


async def test_exactly_one_leader_among_candidates(election_env: ElectionEnv) -> None:
    cands = [await election_env.open(f"c{i}") for i in range(3)]
    leader = await _leader_of(cands, election_env.ttl + 5)
    # Watch the invariant over more than one lease period (several renewals).
    loop = asyncio.get_running_loop()
    end = loop.time() + election_env.ttl * 1.5
    while loop.time() < end:
        assert [c.server_id for c in cands if c.is_leader] == [leader.server_id]
        await asyncio.sleep(0.01)
    assert await election_env.current_leader() == leader.server_id
    assert leader.statistics().renewals >= 1


async def test_stop_hands_over(election_env: ElectionEnv) -> None:
    cands = [await election_env.open(f"s{i}") for i in range(2)]
    leader = await _leader_of(cands, election_env.ttl + 5)
    other = next(c for c in cands if c is not leader)
    await leader.aclose()
    assert not leader.is_leader
    async with asyncio.timeout(election_env.ttl + 5):
        await other.wait_for_leadership()
    assert await election_env.current_leader() == other.server_id


async def test_crash_hands_over_within_one_lease(election_env: ElectionEnv) -> None:
    acquired_at: dict[str, float] = {}

    def note(change: LeadershipChange) -> None:
        if change.is_leader:
            acquired_at[change.server_id] = time.monotonic()

    cands = [await election_env.open(f"k{i}") for i in range(2)]
    for c in cands:
        c.add_observer(note)
    leader = await _leader_of(cands, election_env.ttl + 5)
    other = next(c for c in cands if c is not leader)
    certain_until = leader.valid_until  # the crashed leader believed itself leader until then
    await leader.abort()
    # The dead leader's lease ends at most one TTL after its last renewal, which came before
    # the abort. HANDOVER_MARGIN covers the server noticing the expiry (etcd revokes expired
    # leases on a 500 ms check) and the follower's campaign and scheduling.
    await _leader_of([other], election_env.ttl + HANDOVER_MARGIN)
    assert acquired_at[other.server_id] >= certain_until  # the two terms never overlapped


async def test_lost_lease_steps_down(election_env: ElectionEnv) -> None:
    changes: list[LeadershipChange] = []
    candidate = await election_env.open("victim")
    candidate.add_observer(changes.append)
    async with asyncio.timeout(election_env.ttl + 5):
        await candidate.wait_for_leadership()
    await election_env.lose()  # someone deletes the lease key
    async with asyncio.timeout(election_env.ttl + 5):
        await candidate.wait_for_step_down()
        await candidate.wait_for_leadership()  # and it campaigns again
    assert [c.is_leader for c in changes[:3]] == [True, False, True]
    assert changes[1].reason == "the lease was lost"
    assert candidate.statistics().step_downs == 1


async def test_closed_election(election_env: ElectionEnv) -> None:
    candidate = await election_env.open("closing")
    waiter = await election_env.open("waiting")
    await _leader_of([candidate, waiter], election_env.ttl + 5)
    follower = waiter if candidate.is_leader else candidate
    task = asyncio.create_task(follower.wait_for_leadership())
    await asyncio.sleep(0.05)
    await follower.aclose()
    with pytest.raises(LeaderElectionClosed):
        await task
    await follower.aclose()  # idempotent
    with pytest.raises(LeaderElectionClosed):
        await follower.open()
