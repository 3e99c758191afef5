"""The AbstractKeypairStore contract, run against every backend."""

from __future__ import annotations

import uuid

import pytest

from ai.backend.common.auth import (
    MAX_ACCESS_KEY_LENGTH,
    AbstractKeypairStore,
    Keypair,
    MalformedCredentials,
    generate_keypair,
)
from ai.backend.common.data.user import UserRole
from ai.backend.common.exception import InvalidArgument
from ai.backend.common.json import dump_json


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


_MALFORMED = {
    "undecodable-byte": "AK\udcff",
    "json-surrogate": "AK" + chr(0xD800),
    "empty": "",
    "too-long": "A" * (MAX_ACCESS_KEY_LENGTH + 1),
    "space": "AK IA",
    "nul": "AK\x00",
    "non-ascii": "AK\u00c4",
    "newline": "AK\n",
}


@pytest.mark.parametrize("bad", list(_MALFORMED.values()), ids=list(_MALFORMED))
async def test_malformed_access_keys_refused(keypair_store: AbstractKeypairStore, bad: str) -> None:
    # Undecodable request bytes reach a verifier as lone surrogates: no backend may see them.
    with pytest.raises(MalformedCredentials) as info:
        await keypair_store.get(bad)
    assert info.value.status_code == 401
    dump_json(info.value.problem())  # the 401 renders
    with pytest.raises(MalformedCredentials):
        await keypair_store.delete(bad)
    with pytest.raises(InvalidArgument, match="access key"):
        await keypair_store.put(Keypair(access_key=bad, secret_key="s", user_id=uuid.uuid4()))
    longest = "A" * MAX_ACCESS_KEY_LENGTH  # the bound itself is fine
    assert await keypair_store.get(longest) is None
