"""API keypair generation: access keys ``AKIA`` + 16 uppercase alphanumerics, 40-char secrets.

Guarantees: verifiers and keypair stores refuse an access key that is not 1-128 visible ASCII
characters before any store lookup, so bytes a client sent never reach a backend as a key
[tests/auth/test_keypair_store_conformance.py::test_malformed_access_keys_refused].
"""

from __future__ import annotations

import base64
import re
import secrets
import string

from ..exception import InvalidArgument
from .exceptions import MalformedCredentials

__all__ = (
    "MAX_ACCESS_KEY_LENGTH",
    "check_access_key",
    "generate_access_key",
    "generate_keypair",
    "generate_secret_key",
    "is_access_key",
    "is_wellformed_access_key",
)

MAX_ACCESS_KEY_LENGTH = 128
"""The longest access key a verifier or keypair store accepts."""

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


def is_wellformed_access_key(value: str) -> bool:
    """Whether ``value`` can be an access key at all: 1-128 visible ASCII characters."""
    return (
        0 < len(value) <= MAX_ACCESS_KEY_LENGTH
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def check_access_key(value: str, *, storing: bool = False) -> str:
    """``value`` when well-formed (:func:`is_wellformed_access_key`); else ``MalformedCredentials``
    (a 401 for a key a request named) or, with ``storing``, ``InvalidArgument``."""
    if not is_wellformed_access_key(value):
        message = (
            f"access key {value[:32]!r} (length {len(value)}) is not 1-{MAX_ACCESS_KEY_LENGTH} "
            "visible ASCII characters"
        )
        if storing:
            raise InvalidArgument(message, data={"field": "access_key"})
        raise MalformedCredentials(message, data={"parameter": "access_key"})
    return value
