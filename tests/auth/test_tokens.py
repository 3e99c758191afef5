"""JWT issue and verification: HS256 only, clock and leeway, role from the keypair store."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai.backend.common.auth import (
    AuthError,
    AuthMethod,
    InvalidToken,
    JWTVerifier,
    Keypair,
    MemoryKeypairStore,
    TokenExpired,
    UnknownAccessKey,
    generate_keypair,
    issue_token,
)
from ai.backend.common.data.user import UserRole
from ai.backend.common.exception import InvalidArgument
from ai.backend.common.json import dump_json

NOW = datetime(2025, 6, 1, 9, 30, tzinfo=UTC)


def _keypair(role: UserRole = UserRole.USER, **kw: Any) -> Keypair:
    ak, sk = generate_keypair()
    return Keypair(access_key=ak, secret_key=sk, user_id=uuid.uuid4(), role=role, **kw)


def _verifier(*keypairs: Keypair, now: datetime = NOW, **kw: Any) -> JWTVerifier:
    return JWTVerifier(MemoryKeypairStore(keypairs), clock=lambda: now, **kw)


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(keypair: Keypair, **over: Any) -> dict[str, Any]:
    now = int(NOW.timestamp())
    claims = {"exp": now + 900, "iat": now, "access_key": keypair.access_key, "role": "user"}
    claims.update(over)
    return claims


async def test_issue_then_verify() -> None:
    keypair = _keypair(UserRole.ADMIN)
    token = issue_token(keypair, lifetime=timedelta(minutes=5), clock=lambda: NOW)
    result = await _verifier(keypair).verify(token)
    assert result.method is AuthMethod.JWT
    assert result.keypair == keypair
    assert result.role is UserRole.ADMIN
    assert result.claims is not None
    assert result.claims.iat == int(NOW.timestamp())
    assert result.claims.exp == int(NOW.timestamp()) + 300
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) == {"exp", "iat", "access_key", "role"}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    with pytest.raises(InvalidArgument):
        issue_token(keypair, lifetime=timedelta(0))


async def test_alg_none_rejected() -> None:
    keypair = _keypair()
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(keypair))}."
    with pytest.raises(InvalidToken, match="algorithm 'none' is not accepted"):
        await _verifier(keypair).verify(token)


@pytest.mark.filterwarnings("ignore:The HMAC key is")
@pytest.mark.parametrize("alg", ["HS384", "HS512", "RS256", "ES256", "PS256", "hs256", "EdDSA"])
async def test_other_algorithms_rejected(alg: str) -> None:
    keypair = _keypair()
    if alg.startswith("HS"):
        token = jwt.encode(_claims(keypair), keypair.secret_key, algorithm=alg)
    else:
        # Algorithm confusion: an asymmetric header with an HMAC made from the secret.
        token = f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(_claims(keypair))}.c2lnbmF0dXJl"
    with pytest.raises(InvalidToken, match="algorithm"):
        await _verifier(keypair).verify(token)


async def test_expiry_and_leeway() -> None:
    keypair = _keypair()
    token = issue_token(keypair, lifetime=timedelta(minutes=15), clock=lambda: NOW)
    await _verifier(keypair, now=NOW + timedelta(minutes=14, seconds=59)).verify(token)
    with pytest.raises(TokenExpired, match="expired"):
        await _verifier(keypair, now=NOW + timedelta(minutes=15)).verify(token)
    leeway = timedelta(seconds=30)
    await _verifier(keypair, now=NOW + timedelta(minutes=15, seconds=29), leeway=leeway).verify(
        token
    )
    with pytest.raises(TokenExpired):
        await _verifier(keypair, now=NOW + timedelta(minutes=15, seconds=30), leeway=leeway).verify(
            token
        )
    # Issued in the future (beyond the leeway).
    with pytest.raises(TokenExpired, match="issued at"):
        await _verifier(keypair, now=NOW - timedelta(seconds=31), leeway=leeway).verify(token)
    await _verifier(keypair, now=NOW - timedelta(seconds=30), leeway=leeway).verify(token)
    with pytest.raises(InvalidArgument):
        JWTVerifier(MemoryKeypairStore(), leeway=timedelta(seconds=-1))


async def test_role_claim_must_match_keypair() -> None:
    keypair = _keypair(UserRole.USER)
    forged = jwt.encode(_claims(keypair, role="superadmin"), keypair.secret_key, algorithm="HS256")
    with pytest.raises(InvalidToken, match="does not match the role"):
        await _verifier(keypair).verify(forged)
    bogus = jwt.encode(_claims(keypair, role="root"), keypair.secret_key, algorithm="HS256")
    with pytest.raises(InvalidToken, match="not one of"):
        await _verifier(keypair).verify(bogus)


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"exp": None}, "exp"),
        ({"iat": "now"}, "iat"),
        ({"iat": True}, "iat"),
        ({"exp": 1.5e9}, "exp"),
        ({"access_key": 42}, "access_key"),
        ({"iat": int(NOW.timestamp()) - 10, "exp": int(NOW.timestamp()) - 20}, "expired"),
        ({"nbf": int(NOW.timestamp()) + 3600}, "not valid before"),
    ],
)
async def test_bad_claims_rejected(over: dict[str, Any], match: str) -> None:
    keypair = _keypair()
    claims = {k: v for k, v in _claims(keypair, **over).items() if v is not None}
    token = jwt.encode(claims, keypair.secret_key, algorithm="HS256")
    with pytest.raises(InvalidToken, match=match):
        await _verifier(keypair).verify(token)


async def test_wrong_secret_and_unknown_key() -> None:
    keypair, other = _keypair(), _keypair()
    forged = jwt.encode(_claims(keypair), other.secret_key, algorithm="HS256")
    with pytest.raises(InvalidToken, match="signature does not verify") as info:
        await _verifier(keypair).verify(forged)
    assert keypair.secret_key not in str(info.value)
    with pytest.raises(UnknownAccessKey):
        await _verifier(other).verify(issue_token(keypair, clock=lambda: NOW))
    inactive = Keypair(
        access_key=keypair.access_key,
        secret_key=keypair.secret_key,
        user_id=keypair.user_id,
        is_active=False,
    )
    with pytest.raises(UnknownAccessKey):
        await _verifier(inactive).verify(issue_token(keypair, clock=lambda: NOW))


async def test_undecodable_claims_rejected_before_lookup() -> None:
    # JSON may spell lone surrogates ("\\ud800"); PyJWT decodes them into the claim.
    header = _b64({"alg": "HS256", "typ": "JWT"})
    for access_key in ("\ud800", "AK\udcff", "", "A" * 129, "AK IA"):
        token = f"{header}.{_b64(_claims(_keypair(), access_key=access_key))}.AAAA"
        with pytest.raises(InvalidToken, match="access_key") as info:
            await _verifier(_keypair()).verify(token)
        dump_json(info.value.problem())
    odd_header = _b64({"alg": "HS\ud800"})
    odd_alg = f"{odd_header}.{_b64(_claims(_keypair()))}.AAAA"
    with pytest.raises(InvalidToken, match="algorithm") as info:
        await _verifier(_keypair()).verify(odd_alg)
    assert info.value.data["alg"] == "HS\\ud800"
    dump_json(info.value.problem())


_KP = _keypair()
_odd_text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=8)
_tokens = st.one_of(
    st.text(st.characters() | st.characters(categories=["Cs"]), max_size=300),
    st.builds(
        lambda h, p, s: f"{h}.{p}.{s}",
        st.dictionaries(st.text(max_size=5), _odd_text | st.integers()).map(_b64)
        | st.sampled_from([_b64({"alg": "HS256"}), _b64({"alg": "none"})]),
        st.dictionaries(
            st.sampled_from(["exp", "iat", "access_key", "role", "nbf"]),
            st.integers(-(2**70), 2**70) | _odd_text | st.none() | st.booleans(),
        ).map(_b64),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEF0123456789-_", max_size=60),
    ),
    st.builds(
        lambda c: jwt.encode(c, _KP.secret_key, algorithm="HS256"),
        st.fixed_dictionaries(
            {"access_key": st.just(_KP.access_key)},
            optional={
                "exp": st.integers(-(2**62), 2**62) | st.floats(allow_nan=False) | st.text(),
                "iat": st.integers(-(2**62), 2**62) | st.booleans(),
                "role": st.sampled_from(["user", "admin", "x"]),
                "nbf": st.integers(-(2**62), 2**62),
            },
        ),
    ),
)


@settings(max_examples=300, deadline=None)
@given(token=_tokens)
async def test_fuzz_tokens_raise_only_auth_errors(token: str) -> None:
    status = 200
    try:
        await _verifier(_KP).verify(token)
    except AuthError as exc:
        status = exc.status_code
        dump_json(exc.problem())  # renders as problem+json, surrogates included
    assert status in (200, 401)
