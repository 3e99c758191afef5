"""HMAC request signatures of the Backend.AI API (DESIGN.md section 3): a signer and a verifier.

String to sign (``V1``, upstream's), newline-joined: method; path with query; the date header
exactly as sent; ``host:<host[:port]>``; ``content-type:<mime type, lowercased, no
parameters>``; ``x-backendai-version:<version>``; the hex digest of the body hash (of empty bytes
for API versions from ``v4.20181215``). Key: ``k1 = HMAC(secret, date as YYYYMMDD)``,
``k2 = HMAC(k1, host)``, signature ``hex(HMAC(k2, string_to_sign))``. ``V2`` (ours) puts the
line ``BackendAI-HMAC-V2`` first and hashes the real body; ``sigVersion=2`` in the
``Authorization`` header announces it, so requests of the official client (no marker) still
verify as ``V1``.

Guarantees:
- the signer produces upstream's ``Authorization`` header and signature for every vector
  [tests/auth/test_signature.py::test_signer_matches_vectors];
- the verifier accepts every vector when its clock reads the vector's date
  [tests/auth/test_signature.py::test_verifier_accepts_vectors], also through a real server
  [tests/middlewares/test_auth.py::test_vectors_accepted_through_server];
- a date farther than ``max_skew`` from the server clock fails, naming both times
  [tests/auth/test_signature.py::test_clock_skew_names_both_times];
- with a nonce store, a second use of a signature within the window fails
  [tests/auth/test_signature.py::test_replay_rejected_within_window], also for a request
  dated ahead of the server, whose signature is remembered until its date leaves the window
  plus ``replay_margin`` (never negative)
  [tests/auth/test_signature.py::test_future_dated_replay_rejected_until_window_ends];
- under ``V2`` a changed body fails [tests/auth/test_signature.py::test_v2_body_tamper_rejected]
  and stripping the ``sigVersion`` marker does not downgrade it to ``V1``
  [tests/auth/test_signature.py::test_v2_marker_strip_rejected];
- signatures are compared with ``hmac.compare_digest``; messages carry no secret
  [tests/auth/test_signature.py::test_errors_do_not_leak_secret];
- any malformed input raises an ``AuthError``, never another exception, whose problem body
  always encodes [tests/auth/test_signature.py::test_fuzz_verify_raises_only_auth_errors];
- an access key that is not 1-128 visible ASCII characters is refused before any store
  lookup, and request text echoed in a mismatch (bytes that were not UTF-8 included) is
  backslash-escaped
  [tests/auth/test_signature.py::test_undecodable_request_text_is_refused_or_escaped].

Limits:
- dates are ISO 8601 or RFC 5322 (``Tue, 15 Nov 1994 08:12:31 GMT``) whose zone, if any, is
  ``GMT``, ``UT``, ``UTC``, ``Z`` or a numeric ``+hhmm``/``-hhmm`` (a date without one is UTC);
  upstream's dateutil parser also takes free-form dates and zone names (``KST``, ``EST``),
  which this verifier rejects rather than misreading them as UTC
  [tests/auth/test_signature.py::test_date_formats];
- ``V1`` signs no body (upstream's format): only ``V2`` or TLS protects it;
- a body the signature covers (``V2``, API versions before ``v4.20181215`` without multipart)
  is read into memory to be hashed, at most ``max_body`` bytes (1 MiB by default; more is a
  413 ``BodyTooLarge`` before the rest is read); the handler then reads the same bytes from
  ``request.content``, ``read()``, ``post()`` or ``multipart()``
  [tests/middlewares/test_auth.py::test_v2_signed_uploads_reach_the_handler_whole],
  [tests/middlewares/test_auth.py::test_v2_body_over_max_body_is_413];
- two requests with the same date header and target have the same signature, so with replay
  protection a client must re-sign (a new date) every attempt, retries included;
- legacy ``Sorna`` version and date headers are not read (the ``Sorna`` auth type name is).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ..exception import InvalidArgument
from ._text import MAX_ECHO, echo, escape
from .abc import AbstractKeypairStore, AbstractNonceStore
from .exceptions import (
    BodyTooLarge,
    ClockSkewExceeded,
    InvalidDateHeader,
    MalformedCredentials,
    MissingCredentials,
    ReplayedRequest,
    SignatureMismatch,
    UnknownAccessKey,
    UnsupportedSignMethod,
)
from .keys import MAX_ACCESS_KEY_LENGTH, is_wellformed_access_key
from .types import (
    AUTHORIZATION_HEADER,
    DATE_HEADER,
    DEFAULT_API_VERSION,
    FORWARDED_URL_HEADER,
    VERSION_HEADER,
    X_DATE_HEADER,
    AuthMethod,
    AuthResult,
    Clock,
    Keypair,
    SignatureVersion,
    utcnow,
)

if TYPE_CHECKING:
    from aiohttp import web

__all__ = (
    "DEFAULT_HASH_TYPES",
    "V2_MARKER",
    "AuthorizationParams",
    "HMACSigner",
    "HMACVerifier",
    "compute_signature",
    "derive_signing_key",
    "format_authorization",
    "parse_api_version",
    "parse_authorization",
    "parse_date_header",
    "string_to_sign",
)

V2_MARKER = "BackendAI-HMAC-V2"
_V1, _V2 = SignatureVersion.V1, SignatureVersion.V2  # module globals: cheaper than enum lookups
DEFAULT_HASH_TYPES: frozenset[str] = frozenset({"sha256", "sha384", "sha512"})
_AUTH_TYPES = ("BackendAI", "Sorna")
_BODY_UNSIGNED_FROM = (4, 20181215)
_API_VERSION_RE = re.compile(r"v(\d{1,4})\.(\d{8})")
_MAX_AUTH_HEADER_LEN = 1024
_MAX_DATE_LEN = 64
_DEFAULT_MAX_BODY = 1 << 20
_READ_CHUNK = 1 << 16
_MAX_ECHO = MAX_ECHO

BodySource = bytes | Callable[[], Awaitable[bytes]]


_echo = echo  # a value from the request, quoted and cut short, for an error message


def _utf8(value: str) -> bytes:
    # aiohttp decodes header bytes with surrogateescape; keep them byte-exact.
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


class AuthorizationParams(NamedTuple):
    """The parts of a ``BackendAI signMethod=..., credential=...`` header."""

    hash_type: str
    access_key: str
    signature: str
    version: SignatureVersion


# The shape every client writes; anything else goes through the general parser below. Its
# access keys are well-formed by construction (the general parser checks the others).
_CANONICAL_AUTH_RE = re.compile(
    r"BackendAI signMethod=HMAC-([A-Za-z0-9_]+), "
    rf"credential=([A-Za-z0-9]{{1,{MAX_ACCESS_KEY_LENGTH}}}):([0-9a-f]+)"
    r"(?:, sigVersion=([12]))?"
)
_VERSIONS_BY_TEXT = {str(int(v)): v for v in SignatureVersion}


def parse_authorization(value: str) -> AuthorizationParams:
    """Parse an ``Authorization`` header; malformed input raises ``MalformedCredentials``."""
    return AuthorizationParams._make(_parse_authorization(value))


def _parse_authorization(value: str) -> tuple[str, str, str, SignatureVersion]:
    # A plain tuple: building the NamedTuple costs more than the regex match.
    if len(value) > _MAX_AUTH_HEADER_LEN:
        raise MalformedCredentials(
            f"Authorization header is {len(value)} characters long, at most "
            f"{_MAX_AUTH_HEADER_LEN} allowed"
        )
    match = _CANONICAL_AUTH_RE.fullmatch(value)
    if match is not None:
        hash_type, access_key, signature, version = match.groups()
        return (
            hash_type.lower(),
            access_key,
            signature,
            _V1 if version is None else _VERSIONS_BY_TEXT[version],
        )
    auth_type, sep, rest = value.strip().partition(" ")
    if not sep or auth_type not in _AUTH_TYPES:
        raise MalformedCredentials(
            f"Authorization header must start with 'BackendAI ', got {_echo(value)}",
            data={"header": AUTHORIZATION_HEADER},
        )
    params: dict[str, str] = {}
    for piece in rest.split(","):
        key, eq, val = piece.partition("=")
        if not eq or not key.strip():
            raise MalformedCredentials(
                f"Authorization parameter {_echo(piece.strip())} is not of the form key=value",
                data={"header": AUTHORIZATION_HEADER},
            )
        params[key.strip()] = val.strip()
    for required in ("signMethod", "credential"):
        if required not in params:
            raise MalformedCredentials(
                f"Authorization header lacks the {required!r} parameter",
                data={"header": AUTHORIZATION_HEADER, "parameter": required},
            )
    access_key, colon, signature = params["credential"].partition(":")
    if not colon or not access_key or not signature:
        raise MalformedCredentials(
            "Authorization credential must be <access_key>:<signature>",
            data={"header": AUTHORIZATION_HEADER, "parameter": "credential"},
        )
    if not is_wellformed_access_key(access_key):  # before any store sees it
        raise MalformedCredentials(
            f"Authorization credential's access key {_echo(access_key)} is not "
            f"1-{MAX_ACCESS_KEY_LENGTH} visible ASCII characters",
            data={"header": AUTHORIZATION_HEADER, "parameter": "credential"},
        )
    mac_type, dash, hash_type = params["signMethod"].partition("-")
    if not dash or mac_type.lower() != "hmac" or not hash_type:
        raise UnsupportedSignMethod(
            f"signMethod {_echo(params['signMethod'])} is not HMAC-<hash>",
            data={"header": AUTHORIZATION_HEADER, "parameter": "signMethod"},
        )
    version = SignatureVersion.V1
    raw = params.get("sigVersion")
    if raw is not None:
        if raw not in _VERSIONS_BY_TEXT:
            raise UnsupportedSignMethod(
                f"sigVersion {_echo(raw)} is not one of {', '.join(_VERSIONS_BY_TEXT)}",
                data={"header": AUTHORIZATION_HEADER, "parameter": "sigVersion"},
            )
        version = _VERSIONS_BY_TEXT[raw]
    return (hash_type.lower(), access_key, signature, version)


def format_authorization(
    access_key: str,
    signature: str,
    *,
    hash_type: str = "sha256",
    version: SignatureVersion = SignatureVersion.V1,
) -> str:
    """The ``Authorization`` header value for a signature (``V1`` exactly as upstream's)."""
    header = f"BackendAI signMethod=HMAC-{hash_type.upper()}, credential={access_key}:{signature}"
    if version is not SignatureVersion.V1:
        header += f", sigVersion={int(version)}"
    return header


def parse_date_header(raw: str) -> datetime:
    """Parse an ISO 8601 or RFC 5322 date; naive dates are UTC; bad ones raise InvalidDateHeader."""
    text = raw.strip()
    if not text or len(text) > _MAX_DATE_LEN:
        raise InvalidDateHeader(
            f"request date {_echo(raw)} is empty or longer than {_MAX_DATE_LEN} characters",
            data={"header": DATE_HEADER},
        )
    parsed: datetime | None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (ValueError, TypeError, IndexError, OverflowError):
            parsed = None
        else:
            _check_rfc5322_zone(text, raw)
    if parsed is None:
        raise InvalidDateHeader(
            f"request date {_echo(raw)} is neither ISO 8601 nor RFC 5322",
            data={"header": DATE_HEADER},
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


_COMMENT = re.compile(r"\([^()]*\)")  # RFC 5322 comments, e.g. "+0900 (KST)"
_YEAR = re.compile(r"\d{4}", re.ASCII)
_ZONE = re.compile(r"(?i:GMT|UTC?|Z)|[+-]\d{4}", re.ASCII)


def _check_rfc5322_zone(text: str, raw: str) -> None:
    # email.utils reads an unknown zone name (KST, XYZ) as "no zone", i.e. UTC here, and
    # "+09:00" or trailing words likewise: refuse all but the zones that mean one instant.
    tokens = _COMMENT.sub(" ", text).replace(",", " ").split()
    times = [i for i, token in enumerate(tokens) if ":" in token]
    after = tokens[times[0] + 1 :] if times else []
    zone = [token for token in after if not _YEAR.fullmatch(token)]  # asctime: year last
    if zone and (len(zone) > 1 or not _ZONE.fullmatch(zone[0])):
        raise InvalidDateHeader(
            f"request date {_echo(raw)} has the zone {_echo(' '.join(zone))}; use GMT, UTC "
            "or a numeric offset such as +0900",
            data={"header": DATE_HEADER},
        )


@functools.lru_cache(maxsize=256)
def parse_api_version(value: str) -> tuple[int, int]:
    """Split ``vN.YYYYMMDD`` into ``(N, YYYYMMDD)``; other shapes raise ``MalformedCredentials``."""
    match = _API_VERSION_RE.fullmatch(value.strip())
    if match is None:
        raise MalformedCredentials(
            f"{VERSION_HEADER} {_echo(value)} is not of the form vN.YYYYMMDD",
            data={"header": VERSION_HEADER},
        )
    return int(match[1]), int(match[2])


@functools.lru_cache(maxsize=256)
def _mime_type(content_type: str | None) -> str:
    if not content_type:
        return "application/octet-stream"
    return content_type.split(";", 1)[0].strip().lower() or "application/octet-stream"


def string_to_sign(
    *,
    method: str,
    path: str,
    date_header: str,
    host: str,
    content_type: str,
    api_version: str,
    body_hash: str,
    version: SignatureVersion = SignatureVersion.V1,
) -> str:
    """The newline-joined text that is signed (``content_type`` already a lowercase mime type)."""
    return _string_to_sign(
        method, path, date_header, host, content_type, api_version, body_hash, version
    )


def _string_to_sign(
    method: str,
    path: str,
    date_header: str,
    host: str,
    content_type: str,
    api_version: str,
    body_hash: str,
    version: SignatureVersion,
) -> str:
    text = (
        f"{method.upper()}\n{path}\n{date_header}\nhost:{host}\ncontent-type:{content_type}\n"
        f"x-backendai-version:{api_version}\n{body_hash}"
    )
    if version is _V2:
        return f"{V2_MARKER}\n{text}"
    return text


def _day(date: datetime) -> bytes:
    if date.year >= 1000:
        return b"%04d%02d%02d" % (date.year, date.month, date.day)
    return date.strftime("%Y%m%d").encode()  # the C library's rendering, as upstream's


def derive_signing_key(*, secret_key: str, sign_date: datetime, host: str, hash_type: str) -> bytes:
    """``HMAC(HMAC(secret, YYYYMMDD), host)``: the key that signs one day's requests to a host."""
    key = hmac.digest(_utf8(secret_key), _day(sign_date), hash_type)
    return hmac.digest(key, _utf8(host), hash_type)


def compute_signature(
    *, secret_key: str, sign_date: datetime, host: str, text: str, hash_type: str
) -> str:
    """``hex(HMAC(HMAC(HMAC(secret, YYYYMMDD), host), text))`` with ``hash_type``."""
    key = derive_signing_key(
        secret_key=secret_key, sign_date=sign_date, host=host, hash_type=hash_type
    )
    return hmac.digest(key, _utf8(text), hash_type).hex()


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class _SigningKeyCache:
    """Per (secret, day, host, hash): the day's signing key (two of the three HMACs, done once)
    as RFC 2104's inner and outer hash states, so each signature is two state copies, two
    updates and a digest, all in C (``hmac.HMAC`` would add four Python calls).
    [tests/auth/test_signature.py::test_signing_cache_matches_hmac]"""

    __slots__ = ("_keys", "_limit")

    def __init__(self, limit: int = 4096) -> None:
        self._keys: dict[tuple[str, int, str, str], tuple[hashlib._Hash, hashlib._Hash]] = {}
        self._limit = limit

    @staticmethod
    def _states(key: bytes, hash_type: str) -> tuple[hashlib._Hash, hashlib._Hash]:
        inner, outer = hashlib.new(hash_type), hashlib.new(hash_type)
        if len(key) > inner.block_size:
            key = hashlib.new(hash_type, key).digest()
        key = key.ljust(inner.block_size, b"\0")
        inner.update(key.translate(_IPAD))
        outer.update(key.translate(_OPAD))
        return inner, outer

    def sign(
        self, secret_key: str, sign_date: datetime, host: str, hash_type: str, text: str
    ) -> str:
        cache_key = (secret_key, sign_date.toordinal(), host, hash_type)  # toordinal: the day
        states = self._keys.get(cache_key)
        if states is None:
            key = derive_signing_key(
                secret_key=secret_key, sign_date=sign_date, host=host, hash_type=hash_type
            )
            if len(self._keys) >= self._limit:
                self._keys.clear()
            states = self._keys[cache_key] = self._states(key, hash_type)
        inner = states[0].copy()
        inner.update(_utf8(text))
        outer = states[1].copy()
        outer.update(inner.digest())
        return outer.hexdigest()


async def _read_body(request: web.Request, max_body: int) -> bytes:
    """The request body (at most ``max_body`` bytes), left readable for the handler."""
    from aiohttp import StreamReader  # only servers need it; signers never import aiohttp

    cached: bytes | None = getattr(request, "_read_bytes", None)  # read() ran before us
    if cached is not None:
        body = cached
    else:
        length = request.content_length
        if length is not None and length > max_body:
            raise _too_large(max_body, f"Content-Length {length}")
        content = request.content
        chunks: list[bytes] = []
        size = 0
        while chunk := await content.read(_READ_CHUNK):
            size += len(chunk)
            if size > max_body:
                raise _too_large(max_body, f"more than {max_body} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
    # The stream is drained: hand the handler a new one holding the same bytes, so
    # request.content, post() and multipart() see the whole body. aiohttp has no public
    # setter: ``_payload`` is the stream read(), post() and multipart() use, and
    # ``content`` caches it in ``_cache`` (pinned by
    # tests/middlewares/test_auth.py::test_v2_signed_uploads_reach_the_handler_whole).
    # The limit keeps the reader from pausing the connection's transport.
    if body:  # an empty body stays as it is (body_exists keeps its meaning)
        replay = StreamReader(
            request.protocol, max(len(body), _READ_CHUNK), loop=asyncio.get_running_loop()
        )
        replay.feed_data(body)
        replay.feed_eof()
        request._payload = replay
        request._cache.pop("content", None)
    return body


def _too_large(max_body: int, what: str) -> BodyTooLarge:
    return BodyTooLarge(
        f"the signature covers the request body, which is {what}; this server hashes at "
        f"most {max_body} bytes (HMACVerifier max_body): sign with version 1 over TLS or "
        "send a smaller body",
        data={"max_body": max_body},
    )


@functools.cache
def _empty_body_hash(hash_type: str) -> str:
    return hashlib.new(hash_type, b"").hexdigest()


class HMACSigner:
    """Signs requests as the official Backend.AI client does (``V1``), or with ``V2``."""

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        endpoint: str | URL,
        *,
        api_version: str = DEFAULT_API_VERSION,
        hash_type: str = "sha256",
        version: SignatureVersion = SignatureVersion.V1,
        clock: Clock = utcnow,
    ) -> None:
        url = URL(endpoint)
        if not url.is_absolute() or url.raw_host is None:
            raise InvalidArgument(
                f"endpoint {str(endpoint)!r} is not an absolute URL", data={"field": "endpoint"}
            )
        if hash_type.lower() not in hashlib.algorithms_available:
            raise InvalidArgument(
                f"hash type {hash_type!r} is unknown", data={"field": "hash_type"}
            )
        parse_api_version(api_version)
        self.access_key = access_key
        self._secret_key = secret_key
        self.host = url.raw_authority
        self.api_version = api_version
        self.hash_type = hash_type.lower()
        self.version = version
        self._clock = clock
        self._empty_hash = _empty_body_hash(self.hash_type)

    def __repr__(self) -> str:
        return f"HMACSigner({self.access_key!r}, host={self.host!r}, version={self.version!r})"

    def sign(
        self,
        method: str,
        rel_url: str,
        *,
        content_type: str = "application/json",
        body: bytes = b"",
        date: datetime | None = None,
    ) -> dict[str, str]:
        """The headers to send: Authorization, Date, X-BackendAI-Date, -Version, Content-Type."""
        when = self._clock() if date is None else date
        date_header = when.isoformat()
        if self.version is SignatureVersion.V2:
            body_hash = hashlib.new(self.hash_type, body).hexdigest()
        else:
            body_hash = self._empty_hash
        text = string_to_sign(
            method=method,
            path=rel_url,
            date_header=date_header,
            host=self.host,
            content_type=_mime_type(content_type),
            api_version=self.api_version,
            body_hash=body_hash,
            version=self.version,
        )
        signature = compute_signature(
            secret_key=self._secret_key,
            sign_date=when,
            host=self.host,
            text=text,
            hash_type=self.hash_type,
        )
        return {
            AUTHORIZATION_HEADER: format_authorization(
                self.access_key, signature, hash_type=self.hash_type, version=self.version
            ),
            DATE_HEADER: date_header,
            X_DATE_HEADER: date_header,
            VERSION_HEADER: self.api_version,
            "Content-Type": content_type,
        }


class HMACVerifier:
    """Verifies signed requests against an :class:`AbstractKeypairStore`.

    ``max_skew`` bounds the distance between the request date and the server clock (15 min,
    as upstream). With a ``nonce_store``, each accepted signature is remembered until its date
    leaves the window (plus ``replay_margin`` for clock differences between servers), and a
    second use is rejected. ``versions`` lists the accepted signature versions: ``{V2}`` makes
    body signing mandatory. ``trust_forwarded_url`` signs the path and host of
    ``X-Forwarded-URL`` (set it only behind a proxy that always overwrites that header).
    ``max_body`` bounds the body :meth:`verify_request` reads to hash (``BodyTooLarge``, 413,
    beyond it); the handler can read that body again in full, streamed or not.
    """

    def __init__(
        self,
        keypairs: AbstractKeypairStore,
        *,
        max_skew: timedelta = timedelta(minutes=15),
        nonce_store: AbstractNonceStore | None = None,
        replay_margin: timedelta = timedelta(seconds=60),
        versions: Collection[SignatureVersion] = (SignatureVersion.V1, SignatureVersion.V2),
        hash_types: Collection[str] = DEFAULT_HASH_TYPES,
        trust_forwarded_url: bool = False,
        max_body: int = _DEFAULT_MAX_BODY,
        clock: Clock = utcnow,
    ) -> None:
        if max_body < 0:
            raise InvalidArgument(
                f"max_body must be >= 0 bytes, got {max_body}", data={"field": "max_body"}
            )
        if max_skew <= timedelta(0):
            raise InvalidArgument(
                f"max_skew must be positive, got {max_skew}", data={"field": "max_skew"}
            )
        if replay_margin < timedelta(0):  # a negative margin would forget signatures early
            raise InvalidArgument(
                f"replay_margin must be >= 0, got {replay_margin}",
                data={"field": "replay_margin"},
            )
        if not versions:
            raise InvalidArgument("versions must not be empty", data={"field": "versions"})
        unknown = {h for h in hash_types if h not in hashlib.algorithms_available}
        if unknown or not hash_types:
            raise InvalidArgument(
                f"hash_types must be non-empty hashlib names, got unknown {sorted(unknown)}",
                data={"field": "hash_types"},
            )
        self._keypairs = keypairs
        self._max_skew = max_skew
        self._nonce_store = nonce_store
        self._replay_margin = replay_margin
        self._versions = frozenset(versions)
        self._hash_types = frozenset(h.lower() for h in hash_types)
        self._trust_forwarded_url = trust_forwarded_url
        self._max_body = max_body
        self._clock = clock
        self._signing_keys = _SigningKeyCache()
        self._results: dict[tuple[str, SignatureVersion], AuthResult] = {}

    @property
    def max_skew(self) -> timedelta:
        """The accepted distance between a request's date and the server clock."""
        return self._max_skew

    def verify_request(self, request: web.Request) -> Awaitable[AuthResult]:
        """Verify an aiohttp request (reads the body only for ``V2`` or pre-2018 API versions,
        at most ``max_body`` bytes, and leaves it readable for the handler); await the result
        (the coroutine of :meth:`verify`, without a layer of its own)."""
        return self.verify(
            method=request.method,
            path=request.raw_path,
            host=request.host,
            headers=request.headers,
            body=lambda: _read_body(request, self._max_body),
        )

    async def verify(
        self,
        *,
        method: str,
        path: str,
        host: str,
        headers: Mapping[str, str],
        content_type: str | None = None,
        body: BodySource = b"",
    ) -> AuthResult:
        """Verify one request given its parts; raises an ``AuthError`` subclass on failure.

        ``path`` is the raw path with query, ``host`` the ``Host`` header, ``content_type`` the
        parsed mime type (taken from ``headers`` when ``None``); ``body`` is the raw body or a
        coroutine function returning it, called only when the signature covers the body.
        Cancelling leaves at most a remembered signature in the nonce store.
        """
        if not isinstance(headers, (CIMultiDict, CIMultiDictProxy)):
            headers = CIMultiDict(headers)
        raw_auth = headers.get(AUTHORIZATION_HEADER)
        if not raw_auth:
            raise MissingCredentials(
                "the Authorization header is missing", data={"header": AUTHORIZATION_HEADER}
            )
        hash_type, access_key, signature, version = _parse_authorization(raw_auth)
        if hash_type not in self._hash_types:
            raise UnsupportedSignMethod(
                f"hash type {_echo(hash_type)} is not accepted; use one of "
                f"{', '.join(sorted(self._hash_types))}",
                data={"header": AUTHORIZATION_HEADER, "parameter": "signMethod"},
            )
        if version not in self._versions:
            raise UnsupportedSignMethod(
                f"signature version {int(version)} is not accepted; use one of "
                f"{', '.join(str(int(v)) for v in sorted(self._versions))}",
                data={"header": AUTHORIZATION_HEADER, "parameter": "sigVersion"},
            )
        raw_date = headers.get(DATE_HEADER) or headers.get(X_DATE_HEADER)
        if not raw_date:
            raise InvalidDateHeader(
                f"neither {DATE_HEADER} nor {X_DATE_HEADER} header is present",
                data={"header": DATE_HEADER},
            )
        date = parse_date_header(raw_date)
        now = self._clock()
        try:
            skew = date - now
        except OverflowError as exc:
            raise InvalidDateHeader(
                f"request date {_echo(raw_date)} is out of range", data={"header": DATE_HEADER}
            ) from exc
        if abs(skew) > self._max_skew:
            raise ClockSkewExceeded(
                f"request date {date.isoformat()} is {skew.total_seconds():+.0f} s from the "
                f"server's time {now.isoformat()}; at most "
                f"{self._max_skew.total_seconds():.0f} s is allowed",
                data={
                    "request_date": date.isoformat(),
                    "server_time": now.isoformat(),
                    "skew_sec": skew.total_seconds(),
                    "max_skew_sec": self._max_skew.total_seconds(),
                },
            )
        raw_version = headers.get(VERSION_HEADER)
        if not raw_version:
            raise MalformedCredentials(
                f"the {VERSION_HEADER} header is missing", data={"header": VERSION_HEADER}
            )
        api_version = parse_api_version(raw_version)

        keypair = await self._keypairs.get(access_key)
        if keypair is None or not keypair.is_active:
            raise UnknownAccessKey(
                f"access key {_echo(access_key)} is unknown or inactive",
                data={"access_key": access_key[:_MAX_ECHO]},
            )

        if self._trust_forwarded_url and (forwarded := headers.get(FORWARDED_URL_HEADER)):
            split = urlsplit(forwarded)
            path, host = split.path, split.netloc
        mime = _mime_type(headers.get("Content-Type")) if content_type is None else content_type
        if version is _V2 or (api_version < _BODY_UNSIGNED_FROM and mime != "multipart/form-data"):
            payload = body if isinstance(body, bytes) else await body()
        else:
            payload = b""
        text = _string_to_sign(
            method,
            path,
            raw_date,
            host,
            mime,
            raw_version,
            (
                hashlib.new(hash_type, payload).hexdigest()
                if payload
                else _empty_body_hash(hash_type)
            ),
            version,
        )
        expected = self._signing_keys.sign(keypair.secret_key, date, host, hash_type, text)
        if not (
            hmac.compare_digest(expected, signature)  # str form: ASCII only
            if signature.isascii()
            else hmac.compare_digest(expected.encode("ascii"), _utf8(signature))
        ):
            raise SignatureMismatch(
                f"signature mismatch for access key {access_key}: the server signed "
                f"method {_echo(method.upper())}, path {_echo(path)}, host {_echo(host)}, "
                f"content type {_echo(mime)}, API version {_echo(raw_version)}, "
                f"date {_echo(raw_date)} (signature version {int(version)})",
                data={  # request text, escaped: it may hold undecodable bytes
                    "access_key": access_key,
                    "method": escape(method.upper()),
                    "path": escape(path, 256),
                    "host": escape(host),
                    "content_type": escape(mime),
                    "api_version": escape(raw_version),
                    "date": escape(raw_date),
                    "signature_version": int(version),
                },
            )
        if self._nonce_store is not None:
            ttl = date + self._max_skew - now + self._replay_margin
            first = await self._nonce_store.remember(f"{access_key}:{expected}", ttl)
            if not first:
                raise ReplayedRequest(
                    f"a request signed by access key {access_key} with this signature "
                    f"(date {_echo(raw_date)}) was already accepted; sign every request afresh",
                    data={"access_key": access_key, "date": escape(raw_date)},
                )
        return self._result(keypair, version)

    def _result(self, keypair: Keypair, version: SignatureVersion) -> AuthResult:
        # One immutable result per keypair and version, rebuilt when the keypair changes.
        key = (keypair.access_key, version)
        result = self._results.get(key)
        if result is None or result.keypair is not keypair:
            if len(self._results) >= 4096:
                self._results.clear()
            result = self._results[key] = AuthResult(
                keypair=keypair, method=AuthMethod.HMAC, signature_version=version
            )
        return result
