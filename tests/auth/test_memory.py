"""Behaviour only the in-memory stores have."""

from __future__ import annotations

from datetime import timedelta

from ai.backend.common.auth import MemoryNonceStore


async def test_nonce_store_purges_expired() -> None:
    now = [0.0]
    store = MemoryNonceStore(clock=lambda: now[0])
    for i in range(100):
        assert await store.remember(f"k{i}", timedelta(seconds=10))
    assert len(store) == 100
    now[0] = 10.0
    assert await store.remember("fresh", timedelta(seconds=10))
    assert len(store) == 1
    assert await store.remember("k1", timedelta(seconds=10))
