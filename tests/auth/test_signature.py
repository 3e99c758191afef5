"""HMAC signer and verifier: upstream vectors, skew window, replay, V2 body signing, fuzzing."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from ai.backend.common.auth import (
    AuthError,
    AuthMethod,
    ClockSkewExceeded,
    HMACSigner,
    HMACVerifier,
    InvalidDateHeader,
    Keypair,
    MalformedCredentials,
    MemoryKeypairStore,
    MemoryNonceStore,
    MissingCredentials,
    ReplayedRequest,
    SignatureMismatch,
    SignatureVersion,
    UnknownAccessKey,
    UnsupportedSignMethod,
    compute_signature,
    format_authorization,
    generate_keypair,
    parse_authorization,
    parse_date_header,
    string_to_sign,
)
from ai.backend.common.data.user import UserRole
from ai.backend.common.exception import InvalidArgument
from ai.backend.common.json import dump_json

from .vectors import hmac_vectors

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
ENDPOINT = "http://127.0.0.1:8081"
HOST = "127.0.0.1:8081"


def _ids(v: dict[str, Any]) -> str:
    return f"{v['method']}-{v['hash_type']}-{v['endpoint']}-{v['rel_url']}"


def _keypair(ak: str | None = None, sk: str | None = None, **kw: Any) -> Keypair:
    gen_ak, gen_sk = generate_keypair()
    return Keypair(access_key=ak or gen_ak, secret_key=sk or gen_sk, user_id=uuid.uuid4(), **kw)


class FixedClock:
    """A settable clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _verifier(*keypairs: Keypair, clock: FixedClock | None = None, **kw: Any) -> HMACVerifier:
    return HMACVerifier(MemoryKeypairStore(keypairs), clock=clock or FixedClock(NOW), **kw)


async def _verify(verifier: HMACVerifier, headers: dict[str, str], **kw: Any) -> Any:
    params: dict[str, Any] = {"method": "GET", "path": "/folders", "host": HOST, "body": b""}
    params.update(kw)
    return await verifier.verify(headers=headers, **params)


@pytest.mark.parametrize("vec", hmac_vectors(), ids=_ids)
def test_signer_matches_vectors(vec: dict[str, Any]) -> None:
    date = datetime.fromisoformat(vec["date"])
    signer = HMACSigner(
        vec["access_key"],
        vec["secret_key"],
        vec["endpoint"],
        api_version=vec["version"],
        hash_type=vec["hash_type"],
    )
    headers = signer.sign(
        vec["method"], vec["rel_url"], content_type=vec["content_type"], date=date
    )
    assert headers["Authorization"] == vec["authorization"]
    assert headers["Date"] == vec["date"]
    assert headers["X-BackendAI-Date"] == vec["date"]
    assert headers["X-BackendAI-Version"] == vec["version"]
    assert headers["Content-Type"] == vec["content_type"]
    host = URL(vec["endpoint"]).raw_authority
    text = string_to_sign(
        method=vec["method"],
        path=vec["rel_url"],
        date_header=vec["date"],
        host=host,
        content_type=vec["content_type"],
        api_version=vec["version"],
        body_hash=hashlib.new(vec["hash_type"], b"").hexdigest(),
    )
    sig = compute_signature(
        secret_key=vec["secret_key"],
        sign_date=date,
        host=host,
        text=text,
        hash_type=vec["hash_type"],
    )
    assert sig == vec["signature"]


@pytest.mark.parametrize("vec", hmac_vectors(), ids=_ids)
async def test_verifier_accepts_vectors(vec: dict[str, Any]) -> None:
    keypair = _keypair(vec["access_key"], vec["secret_key"])
    verifier = _verifier(keypair, clock=FixedClock(datetime.fromisoformat(vec["date"])))
    headers = {
        "Authorization": vec["authorization"],
        "Date": vec["date"],
        "Content-Type": vec["content_type"],
        "X-BackendAI-Version": vec["version"],
    }
    result = await verifier.verify(
        method=vec["method"],
        path=vec["rel_url"],
        host=URL(vec["endpoint"]).raw_authority,
        headers=headers,
    )
    assert result.keypair == keypair
    assert result.method is AuthMethod.HMAC
    assert result.signature_version is SignatureVersion.V1
    # The same request through X-BackendAI-Date only also verifies.
    headers["X-BackendAI-Date"] = headers.pop("Date")
    await verifier.verify(
        method=vec["method"],
        path=vec["rel_url"],
        host=URL(vec["endpoint"]).raw_authority,
        headers=headers,
    )
    # A signature for another host does not.
    with pytest.raises(SignatureMismatch):
        await verifier.verify(
            method=vec["method"], path=vec["rel_url"], host="evil.example:80", headers=headers
        )


