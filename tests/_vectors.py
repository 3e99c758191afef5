"""The upstream test vectors (``<repo>/../shared/vectors/upstream-vectors.json``).

CI lays ``shared/`` beside the clone; ``BACKEND_VECTORS_PATH`` points elsewhere. A missing file
fails the test run loudly: the wire-compatibility tests must never be skipped.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ("load_vectors", "vectors_path")

_RELATIVE = Path("shared") / "vectors" / "upstream-vectors.json"


def vectors_path() -> Path:
    """Where the vectors file is: ``BACKEND_VECTORS_PATH``, else beside a parent folder."""
    env = os.environ.get("BACKEND_VECTORS_PATH")
    candidates = [Path(env)] if env else []
    candidates += [parent.parent / _RELATIVE for parent in Path(__file__).resolve().parents]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"upstream-vectors.json not found (looked for {_RELATIVE} beside every parent folder"
        " of the repository); set BACKEND_VECTORS_PATH"
    )


@cache
def load_vectors() -> dict[str, Any]:
    """The parsed vectors file (read once per test session)."""
    data: dict[str, Any] = json.loads(vectors_path().read_text())
    return data
