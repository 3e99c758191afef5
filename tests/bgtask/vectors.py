"""Loads the upstream test vectors (``<repo>/../shared/vectors``, or BACKEND_VECTORS_PATH)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ("load_vectors",)


def load_vectors() -> dict[str, Any]:
    """The parsed ``upstream-vectors.json``."""
    candidates = []
    for parent in Path(__file__).resolve().parents:
        candidates.append(parent.parent / "shared" / "vectors" / "upstream-vectors.json")
    env = os.environ.get("BACKEND_VECTORS_PATH")
    if env:
        candidates.append(Path(env))
    for path in candidates:
        if path.is_file():
            data: dict[str, Any] = json.loads(path.read_text())
            return data
    raise FileNotFoundError("upstream-vectors.json not found; set BACKEND_VECTORS_PATH")