def test_parse_authorization_round_trip() -> None:
    header = format_authorization("AKIAX", "ab12", hash_type="sha512", version=SignatureVersion.V2)
    assert header == "BackendAI signMethod=HMAC-SHA512, credential=AKIAX:ab12, sigVersion=2"
    params = parse_authorization(header)
    assert (params.hash_type, params.access_key, params.signature) == ("sha512", "AKIAX", "ab12")
    assert params.version is SignatureVersion.V2
    assert parse_authorization("Sorna signMethod=HMAC-SHA256, credential=A:b").hash_type == "sha256"


_HDR = "BackendAI signMethod=HMAC-SHA256, credential=AK:sig"


@pytest.mark.parametrize(
    ("header", "exc"),
    [
        ("Bearer abc", MalformedCredentials),
        ("BackendAI", MalformedCredentials),
        ("BackendAI signMethod=HMAC-SHA256", MalformedCredentials),
        ("BackendAI credential=AK:sig", MalformedCredentials),
        ("BackendAI signMethod=HMAC-SHA256, credential=AKsig", MalformedCredentials),
        ("BackendAI signMethod=HMAC-SHA256, credential=:sig", MalformedCredentials),
        ("BackendAI signMethod=HMAC-SHA256 credential", MalformedCredentials),
        ("BackendAI signMethod=RSA-SHA256, credential=AK:sig", UnsupportedSignMethod),
        ("BackendAI signMethod=HMAC, credential=AK:sig", UnsupportedSignMethod),
        (_HDR + ", sigVersion=9", UnsupportedSignMethod),
        (_HDR + ", sigVersion=²", UnsupportedSignMethod),
        ("BackendAI " + "x=y," * 400, MalformedCredentials),
    ],
)
def test_parse_authorization_rejects(header: str, exc: type[AuthError]) -> None:
    with pytest.raises(exc) as info:
        parse_authorization(header)
    assert info.value.status_code == 401


def test_date_formats() -> None:
    expected = datetime(1994, 11, 15, 8, 12, 31, tzinfo=UTC)
    assert parse_date_header("Tue, 15 Nov 1994 08:12:31 GMT") == expected
    assert parse_date_header("1994-11-15T08:12:31Z") == expected
    assert parse_date_header("1994-11-15T08:12:31.000Z") == expected
    assert parse_date_header("1994-11-15T17:12:31+09:00") == expected
    assert parse_date_header("1994-11-15T08:12:31") == expected  # naive means UTC
    rfc = "Tue, 15 Nov 1994 08:12:31"
    for zone in ("", " GMT", " gmt", " UT", " UTC", " Z", " +0000", " -0000", " GMT (London)"):
        assert parse_date_header(rfc + zone) == expected, zone
    assert parse_date_header("Tue, 15 Nov 1994 17:12:31 +0900 (KST)") == expected
    assert parse_date_header("Tue Nov 15 08:12:31 1994") == expected  # asctime
    for bad in ("", "yesterday", "Tuesday 15 November 1994 8am KST", "x" * 100, "1994-13-01"):
        with pytest.raises(InvalidDateHeader):
            parse_date_header(bad)
    # Zone names email.utils would read as UTC (or US zones): refused, never misread.
    for zone in (" KST", " XYZ", " EST", " A", " +09:00", " GMT junk", " \udcff"):
        with pytest.raises(InvalidDateHeader, match="zone") as info:
            parse_date_header(rfc + zone)
        dump_json(info.value.problem())
    with pytest.raises(InvalidDateHeader, match="zone"):
        parse_date_header("Tue Nov 15 08:12:31 KST 1994")


