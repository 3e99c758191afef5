"""Interfaces of the auth package: where keypairs come from and where seen signatures go."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import timedelta

from .types import Keypair

__all__ = ("AbstractKeypairStore", "AbstractNonceStore")


class AbstractKeypairStore(ABC):
    """Looks up keypairs by access key for the HMAC and JWT verifiers.

    Promises: ``get`` returns exactly what the last ``put`` stored for that access key (or
    ``None`` when none, or after ``delete``); backend failures raise
    :class:`~ai.backend.common.auth.exceptions.AuthBackendUnavailable`, never a native error.
    An access key that is not well-formed (``keys.is_wellformed_access_key``: 1-128 visible
    ASCII characters) is refused before the backend is asked: ``get`` and ``delete`` raise
    ``MalformedCredentials``, ``put`` raises ``InvalidArgument``.
    """

    @abstractmethod
    async def get(self, access_key: str) -> Keypair | None:
        """The keypair of ``access_key``, active or not; ``None`` when there is none."""

    @abstractmethod
    async def put(self, keypair: Keypair) -> None:
        """Store (or replace) a keypair."""

    @abstractmethod
    async def delete(self, access_key: str) -> bool:
        """Remove a keypair; ``True`` if it existed."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to close by default
        """Release what this store opened itself (idempotent; a client handed in stays open)."""


class AbstractNonceStore(ABC):
    """Remembers values (request signatures) for a while, to reject their replay.

    Promise: within ``ttl`` of the first ``remember(key)`` that returned ``True``, every other
    ``remember(key)`` (from any caller sharing the store) returns ``False``; exactly one of
    several concurrent first calls wins. Backend failures raise ``AuthBackendUnavailable``.
    """

    @abstractmethod
    async def remember(self, key: str, ttl: timedelta) -> bool:
        """Record ``key`` for ``ttl``; ``True`` if it was not already recorded (first sight)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to close by default
        """Release what this store opened itself (idempotent; a client handed in stays open)."""
