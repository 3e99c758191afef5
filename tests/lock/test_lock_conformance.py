"""The AbstractDistributedLock contract, run against every backend."""

from __future__ import annotations

import asyncio

import pytest

from ai.backend.common.lock import LockError, LockTimeout, LockUsageError

from .conftest import LockEnv


async def test_acquire_release_and_locked(lock_env: LockEnv) -> None:
    lock = lock_env.make()
    assert not lock.locked
    async with lock:
        assert lock.locked
    assert not lock.locked
    await lock.release()  # idempotent


async def test_second_holder_times_out(lock_env: LockEnv) -> None:
    first, second = lock_env.make(), lock_env.make(timeout=0.3)
    async with first:
        with pytest.raises(LockTimeout) as info:
            await second.acquire()
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, LockError)
        assert not second.locked
        assert first.locked


async def test_waiter_gets_the_lock_after_release(lock_env: LockEnv) -> None:
    first, second = lock_env.make(), lock_env.make(timeout=10)
    await first.acquire()
    async with asyncio.TaskGroup() as tg:
        waiter = tg.create_task(second.acquire())
        await asyncio.sleep(0.2)  # let it start waiting
        assert not waiter.done()
        await first.release()
    assert second.locked
    await second.release()


async def test_lifetime_frees_the_lock(lock_env: LockEnv) -> None:
    life = lock_env.short_lifetime
    crashed, next_holder = lock_env.make(lifetime=life), lock_env.make(timeout=life + 8)
    await crashed.acquire()  # and never released, as by a holder that died
    await next_holder.acquire()
    assert next_holder.locked
    assert not crashed.locked
    await next_holder.release()


async def test_expired_holder_cannot_free_next(lock_env: LockEnv) -> None:
    life = lock_env.short_lifetime
    old, new = lock_env.make(lifetime=life), lock_env.make(timeout=life + 8)
    third = lock_env.make(timeout=0.3)
    await old.acquire()
    await new.acquire()  # after old's lifetime ended
    await old.release()  # too late: must not free the new holder's lock
    with pytest.raises(LockTimeout):
        await third.acquire()
    assert new.locked
    await new.release()


async def test_block_releases_on_exception(lock_env: LockEnv) -> None:
    lock, other = lock_env.make(), lock_env.make(timeout=2)
    with pytest.raises(RuntimeError):
        async with lock:
            raise RuntimeError("boom")
    async with other:
        assert other.locked


async def test_cancelled_waiter_does_not_hold(lock_env: LockEnv) -> None:
    holder, waiter, after = lock_env.make(), lock_env.make(timeout=10), lock_env.make(timeout=5)
    await holder.acquire()
    task = asyncio.create_task(waiter.acquire())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await holder.release()
    async with after:  # the cancelled waiter left nothing behind
        assert after.locked
    assert not waiter.locked


async def test_contenders_never_overlap(lock_env: LockEnv) -> None:
    inside = 0
    peak = 0
    done = 0

    async def worker(i: int) -> None:
        nonlocal inside, peak, done
        for _ in range(3):
            async with lock_env.make(timeout=30):
                inside += 1
                peak = max(peak, inside)
                await asyncio.sleep(0.005)
                inside -= 1
                done += 1

    async with asyncio.TaskGroup() as tg:
        for i in range(4):
            tg.create_task(worker(i))
    assert done == 12
    assert peak == 1


async def test_different_names_do_not_conflict(lock_env: LockEnv) -> None:
    async with lock_env.make("a"), lock_env.make("b", timeout=0.5) as b:
        assert b.locked


async def test_acquire_twice_is_a_usage_error(lock_env: LockEnv) -> None:
    lock = lock_env.make()
    async with lock:
        with pytest.raises(LockUsageError):
            await lock.acquire()
    with pytest.raises(LockUsageError):
        lock_env.make(lifetime=0)


async def test_timed_out_acquire_leaves_nothing_behind(lock_env: LockEnv) -> None:
    async with lock_env.make("busy"):
        before = await lock_env.footprint()
        waiter = lock_env.make("busy", timeout=0.05)
        for _ in range(20):
            with pytest.raises(LockTimeout):
                await waiter.acquire()
        assert await lock_env.footprint() == before
        assert not waiter.locked


async def test_lock_won_too_late_is_released_on_timeout(lock_env: LockEnv) -> None:
    # Replies come 0.3 s late; whichever request takes the lock (the first or the second round
    # trip, depending on the backend), one of these timeouts expires while its reply is on the
    # way: the lock is taken, but the holder never learns it.
    before = await lock_env.footprint()
    timed_out = 0
    for timeout in (0.15, 0.45, 0.75):
        late = lock_env.make("late", lifetime=30, timeout=timeout)
        async with lock_env.slow_replies(0.3):
            try:
                await late.acquire()
            except LockTimeout:
                timed_out += 1
        await late.release()
        assert not late.locked
        assert await lock_env.footprint() == before  # not held by nobody until it expires
        async with lock_env.make("late", timeout=2) as other:
            assert other.locked
    assert timed_out >= 1