async def test_clock_skew_names_both_times() -> None:
    keypair = _keypair()
    signer = HMACSigner(keypair.access_key, keypair.secret_key, ENDPOINT)
    clock = FixedClock(NOW)
    verifier = _verifier(keypair, clock=clock)
    late = signer.sign("GET", "/folders", date=NOW - timedelta(minutes=16))
    with pytest.raises(ClockSkewExceeded) as info:
        await _verify(verifier, late)
    msg = str(info.value)
    assert (NOW - timedelta(minutes=16)).isoformat() in msg
    assert NOW.isoformat() in msg
    assert info.value.data["max_skew_sec"] == 900
    assert info.value.data["skew_sec"] == -960
    # Inside the default 15-minute window both ways.
    await _verify(verifier, signer.sign("GET", "/folders", date=NOW - timedelta(minutes=14)))
    await _verify(verifier, signer.sign("GET", "/folders", date=NOW + timedelta(minutes=14)))
    with pytest.raises(ClockSkewExceeded):
        await _verify(verifier, signer.sign("GET", "/folders", date=NOW + timedelta(minutes=16)))
    # A configurable window.
    narrow = _verifier(keypair, clock=clock, max_skew=timedelta(seconds=30))
    await _verify(narrow, signer.sign("GET", "/folders", date=NOW - timedelta(seconds=29)))
    with pytest.raises(ClockSkewExceeded):
        await _verify(narrow, signer.sign("GET", "/folders", date=NOW - timedelta(seconds=31)))


async def test_replay_rejected_within_window() -> None:
    keypair = _keypair()
    signer = HMACSigner(keypair.access_key, keypair.secret_key, ENDPOINT)
    ticks = [0.0]
    store = MemoryNonceStore(clock=lambda: ticks[0])
    clock = FixedClock(NOW)
    verifier = _verifier(keypair, clock=clock, nonce_store=store, replay_margin=timedelta(0))
    headers = signer.sign("POST", "/folders", date=NOW)
    await _verify(verifier, headers, method="POST")
    with pytest.raises(ReplayedRequest) as info:
        await _verify(verifier, headers, method="POST")
    assert info.value.status_code == 401
    # Ten minutes later (server and store clocks), still inside the window: still a replay.
    clock.now, ticks[0] = NOW + timedelta(minutes=10), 600.0
    with pytest.raises(ReplayedRequest):
        await _verify(verifier, headers, method="POST")
    # A freshly signed request (new date) is not a replay.
    await _verify(verifier, signer.sign("POST", "/folders", date=clock.now), method="POST")
    # Once the date leaves the window the entry expires and the skew check takes over.
    clock.now, ticks[0] = NOW + timedelta(minutes=15, seconds=1), 901.0
    with pytest.raises(ClockSkewExceeded):
        await _verify(verifier, headers, method="POST")
    # The first entry expired with its window: a later call purges it, the second stays.
    assert await store.remember("probe", timedelta(seconds=1))
    assert len(store) == 2


async def test_replay_protection_off_by_default() -> None:
    keypair = _keypair()
    signer = HMACSigner(keypair.access_key, keypair.secret_key, ENDPOINT)
    verifier = _verifier(keypair)
    headers = signer.sign("GET", "/folders", date=NOW)
    await _verify(verifier, headers)
    await _verify(verifier, headers)


async def test_v2_body_tamper_rejected() -> None:
    keypair = _keypair()
    signer = HMACSigner(
        keypair.access_key, keypair.secret_key, ENDPOINT, version=SignatureVersion.V2
    )
    verifier = _verifier(keypair)
    body = b'{"amount": 10}'
    headers = signer.sign("POST", "/folders", body=body, date=NOW)
    assert headers["Authorization"].endswith(", sigVersion=2")
    result = await _verify(verifier, headers, method="POST", body=body)
    assert result.signature_version is SignatureVersion.V2

    async def read() -> bytes:
        return b'{"amount": 10000}'

    with pytest.raises(SignatureMismatch):
        await _verify(verifier, headers, method="POST", body=read)
    # Under V1 the same tampering goes unnoticed: that is why V2 exists.
    v1 = HMACSigner(keypair.access_key, keypair.secret_key, ENDPOINT).sign(
        "POST", "/folders", body=body, date=NOW
    )
    await _verify(verifier, v1, method="POST", body=b'{"amount": 10000}')


