"""Loads the upstream ``hmac`` test vectors (shared by the auth and middleware tests)."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ("hmac_vectors",)


def _vectors_path() -> Path:
    for parent in Path(__file__).resolve().parents:
        candidate = parent.parent / "shared" / "vectors" / "upstream-vectors.json"
        if candidate.is_file():
            return candidate
    env = os.environ.get("BACKEND_VECTORS_PATH")
    if env and Path(env).is_file():
        return Path(env)
    raise FileNotFoundError(
        "upstream-vectors.json not found above the repository nor at $BACKEND_VECTORS_PATH"
    )


@cache
def hmac_vectors() -> list[dict[str, Any]]:
    """The ``hmac`` vectors: request inputs, keys, and upstream's signature and header."""
    vectors: list[dict[str, Any]] = json.loads(_vectors_path().read_text())["hmac"]
    assert vectors, "no hmac vectors"
    return vectors
