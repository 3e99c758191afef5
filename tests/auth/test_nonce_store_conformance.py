"""The AbstractNonceStore contract, run against every backend."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from ai.backend.common.auth import AbstractNonceStore


async def test_first_sight_only(nonce_store: AbstractNonceStore) -> None:
    window = timedelta(minutes=5)
    assert await nonce_store.remember("AK:abc", window)
    assert not await nonce_store.remember("AK:abc", window)
    assert not await nonce_store.remember("AK:abc", window)
    assert await nonce_store.remember("AK:abd", window)


async def test_concurrent_first_calls_have_one_winner(nonce_store: AbstractNonceStore) -> None:
    results = await asyncio.gather(
        *(nonce_store.remember("AK:same", timedelta(minutes=1)) for _ in range(20))
    )
    assert results.count(True) == 1


async def test_expires_after_ttl(nonce_store: AbstractNonceStore) -> None:
    assert await nonce_store.remember("AK:short", timedelta(milliseconds=50))
    async with asyncio.timeout(5):  # wait for the expiry with a deadline
        while True:
            if await nonce_store.remember("AK:short", timedelta(milliseconds=50)):
                break
            await asyncio.sleep(0.02)


async def test_aclose_is_idempotent(nonce_store: AbstractNonceStore) -> None:
    await nonce_store.aclose()
    await nonce_store.aclose()