async def test_v2_marker_strip_rejected() -> None:
    keypair = _keypair()
    signer = HMACSigner(
        keypair.access_key, keypair.secret_key, ENDPOINT, version=SignatureVersion.V2
    )
    verifier = _verifier(keypair)
    headers = signer.sign("GET", "/folders", date=NOW)  # empty body: V1 and V2 hash the same
    headers["Authorization"] = headers["Authorization"].replace(", sigVersion=2", "")
    with pytest.raises(SignatureMismatch):
        await _verify(verifier, headers)


async def test_v2_required_rejects_v1() -> None:
    keypair = _keypair()
    verifier = _verifier(keypair, versions={SignatureVersion.V2})
    v1 = HMACSigner(keypair.access_key, keypair.secret_key, ENDPOINT).sign("GET", "/", date=NOW)
    with pytest.raises(UnsupportedSignMethod, match="version 1 is not accepted"):
        await _verify(verifier, v1, path="/")


async def test_legacy_api_version_signs_body() -> None:
    keypair = _keypair()
    verifier = _verifier(keypair)
    body = b"legacy"
    date_header = NOW.isoformat()
    text = string_to_sign(
        method="POST",
        path="/kernel",
        date_header=date_header,
        host=HOST,
        content_type="application/json",
        api_version="v3.20170615",
        body_hash=hashlib.sha256(body).hexdigest(),
    )
    sig = compute_signature(
        secret_key=keypair.secret_key, sign_date=NOW, host=HOST, text=text, hash_type="sha256"
    )
    headers = {
        "Authorization": format_authorization(keypair.access_key, sig),
        "Date": date_header,
        "Content-Type": "application/json; charset=utf-8",
        "X-BackendAI-Version": "v3.20170615",
    }
    await _verify(verifier, headers, method="POST", path="/kernel", body=body)
    with pytest.raises(SignatureMismatch):
        await _verify(verifier, headers, method="POST", path="/kernel", body=b"other")


async def test_forwarded_url_only_when_trusted() -> None:
    keypair = _keypair()
    signer = HMACSigner(keypair.access_key, keypair.secret_key, "https://api.example.com")
    headers = signer.sign("GET", "/folders", date=NOW)
    headers["X-Forwarded-URL"] = "https://api.example.com/folders"
    trusting = _verifier(keypair, trust_forwarded_url=True)
    await _verify(trusting, headers, host="10.0.0.5:8080", path="/func/folders")
    with pytest.raises(SignatureMismatch):
        await _verify(_verifier(keypair), headers, host="10.0.0.5:8080", path="/func/folders")


@pytest.mark.parametrize(
    ("mutate", "exc"),
    [
        (lambda h: h.pop("Authorization"), MissingCredentials),
        (lambda h: (h.pop("Date"), h.pop("X-BackendAI-Date")), InvalidDateHeader),
        (lambda h: h.update({"Date": "not a date"}), InvalidDateHeader),
        (lambda h: h.update({"Date": "0001-01-01T00:00:00+23:00"}), ClockSkewExceeded),
        (lambda h: h.pop("X-BackendAI-Version"), MalformedCredentials),
        (lambda h: h.update({"X-BackendAI-Version": "latest"}), MalformedCredentials),
        (
            lambda h: h.update({"Authorization": h["Authorization"].replace("SHA256", "MD5")}),
            UnsupportedSignMethod,
        ),
        (
            lambda h: h.update({"Authorization": h["Authorization"].replace("AKIA", "AKIB")}),
            UnknownAccessKey,
        ),
        (
            lambda h: h.update({"Authorization": h["Authorization"][:-4] + "0000"}),
            SignatureMismatch,
        ),
        (lambda h: h.update({"Content-Type": "text/plain"}), SignatureMismatch),
    ],
)
async def test_rejections_say_what_is_wrong(mutate: Any, exc: type[AuthError]) -> None:
    keypair = _keypair()
    verifier = _verifier(keypair)
    headers = HMACSigner(keypair.access_key, keypair.secret_key, ENDPOINT).sign(
        "GET", "/folders", date=NOW
    )
    mutate(headers)
    with pytest.raises(exc) as info:
        await _verify(verifier, headers)
    assert info.value.status_code == 401
    assert str(info.value) != info.value.error_title  # a specific message, not the bare title


