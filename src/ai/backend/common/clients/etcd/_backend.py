"""The small set of primitives each backend implements; everything else lives in the base class.

Keys here are full keys (namespace and scope included); values are text (UTF-8).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .types import WatchEventType

__all__ = (
    "Compare",
    "CompareTarget",
    "DeleteOp",
    "Op",
    "PutOp",
    "RawEvent",
    "RawKV",
    "RawWatchStream",
    "TxnResult",
)


@dataclass(frozen=True, slots=True)
class RawKV:
    """One stored key as a backend returns it."""

    key: str
    value: str
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One change seen by a backend watch stream (full key)."""

    key: str
    type: WatchEventType
    value: str
    revision: int


class CompareTarget(enum.Enum):
    """What a transaction compare looks at (always with ``==``)."""

    VALUE = "value"
    CREATE_REVISION = "create"
    MOD_REVISION = "mod"
    LEASE = "lease"


@dataclass(frozen=True, slots=True)
class Compare:
    """``target(key) == operand``; a missing key has create/mod revision 0 and no value."""

    key: str
    target: CompareTarget
    operand: str | int


@dataclass(frozen=True, slots=True)
class PutOp:
    """Put ``key = value`` (attached to ``lease`` unless 0)."""

    key: str
    value: str
    lease: int = 0


@dataclass(frozen=True, slots=True)
class DeleteOp:
    """Delete ``key`` (every key starting with it when ``prefix``)."""

    key: str
    prefix: bool = False


Op = PutOp | DeleteOp


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Whether the compares held, and the store revision after the transaction."""

    succeeded: bool
    revision: int
    deleted: int = 0


class RawWatchStream(AsyncIterator[RawEvent]):
    """One backend watch stream; iteration raises ``EtcdUnavailable`` when the stream breaks
    and stops when the client closes."""

    async def aclose(self) -> None:
        """Cancel the stream; idempotent."""
