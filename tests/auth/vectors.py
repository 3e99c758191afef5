"""The upstream ``hmac`` test vectors (shared by the auth and middleware tests)."""

from __future__ import annotations

from typing import Any

from tests._vectors import load_vectors

__all__ = ("hmac_vectors",)


def hmac_vectors() -> list[dict[str, Any]]:
    """The ``hmac`` vectors: request inputs, keys, and upstream's signature and header."""
    vectors: list[dict[str, Any]] = load_vectors()["hmac"]
    assert vectors, "no hmac vectors"
    return vectors