async def test_inactive_keypair_is_unknown() -> None:
    keypair = _keypair(is_active=False)
    headers = HMACSigner(keypair.access_key, keypair.secret_key, ENDPOINT).sign(
        "GET", "/folders", date=NOW
    )
    with pytest.raises(UnknownAccessKey, match="unknown or inactive"):
        await _verify(_verifier(keypair), headers)


async def test_errors_do_not_leak_secret() -> None:
    keypair = _keypair(role=UserRole.ADMIN)
    verifier = _verifier(keypair)
    signer = HMACSigner(keypair.access_key, keypair.secret_key, ENDPOINT)
    good = signer.sign("GET", "/folders", date=NOW)
    expected_sig = good["Authorization"].rsplit(":", 1)[1]
    bad = dict(good, Authorization=good["Authorization"][:-8] + "deadbeef")
    with pytest.raises(SignatureMismatch) as info:
        await _verify(verifier, bad, path="/other")
    rendered = json.dumps(info.value.problem()) + str(info.value) + repr(info.value)
    assert keypair.secret_key not in rendered
    assert expected_sig not in rendered
    assert "/other" in rendered  # but it does say what the server signed
    assert keypair.secret_key not in repr(keypair)
    assert keypair.secret_key not in repr(signer)


# Lone surrogates too: aiohttp decodes header bytes that are not UTF-8 into them.
async def test_undecodable_request_text_is_refused_or_escaped() -> None:
    keypair = _keypair()
    verifier = _verifier(keypair)
    signed = HMACSigner(keypair.access_key, keypair.secret_key, ENDPOINT).sign(
        "GET", "/folders", date=NOW
    )
    # An access key holding a byte that is not UTF-8 is malformed: no store lookup at all.
    bad_key = {**signed, "Authorization": signed["Authorization"].replace("AKIA", "AK\udcff")}
    with pytest.raises(MalformedCredentials, match="visible ASCII") as info:
        await _verify(verifier, bad_key)
    dump_json(info.value.problem())
    # The canonical header shape bounds the key's length too (the fast parsing path).
    too_long = signed["Authorization"].replace("AKIA", "AKIA" + "X" * 120)
    with pytest.raises(MalformedCredentials, match="visible ASCII"):
        await _verify(verifier, {**signed, "Authorization": too_long})
    # Everything else the mismatch reports back is escaped, so the 401 still renders.
    odd = {**signed, "Content-Type": "text/\udcff"}
    with pytest.raises(SignatureMismatch) as mismatch:
        await _verify(verifier, odd, path="/f\udcffolders", host="h\ud800")
    data = mismatch.value.data
    assert data["content_type"] == "text/\\udcff"
    assert data["path"] == "/f\\udcffolders"
    assert data["host"] == "h\\ud800"
    assert b"\\udcff" in dump_json(mismatch.value.problem())


_header_text = st.text(
    st.characters(codec="utf-8") | st.characters(categories=["Cs"]), max_size=200
)
_auth_values = st.one_of(
    _header_text,
    st.builds(
        lambda m, ak, sig, extra: f"BackendAI signMethod={m}, credential={ak}:{sig}{extra}",
        st.sampled_from(["HMAC-SHA256", "HMAC-SHA512", "HMAC-MD5", "HMAC-SHAKE_128", "x"]),
        st.sampled_from(["AKIATESTTESTTESTTEST", ""]) | _header_text,
        _header_text,
        st.sampled_from(["", ", sigVersion=2", ", sigVersion=x", ",", ", a"]),
    ),
)
_date_values = st.one_of(
    _header_text,
    st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    auth=_auth_values,
    date=_date_values,
    version=st.sampled_from(["v9.20250722", "v3.20170615", ""]) | _header_text,
    host=_header_text,
    path=_header_text,
)
async def test_fuzz_verify_raises_only_auth_errors(
    auth: str, date: str, version: str, host: str, path: str
) -> None:
    keypair = _keypair("AKIATESTTESTTESTTEST")
    verifier = _verifier(keypair, nonce_store=MemoryNonceStore())
    headers = {"Authorization": auth, "Date": date, "X-BackendAI-Version": version}
    with pytest.raises(AuthError) as info:
        await verifier.verify(method="POST", path=path, host=host, headers=headers, body=b"x")
    assert info.value.status_code == 401
    dump_json(info.value.problem())  # renders as problem+json, whatever the request held


