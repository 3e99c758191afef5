"""The AbstractKeypairStore contract, run against every backend."""

from __future__ import annotations

import uuid

from ai.backend.common.auth import AbstractKeypairStore, Keypair, generate_keypair
from ai.backend.common.data.user import UserRole


def _keypair(**kw: object) -> Keypair:
    ak, sk = generate_keypair()
    return Keypair(access_key=ak, secret_key=sk, user_id=uuid.uuid4(), **kw)  # type: ignore[arg-type]


async def test_get_returns_what_put_stored(keypair_store: AbstractKeypairStore) -> None:
    kp = _keypair(role=UserRole.SUPERADMIN, domain_name="research")
    assert await keypair_store.get(kp.access_key) is None
    await keypair_store.put(kp)
    assert await keypair_store.get(kp.access_key) == kp


async def test_put_replaces(keypair_store: AbstractKeypairStore) -> None:
    kp = _keypair()
    await keypair_store.put(kp)
    replaced = Keypair(
        access_key=kp.access_key,
        secret_key="x" * 40,
        user_id=uuid.uuid4(),
        role=UserRole.MONITOR,
        is_active=False,
    )
    await keypair_store.put(replaced)
    assert await keypair_store.get(kp.access_key) == replaced


async def test_delete(keypair_store: AbstractKeypairStore) -> None:
    kp, other = _keypair(), _keypair()
    await keypair_store.put(kp)
    await keypair_store.put(other)
    assert await keypair_store.delete(kp.access_key)
    assert not await keypair_store.delete(kp.access_key)
    assert await keypair_store.get(kp.access_key) is None
    assert await keypair_store.get(other.access_key) == other


async def test_aclose_is_idempotent(keypair_store: AbstractKeypairStore) -> None:
    await keypair_store.aclose()
    await keypair_store.aclose()
