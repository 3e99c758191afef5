"""Auth middleware through a real aiohttp server: vectors, replay, V2, JWT, fuzzing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from ai.backend.common.auth import (
    AbstractKeypairStore,
    HMACSigner,
    HMACVerifier,
    JWTVerifier,
    Keypair,
    MemoryKeypairStore,
    MemoryNonceStore,
    RedisKeypairStore,
    SignatureVersion,
    compute_signature,
    format_authorization,
    generate_keypair,
    issue_token,
    string_to_sign,
)
from ai.backend.common.contexts import current_user
from ai.backend.common.data.user import UserRole
from ai.backend.common.middlewares import (
    build_middleware_stack,
    install_middleware_stack,
    require_role,
)
from ai.backend.common.web import WebServer, anonymous, auth_result, json_response

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


# Raw header bytes, as any client may send them: every byte an HTTP field value may hold
# (RFC 9110: VCHAR, obs-text, SP, HTAB), so non-UTF-8 bytes reach aiohttp's decoder.
_field = st.binary(max_size=60).map(lambda b: bytes(c for c in b if c == 9 or 0x20 <= c != 0x7F))


def _jwt_part(claims: bytes) -> bytes:
    return base64.urlsafe_b64encode(claims).rstrip(b"=")


_lone_surrogates = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)
_raw_auth = st.one_of(
    _field,
    st.builds(
        lambda key, sig, extra: (
            b"BackendAI signMethod=HMAC-SHA256, credential=%s:%s%s" % (key, sig, extra)
        ),
        st.just(_KP.access_key.encode()) | _field,
        _field,
        st.sampled_from([b"", b", sigVersion=2"]),
    ),
)
_raw_token = st.one_of(
    _field,
    st.builds(  # JSON escapes of lone surrogates in the claims
        lambda key: (
            b"%s.%s.AAAA"
            % (
                _jwt_part(b'{"alg":"HS256","typ":"JWT"}'),
                _jwt_part(
                    json.dumps(
                        {"access_key": key, "role": "user", "exp": 2**40, "iat": 1},
                        ensure_ascii=True,
                    ).encode()
                ),
            )
        ),
        _lone_surrogates | st.builds(lambda s: _KP.access_key + s, _lone_surrogates),
    ),
)
_raw_date = st.one_of(_field, st.just(NOW.strftime("%a, %d %b %Y %H:%M:%S GMT").encode()))


@pytest.fixture(
    params=[
        "memory-fused",
        "memory-separate",
        pytest.param("redis-fused", marks=pytest.mark.redis),
        pytest.param("redis-separate", marks=pytest.mark.redis),
    ]
)
async def raw_server(request: pytest.FixtureRequest) -> AsyncIterator[WebServer]:
    """A real server with the full stack (fused or not), keypairs in memory or in Redis."""
    backend, _, layout = request.param.partition("-")
    store: AbstractKeypairStore
    if backend == "memory":
        store = MemoryKeypairStore([_KP])
    else:
        store = RedisKeypairStore.from_url(request.getfixturevalue("redis_url"))
        await store.put(_KP)
    app = web.Application()
    install_middleware_stack(
        app,
        access_log=False,
        hmac=HMACVerifier(store, clock=lambda: NOW),
        jwt=JWTVerifier(store, clock=lambda: NOW),
        fused=layout == "fused",
    )
    app.router.add_route("*", "/{tail:.*}", whoami)
    try:
        async with WebServer(app) as server:
            yield server
    finally:
        await store.aclose()


async def _raw_exchange(port: int, head: bytes) -> tuple[int, bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        async with asyncio.timeout(10):
            data = await reader.read()  # the server closes: Connection: close
    finally:
        writer.close()
        await writer.wait_closed()
    head_part, _, body = data.partition(b"\r\n\r\n")
    status_line, _, headers = head_part.partition(b"\r\n")
    return int(status_line.split()[1]), headers.lower(), body


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    authorization=st.none() | _raw_auth,
    token=st.none() | _raw_token,
    content_type=st.none() | _field,
    date=st.none() | _raw_date,
)
async def test_fuzz_raw_header_bytes_always_4xx_problem(
    raw_server: WebServer,
    authorization: bytes | None,
    token: bytes | None,
    content_type: bytes | None,
    date: bytes | None,
) -> None:
    lines = [
        b"POST /folders HTTP/1.1",
        b"Host: 127.0.0.1:%d" % raw_server.port,
        b"X-BackendAI-Version: v9.20250722",
        b"Content-Length: 0",
        b"Connection: close",
    ]
    for name, value in (
        (b"Authorization", authorization),
        (b"X-BackendAI-Token", token),
        (b"Content-Type", content_type),
        (b"Date", date),
    ):
        if value is not None:
            lines.append(name + b": " + value)
    status, headers, body = await _raw_exchange(raw_server.port, b"\r\n".join(lines) + b"\r\n\r\n")
    assert 400 <= status < 500, body
    assert b"content-type: application/problem+json" in headers, headers
    assert json.loads(body)["error_code"].startswith("auth_")


def _legacy_headers(keypair: Keypair, host: str, path: str, body: bytes) -> dict[str, str]:
    """Headers of an API version before v4.20181215, whose V1 signature hashes the body."""
    date_header = NOW.isoformat()
    text = string_to_sign(
        method="POST",
        path=path,
        date_header=date_header,
        host=host,
        content_type="application/octet-stream",
        api_version="v3.20170615",
        body_hash=hashlib.sha256(body).hexdigest(),
    )
    sig = compute_signature(
        secret_key=keypair.secret_key, sign_date=NOW, host=host, text=text, hash_type="sha256"
    )
    return {
        "Authorization": format_authorization(keypair.access_key, sig),
        "Date": date_header,
        "Content-Type": "application/octet-stream",
        "X-BackendAI-Version": "v3.20170615",
    }


async def _streamed(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    async for chunk in request.content.iter_chunked(1000):
        digest.update(chunk)
    return json_response({"sha256": digest.hexdigest(), "exists": request.body_exists})


async def _read(request: web.Request) -> web.Response:
    return json_response({"sha256": hashlib.sha256(await request.read()).hexdigest()})


async def _parts(request: web.Request) -> web.Response:
    reader = await request.multipart()
    parts: dict[str, str] = {}
    async for part in reader:
        assert isinstance(part, aiohttp.BodyPartReader)
        parts[str(part.name)] = hashlib.sha256(await part.read()).hexdigest()
    return json_response(parts)


async def _form(request: web.Request) -> web.Response:
    form = await request.post()
    upload = form["file"]
    assert isinstance(upload, web.FileField)
    return json_response(
        {"name": form["name"], "file": hashlib.sha256(upload.file.read()).hexdigest()}
    )


def _upload_app(keypair: Keypair, fused: bool, **hmac_options: Any) -> web.Application:
    app = web.Application(client_max_size=4 << 20)
    install_middleware_stack(
        app,
        access_log=False,
        hmac=HMACVerifier(MemoryKeypairStore([keypair]), clock=lambda: NOW, **hmac_options),
        fused=fused,
    )
    app.router.add_post("/stream", _streamed)
    app.router.add_post("/read", _read)
    app.router.add_post("/parts", _parts)
    app.router.add_post("/form", _form)
    return app


def _multipart(file_bytes: bytes) -> tuple[bytes, str]:
    writer = aiohttp.MultipartWriter("form-data", boundary="b0undary")
    part = writer.append(file_bytes, {"Content-Type": "application/octet-stream"})
    part.set_content_disposition("form-data", name="file", filename="a.bin")
    writer.append("vf").set_content_disposition("form-data", name="name")
    return b"".join(_serialize(writer)), writer.content_type


def _serialize(writer: aiohttp.MultipartWriter) -> list[bytes]:
    chunks: list[bytes] = []

    class _Sink:
        async def write(self, data: bytes) -> None:
            chunks.append(bytes(data))

    asyncio.run(writer.write(_Sink()))  # type: ignore[arg-type]
    return chunks


_FILE = bytes(range(256)) * 1200  # 300 KiB, every byte value
_MULTIPART, _MULTIPART_TYPE = _multipart(_FILE)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "separate"])
async def test_v2_signed_uploads_reach_the_handler_whole(fused: bool) -> None:
    keypair = _keypair()
    async with TestClient(TestServer(_upload_app(keypair, fused))) as client:
        base = str(client.make_url("")).rstrip("/")
        signer = HMACSigner(
            keypair.access_key, keypair.secret_key, base, version=SignatureVersion.V2
        )
        want = hashlib.sha256(_FILE).hexdigest()

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length
            for start in range(0, len(_FILE), 50_000):
                yield _FILE[start : start + 50_000]

        for data in (_FILE, chunked()):
            headers = signer.sign(
                "POST", "/stream", content_type="application/octet-stream", body=_FILE, date=NOW
            )
            resp = await client.post("/stream", data=data, headers=headers)
            assert resp.status == 200, await resp.text()
            assert await resp.json() == {"sha256": want, "exists": True}
        headers = signer.sign(
            "POST", "/read", content_type="application/octet-stream", body=_FILE, date=NOW
        )
        resp = await client.post("/read", data=_FILE, headers=headers)
        assert (await resp.json())["sha256"] == want
        for path in ("/parts", "/form"):
            headers = signer.sign(
                "POST", path, content_type=_MULTIPART_TYPE, body=_MULTIPART, date=NOW
            )
            resp = await client.post(path, data=_MULTIPART, headers=headers)
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["file"] == want
        # An old API version signs the body under V1 too: the same holds.
        host = URL(base).raw_authority
        headers = _legacy_headers(keypair, host, "/stream", _FILE)
        resp = await client.post("/stream", data=_FILE, headers=headers)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["sha256"] == want


async def test_v2_body_over_max_body_is_413() -> None:
    keypair = _keypair()
    app = _upload_app(keypair, True, max_body=len(_FILE) - 1)
    async with TestClient(TestServer(app)) as client:
        signer = HMACSigner(
            keypair.access_key,
            keypair.secret_key,
            str(client.make_url("")),
            version=SignatureVersion.V2,
        )
        headers = signer.sign(
            "POST", "/stream", content_type="application/octet-stream", body=_FILE, date=NOW
        )

        async def chunked() -> AsyncIterator[bytes]:
            yield _FILE

        for data in (_FILE, chunked()):  # with and without a Content-Length
            resp = await client.post("/stream", data=data, headers=headers)
            assert resp.status == 413
            assert resp.content_type == "application/problem+json"
            body = await resp.json()
            assert body["type"].endswith("auth-body-too-large")
            assert "max_body" in body["msg"]
            assert body["data"] == {"max_body": len(_FILE) - 1}
        small = signer.sign(
            "POST", "/stream", content_type="application/octet-stream", body=b"x", date=NOW
        )
        assert (await client.post("/stream", data=b"x", headers=small)).status == 200