_HASH_TYPES = ["sha256", "sha384", "sha512", "sha1", "md5", "blake2b", "sha3_256"]


@settings(max_examples=150, deadline=None)
@given(
    hash_type=st.sampled_from(_HASH_TYPES),
    secret=st.text(min_size=1, max_size=300),
    path=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x10FFFF), max_size=80),
    when=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
)
async def test_signing_cache_matches_hmac(
    hash_type: str, secret: str, path: str, when: datetime
) -> None:
    # The verifier signs from cached inner/outer hash states; the signer uses hmac.digest.
    keypair = _keypair(sk=secret)
    when = when.replace(tzinfo=UTC)
    clock = FixedClock(when)
    verifier = _verifier(keypair, clock=clock, hash_types=_HASH_TYPES)
    signer = HMACSigner(keypair.access_key, secret, ENDPOINT, hash_type=hash_type)
    for day in (0, 0, 1):  # a cached day twice, then the next day
        date = clock.now = when + timedelta(days=day)
        headers = signer.sign("GET", "/" + path, date=date)
        await _verify(verifier, headers, path="/" + path)
        forged = {**headers, "Authorization": headers["Authorization"][:-1] + "\u00e9"}
        with pytest.raises(SignatureMismatch):
            await _verify(verifier, forged, path="/" + path)


def test_max_body_must_not_be_negative() -> None:
    with pytest.raises(InvalidArgument, match="max_body") as info:
        HMACVerifier(MemoryKeypairStore(), max_body=-1)
    assert info.value.data == {"field": "max_body"}
    HMACVerifier(MemoryKeypairStore(), max_body=0)  # V2 then only takes empty bodies


class _RecordingNonceStore(MemoryNonceStore):
    """A memory nonce store that also keeps every TTL it was asked for."""

    def __init__(self, ticks: list[float]) -> None:
        super().__init__(clock=lambda: ticks[0])
        self.ttls: list[timedelta] = []

    async def remember(self, key: str, ttl: timedelta) -> bool:
        self.ttls.append(ttl)
        return await super().remember(key, ttl)


async def test_future_dated_replay_rejected_until_window_ends() -> None:
    keypair = _keypair()
    signer = HMACSigner(keypair.access_key, keypair.secret_key, ENDPOINT)
    ticks = [0.0]
    store = _RecordingNonceStore(ticks)
    clock = FixedClock(NOW)
    margin = timedelta(seconds=60)
    verifier = _verifier(keypair, clock=clock, nonce_store=store, replay_margin=margin)
    # Dated 14 minutes ahead: valid from now until its date is 15 minutes past.
    headers = signer.sign("GET", "/folders", date=NOW + timedelta(minutes=14))
    await _verify(verifier, headers)
    assert store.ttls == [timedelta(minutes=14 + 15) + margin]
    for minutes in (20, 28, 29):  # the whole window, as the clocks move on
        clock.now, ticks[0] = NOW + timedelta(minutes=minutes), minutes * 60.0
        with pytest.raises(ReplayedRequest):
            await _verify(verifier, headers)
    clock.now, ticks[0] = NOW + timedelta(minutes=29, seconds=1), 29 * 60.0 + 1
    with pytest.raises(ClockSkewExceeded):  # past the window: the skew check takes over
        await _verify(verifier, headers)


def test_replay_margin_must_not_be_negative() -> None:
    with pytest.raises(InvalidArgument, match="replay_margin") as info:
        HMACVerifier(MemoryKeypairStore(), replay_margin=timedelta(minutes=-10))
    assert info.value.data == {"field": "replay_margin"}
    HMACVerifier(MemoryKeypairStore(), replay_margin=timedelta(0))
