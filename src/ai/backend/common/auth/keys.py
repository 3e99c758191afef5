"""API keypair generation: access keys ``AKIA`` + 16 uppercase alphanumerics, 40-char secrets."""

from __future__ import annotations

import base64
import re
import secrets
import string

__all__ = (
    "generate_access_key",
    "generate_keypair",
    "generate_secret_key",
    "is_access_key",
)

_ACCESS_KEY_ALPHABET = string.ascii_uppercase + string.digits
_ACCESS_KEY_RE = re.compile(r"AKIA[A-Z0-9]{16}")


def generate_access_key() -> str:
    """A new random access key: ``AKIA`` then 16 uppercase letters or digits (as upstream)."""
    return "AKIA" + "".join(secrets.choice(_ACCESS_KEY_ALPHABET) for _ in range(16))


def generate_secret_key() -> str:
    """A new random secret key: 30 random bytes in standard base64 (40 characters)."""
    return base64.b64encode(secrets.token_bytes(30)).decode("ascii")


def generate_keypair() -> tuple[str, str]:
    """A new ``(access_key, secret_key)`` pair."""
    return generate_access_key(), generate_secret_key()


def is_access_key(value: str) -> bool:
    """Whether ``value`` has the shape of an access key made by :func:`generate_access_key`."""
    return _ACCESS_KEY_RE.fullmatch(value) is not None
