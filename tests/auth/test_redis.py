"""Behaviour only the Redis stores have: key layout, expiry, failure mapping."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from ai.backend.common.auth import (
    AuthBackendUnavailable,
    Keypair,
    RedisKeypairStore,
    RedisNonceStore,
    generate_keypair,
)

pytestmark = pytest.mark.redis


async def test_nonce_key_has_expiry(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        store = RedisNonceStore(client, prefix="t:seen:")
        assert await store.remember("AK:sig", timedelta(seconds=90))
        ttl = await client.pttl("t:seen:AK:sig")
        assert 0 < ttl <= 90_000
        await store.aclose()  # a client handed in stays open
        assert await client.ping()
    finally:
        await client.aclose()


async def test_keypair_layout_is_a_hash(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=2, decode_responses=True)
    try:
        ak, sk = generate_keypair()
        kp = Keypair(access_key=ak, secret_key=sk, user_id=uuid.uuid4())
        store = RedisKeypairStore(client)
        await store.put(kp)
        raw = await client.hgetall(f"backendai:auth:keypair:{ak}")
        assert raw == {
            "secret_key": sk,
            "user_id": str(kp.user_id),
            "role": "user",
            "is_active": "1",
            "domain_name": "default",
        }
        assert await store.get(ak) == kp  # a decode_responses client works too
        await client.hset(f"backendai:auth:keypair:{ak}", "user_id", "not-a-uuid")
        with pytest.raises(AuthBackendUnavailable, match="malformed"):
            await store.get(ak)
    finally:
        await client.aclose()


async def test_redis_down_maps_to_unavailable(redis_server_factory: Any) -> None:
    server = redis_server_factory()
    url = f"redis://{server.host}:{server.port}"
    keypairs = RedisKeypairStore.from_url(url)
    nonces = RedisNonceStore.from_url(url)
    try:
        assert await nonces.remember("AK:x", timedelta(seconds=5))
        server.kill()
        with pytest.raises(AuthBackendUnavailable) as info:
            await nonces.remember("AK:y", timedelta(seconds=5))
        assert info.value.status_code == 503
        assert info.value.__cause__ is not None
        with pytest.raises(AuthBackendUnavailable):
            await keypairs.get("AKIAXXXXXXXXXXXXXXXX")
        with pytest.raises(AuthBackendUnavailable):
            await keypairs.delete("AKIAXXXXXXXXXXXXXXXX")
    finally:
        await keypairs.aclose()
        await nonces.aclose()
