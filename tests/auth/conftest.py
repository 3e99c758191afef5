"""Fixtures of the auth tests: each store interface, once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ai.backend.common.auth import (
    AbstractKeypairStore,
    AbstractNonceStore,
    MemoryKeypairStore,
    MemoryNonceStore,
    RedisKeypairStore,
    RedisNonceStore,
)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def keypair_store(request: pytest.FixtureRequest) -> AsyncIterator[AbstractKeypairStore]:
    """An empty keypair store of each backend."""
    store: AbstractKeypairStore
    if request.param == "memory":
        store = MemoryKeypairStore()
    else:
        store = RedisKeypairStore.from_url(request.getfixturevalue("redis_url"))
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def nonce_store(request: pytest.FixtureRequest) -> AsyncIterator[AbstractNonceStore]:
    """An empty nonce store of each backend."""
    store: AbstractNonceStore
    if request.param == "memory":
        store = MemoryNonceStore()
    else:
        store = RedisNonceStore.from_url(request.getfixturevalue("redis_url"))
    try:
        yield store
    finally:
        await store.aclose()
