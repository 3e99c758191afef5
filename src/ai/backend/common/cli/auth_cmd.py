"""``backend.ai-common auth``: sign a request as the official client would; encode/decode JWTs.

``auth sign`` prints the headers of a signed Backend.AI API request (``Authorization``,
``Date``, ``X-BackendAI-Date``, ``X-BackendAI-Version``, ``Content-Type``), DESIGN.md section 3.
``auth jwt encode`` issues an ``X-BackendAI-Token`` JWT (HS256); ``auth jwt decode`` shows its
claims, and verifies signature, expiry and role when given the secret key. Keys default to
``auth.access-key`` / ``auth.secret-key`` of the config file.

Guarantees:
- ``auth sign`` reproduces every upstream ``hmac`` vector
  [tests/cli/test_auth_cmd.py::test_sign_matches_every_vector]
  [tests/cli/test_auth_cmd.py::test_sign_subprocess_matches_a_vector];
- a JWT encoded here decodes and verifies; a wrong secret is one line and exit 1
  [tests/cli/test_auth_cmd.py::test_jwt_round_trip].
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import jwt as pyjwt
from yarl import URL

from ..auth import (
    DEFAULT_API_VERSION,
    HMACSigner,
    InvalidToken,
    JWTVerifier,
    Keypair,
    MemoryKeypairStore,
    issue_token,
)
from ..data.user import UserRole
from ..exception import ConfigurationError, InvalidArgument
from .context import CLIContext, pass_cli
from .settings import DAEMON_NAME

__all__ = ("auth", "sign_headers")


@click.group()
def auth() -> None:
    """Backend.AI API authentication helpers (no backend needed)."""


def _keys(cli: CLIContext, access_key: str | None, secret_key: str | None) -> tuple[str, str]:
    configured = None
    if access_key is None or secret_key is None:
        configured = cli.settings.auth
    ak = access_key if access_key is not None else configured.access_key if configured else None
    sk: str | None = secret_key
    if sk is None and configured is not None and configured.secret_key is not None:
        sk = configured.secret_key.get_secret_value()
    if not ak or not sk:
        missing = "--access-key" if not ak else "--secret-key"
        raise ConfigurationError(
            f"{missing} is required (or set auth.{missing[2:]} in {DAEMON_NAME}.toml)",
            data={"option": missing},
        )
    return ak, sk


def _parse_date(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidArgument(
            f"--date {text!r} is not an ISO 8601 date-time", data={"option": "--date"}
        ) from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def sign_headers(
    *,
    method: str,
    url: str,
    access_key: str,
    secret_key: str,
    date: datetime,
    content_type: str,
    api_version: str,
    hash_type: str,
) -> dict[str, str]:
    """The headers the official client sends for ``method url`` signed at ``date``."""
    parsed = URL(url, encoded=True)
    if not parsed.is_absolute() or not parsed.raw_host:
        raise InvalidArgument(f"--url {url!r} is not an absolute URL", data={"option": "--url"})
    endpoint = f"{parsed.scheme}://{parsed.raw_authority}"
    signer = HMACSigner(
        access_key, secret_key, endpoint, api_version=api_version, hash_type=hash_type
    )
    return signer.sign(method.upper(), parsed.raw_path_qs, content_type=content_type, date=date)


@auth.command("sign")
@click.option("--method", required=True, help="HTTP method")
@click.option("--url", required=True, help="the full request URL (endpoint, path, query)")
@click.option("--access-key", default=None, help="access key (default: config auth.access-key)")
@click.option("--secret-key", default=None, help="secret key (default: config auth.secret-key)")
@click.option("--date", default=None, help="ISO 8601 request date (default: now, UTC)")
@click.option("--content-type", default="application/json", show_default=True)
@click.option("--api-version", default=DEFAULT_API_VERSION, show_default=True)
@click.option("--hash-type", default="sha256", show_default=True, help="sha256, sha384, sha512")
@pass_cli
def sign(
    cli: CLIContext,
    method: str,
    url: str,
    access_key: str | None,
    secret_key: str | None,
    date: str | None,
    content_type: str,
    api_version: str,
    hash_type: str,
) -> None:
    """Print the headers of a request signed as the official Backend.AI client signs it."""
    ak, sk = _keys(cli, access_key, secret_key)
    when = _parse_date(date) if date is not None else datetime.now(UTC).replace(microsecond=0)
    headers = sign_headers(
        method=method,
        url=url,
        access_key=ak,
        secret_key=sk,
        date=when,
        content_type=content_type,
        api_version=api_version,
        hash_type=hash_type,
    )
    cli.emit(headers)
    for name, value in headers.items():
        cli.plain(f"{name}: {value}")


@auth.group("jwt")
def jwt_group() -> None:
    """X-BackendAI-Token JWTs (HS256)."""


@jwt_group.command("encode")
@click.option("--access-key", default=None, help="access key (default: config auth.access-key)")
@click.option("--secret-key", default=None, help="secret key (default: config auth.secret-key)")
@click.option(
    "--role",
    type=click.Choice([r.value for r in UserRole]),
    default=UserRole.USER.value,
    show_default=True,
)
@click.option(
    "--lifetime",
    type=click.IntRange(min=1),
    default=900,
    show_default=True,
    help="seconds until exp",
)
@pass_cli
def encode(
    cli: CLIContext, access_key: str | None, secret_key: str | None, role: str, lifetime: int
) -> None:
    """Print a new token for the keypair (claims exp, iat, access_key, role)."""
    ak, sk = _keys(cli, access_key, secret_key)
    keypair = Keypair(access_key=ak, secret_key=sk, user_id=uuid.UUID(int=0), role=UserRole(role))
    token = issue_token(keypair, lifetime=timedelta(seconds=lifetime))
    cli.emit({"token": token})
    if not cli.json:
        click.echo(token)


def _unverified(token: str) -> dict[str, Any]:
    try:
        header = pyjwt.get_unverified_header(token)
        claims: dict[str, Any] = pyjwt.decode(token, options={"verify_signature": False})
    except pyjwt.PyJWTError as exc:
        raise InvalidToken(f"JWT cannot be decoded: {exc}") from exc
    return {"header": header, "claims": claims}


@jwt_group.command("decode")
@click.argument("token")
@click.option("--secret-key", default=None, help="verify with this secret key")
@pass_cli
def decode(cli: CLIContext, token: str, secret_key: str | None) -> None:
    """Show a token's header and claims; with --secret-key also verify it (exit 1 if invalid)."""
    shown = _unverified(token)
    claims = shown["claims"]
    verified = False
    if secret_key is not None:
        access_key = str(claims.get("access_key", ""))
        try:
            role = UserRole(str(claims.get("role")))
        except ValueError:
            role = UserRole.USER  # the verifier rejects the claimed role by name
        keypair = Keypair(
            access_key=access_key, secret_key=secret_key, user_id=uuid.UUID(int=0), role=role
        )
        verifier = JWTVerifier(MemoryKeypairStore([keypair]))
        cli.run(verifier.verify(token))
        verified = True
    result = {**shown, "verified": verified}
    cli.emit(result)
    cli.plain(f"header   {shown['header']}")
    for key, value in claims.items():
        extra = ""
        if key in ("exp", "iat") and isinstance(value, int):
            extra = f"  ({datetime.fromtimestamp(value, UTC).isoformat()})"
        cli.plain(f"{key:<10} {value}{extra}")
    cli.plain("signature verified" if verified else "signature NOT verified (no --secret-key)")
