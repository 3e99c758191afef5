"""Auth middleware through a real aiohttp server: vectors, replay, V2, JWT, fuzzing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from ai.backend.common.auth import (
    HMACSigner,
    HMACVerifier,
    JWTVerifier,
    Keypair,
    MemoryKeypairStore,
    MemoryNonceStore,
    SignatureVersion,
    generate_keypair,
    issue_token,
)
from ai.backend.common.contexts import current_user
from ai.backend.common.data.user import UserRole
from ai.backend.common.middlewares import build_middleware_stack, require_role
from ai.backend.common.web import anonymous, auth_result, json_response

from ..auth.vectors import hmac_vectors

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
Client = TestClient[web.Request, web.Application]


def _keypair(role: UserRole = UserRole.USER) -> Keypair:
    ak, sk = generate_keypair()
    return Keypair(access_key=ak, secret_key=sk, user_id=uuid.uuid4(), role=role)


async def whoami(request: web.Request) -> web.Response:
    result = auth_result(request)
    user = current_user()
    assert result is not None
    assert user is not None
    return json_response(
        {
            "access_key": result.access_key,
            "method": result.method,
            "version": result.signature_version,
            "user_id": user.user_id,
            "body": (await request.read()).decode(),
        }
    )


@anonymous
async def public(request: web.Request) -> web.Response:
    return json_response({"user": auth_result(request)})


async def health(request: web.Request) -> web.Response:
    return web.Response(text="healthy")


@require_role(UserRole.ADMIN, UserRole.SUPERADMIN)
async def admin_only(request: web.Request) -> web.Response:
    return web.Response(text="admin")


def _app(
    *keypairs: Keypair,
    clock: Callable[[], datetime] = lambda: NOW,
    nonce_store: MemoryNonceStore | None = None,
    **hmac_options: Any,
) -> web.Application:
    store = MemoryKeypairStore(keypairs)
    app = web.Application(
        middlewares=build_middleware_stack(
            access_log=False,
            hmac=HMACVerifier(store, clock=clock, nonce_store=nonce_store, **hmac_options),
            jwt=JWTVerifier(store, clock=clock),
            anonymous_routes=["/health"],
        )
    )
    app.router.add_get("/public", public)
    app.router.add_get("/health", health)
    app.router.add_get("/admin", admin_only)
    app.router.add_route("*", "/{tail:.*}", whoami)
    return app


@pytest.mark.parametrize("vec", hmac_vectors(), ids=lambda v: f"{v['method']}-{v['rel_url']}")
async def test_vectors_accepted_through_server(vec: dict[str, Any]) -> None:
    keypair = Keypair(
        access_key=vec["access_key"], secret_key=vec["secret_key"], user_id=uuid.uuid4()
    )
    date = datetime.fromisoformat(vec["date"])
    headers = {
        "Authorization": vec["authorization"],
        "Date": vec["date"],
        "Content-Type": vec["content_type"],
        "X-BackendAI-Version": vec["version"],
        "Host": URL(vec["endpoint"]).raw_authority,  # what the official client sent
    }
    async with TestClient(TestServer(_app(keypair, clock=lambda: date))) as client:
        base = str(client.make_url("")).rstrip("/")
        url = URL(base + vec["rel_url"], encoded=True)  # sent exactly as signed
        resp = await client.session.request(vec["method"], url, headers=headers)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["access_key"] == vec["access_key"]
        assert body["user_id"] == str(keypair.user_id)
        # The same request to a server reached under another name fails.
        resp = await client.session.request(
            vec["method"], url, headers={**headers, "Host": "other:1"}
        )
        assert resp.status == 401
        assert (await resp.json())["error_code"] == "auth_authorize_mismatch"


async def test_signer_headers_accepted_end_to_end() -> None:
    keypair = _keypair()
    async with TestClient(TestServer(_app(keypair))) as client:
        signer = HMACSigner(keypair.access_key, keypair.secret_key, str(client.make_url("")))
        headers = signer.sign("POST", "/folders?x=1", date=NOW)
        resp = await client.post("/folders?x=1", headers=headers, data=b"{}")
        assert resp.status == 200
        assert (await resp.json())["method"] == "hmac"


async def test_replay_rejected_through_server() -> None:
    keypair = _keypair()
    app = _app(keypair, nonce_store=MemoryNonceStore())
    async with TestClient(TestServer(app)) as client:
        signer = HMACSigner(keypair.access_key, keypair.secret_key, str(client.make_url("")))
        headers = signer.sign("GET", "/folders", date=NOW)
        assert (await client.get("/folders", headers=headers)).status == 200
        resp = await client.get("/folders", headers=headers)
        assert resp.status == 401
        body = await resp.json()
        assert body["error_code"] == "auth_authorize_conflict"
        assert "already accepted" in body["msg"]
        fresh = signer.sign("GET", "/folders", date=NOW + timedelta(seconds=1))
        assert (await client.get("/folders", headers=fresh)).status == 200


async def test_v2_body_tamper_rejected_through_server() -> None:
    keypair = _keypair()
    app = _app(keypair, versions={SignatureVersion.V2})
    async with TestClient(TestServer(app)) as client:
        signer = HMACSigner(
            keypair.access_key,
            keypair.secret_key,
            str(client.make_url("")),
            version=SignatureVersion.V2,
        )
        body = b'{"name": "vf"}'
        headers = signer.sign("POST", "/folders", body=body, date=NOW)
        resp = await client.post("/folders", headers=headers, data=body)
        assert resp.status == 200
        assert (await resp.json())["body"] == body.decode()  # the handler still reads it
        resp = await client.post("/folders", headers=headers, data=b'{"name": "other"}')
        assert resp.status == 401
        assert (await resp.json())["error_code"] == "auth_authorize_mismatch"
        v1 = HMACSigner(keypair.access_key, keypair.secret_key, str(client.make_url("")))
        resp = await client.post("/folders", headers=v1.sign("POST", "/folders", date=NOW))
        assert resp.status == 401
        assert "version 1 is not accepted" in (await resp.json())["msg"]


async def test_jwt_first_then_hmac() -> None:
    keypair, other = _keypair(), _keypair()
    async with TestClient(TestServer(_app(keypair, other))) as client:
        token = issue_token(keypair, clock=lambda: NOW)
        resp = await client.get("/folders", headers={"X-BackendAI-Token": token})
        assert resp.status == 200
        assert (await resp.json())["method"] == "jwt"
        # With both, the token wins.
        signer = HMACSigner(other.access_key, other.secret_key, str(client.make_url("")))
        both = {**signer.sign("GET", "/folders", date=NOW), "X-BackendAI-Token": token}
        assert (await (await client.get("/folders", headers=both)).json())["access_key"] == (
            keypair.access_key
        )
        resp = await client.get("/folders", headers={"X-BackendAI-Token": token + "x"})
        assert resp.status == 401


async def test_anonymous_routes() -> None:
    async with TestClient(TestServer(_app(_keypair()))) as client:
        resp = await client.get("/public")
        assert resp.status == 200
        assert await resp.json() == {"user": None}
        assert (await client.get("/health")).status == 200
        resp = await client.get("/folders")
        assert resp.status == 401
        body = await resp.json()
        assert resp.content_type == "application/problem+json"
        assert body["error_code"] == "auth_authorize_unauthorized"
        assert "X-BackendAI-Token or Authorization" in body["msg"]


async def test_unmatched_route_is_404_not_401() -> None:
    keypair = _keypair()
    app = web.Application(
        middlewares=build_middleware_stack(
            access_log=False, hmac=HMACVerifier(MemoryKeypairStore([keypair]))
        )
    )
    app.router.add_get("/folders", whoami)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/nowhere")).status == 404
        assert (await client.get("/folders")).status == 401


async def test_require_role() -> None:
    user, admin = _keypair(UserRole.USER), _keypair(UserRole.ADMIN)
    async with TestClient(TestServer(_app(user, admin))) as client:
        resp = await client.get(
            "/admin", headers={"X-BackendAI-Token": issue_token(user, clock=lambda: NOW)}
        )
        assert resp.status == 403
        assert (await resp.json())["error_code"] == "auth_authorize_forbidden"
        resp = await client.get(
            "/admin", headers={"X-BackendAI-Token": issue_token(admin, clock=lambda: NOW)}
        )
        assert resp.status == 200


_KP = _keypair()
_printable = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"),
    max_size=120,
)
_signed = st.builds(
    lambda sig, method, extra: (
        f"BackendAI signMethod={method}, credential={_KP.access_key}:{sig}{extra}"
    ),
    _printable,
    st.sampled_from(["HMAC-SHA256", "HMAC-SHA512", "HMAC-MD5", "HMAC-SHAKE_256", "HMAC-"]),
    st.sampled_from(["", ", sigVersion=2", ", sigVersion=3", ", =", ", x"]),
)
_dates = st.one_of(
    _printable,
    st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat()),
    st.datetimes(min_value=datetime(2025, 2, 28), max_value=datetime(2025, 3, 2)).map(
        lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")
    ),
)
_tokens = st.one_of(
    st.none(),
    _printable,
    st.builds(lambda s: issue_token(_KP, clock=lambda: NOW) + s, _printable),
    st.builds(
        lambda s: ".".join(issue_token(_KP, clock=lambda: NOW).split(".")[:2]) + "." + s,
        _printable,
    ),
)


@pytest.fixture
async def fuzz_client() -> AsyncIterator[Client]:
    async with TestClient(TestServer(_app(_KP, nonce_store=MemoryNonceStore()))) as client:
        yield client


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    authorization=st.one_of(st.none(), _printable, _signed),
    date=st.one_of(st.none(), _dates),
    version=st.one_of(st.none(), st.sampled_from(["v9.20250722", "v3.20170615"]), _printable),
    token=_tokens,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
)
async def test_fuzz_headers_always_4xx(
    fuzz_client: Client,
    authorization: str | None,
    date: str | None,
    version: str | None,
    token: str | None,
    method: str,
) -> None:
    headers = {
        name: value
        for name, value in (
            ("Authorization", authorization),
            ("Date", date),
            ("X-BackendAI-Version", version),
            ("X-BackendAI-Token", token),
        )
        if value is not None
    }
    resp = await fuzz_client.request(method, "/folders", headers=headers, data=b"payload")
    if resp.status == 200:  # the generated credentials happen to be valid
        assert token is not None
        return
    assert 400 <= resp.status < 500, await resp.text()
    assert resp.content_type == "application/problem+json"
