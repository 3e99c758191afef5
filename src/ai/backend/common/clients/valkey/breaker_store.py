"""A Redis-backed :class:`~ai.backend.common.resilience.BreakerStateStore`.

Circuit breakers of the same name in several processes share their *open* state through one
key per breaker, ``<prefix><name>``, holding the tripping process's owner tag with a time to
live of the open duration: ``trip`` is ``SET key owner PX ceil(ms)``, ``clear`` is ``DEL`` and
``open_remaining`` is ``PTTL``. Durations, not timestamps, cross the wire, so the processes need
no common clock (the server's clock runs the TTL).

Its calls bypass the client's hook and use their own short time limit (0.5 s by default): the
breaker may guard this very Redis, so the store must still write the open mark while that
breaker is open, and must not keep a caller waiting on a server that is down.

Guarantees:
- passes the BreakerStateStore conformance suite
  [tests/resilience/test_store_conformance.py::test_trip_expires]
  [tests/resilience/test_store_conformance.py::test_trip_replaces];
- a breaker that opens in one process makes its peer in another fail fast
  [tests/clients/valkey/test_breaker_store.py::test_two_breakers_share_the_open_state];
- the mark expires on the server after the open duration
  [tests/clients/valkey/test_breaker_store.py::test_mark_expires_on_the_server];
- errors are ``ValkeyError`` s naming the key, within the store's own time limit, and reach
  the server even when the client's hook refuses every call
  [tests/clients/valkey/test_breaker_store.py::test_errors_name_the_key_within_own_timeout]
  [tests/clients/valkey/test_breaker_store.py::test_store_bypasses_the_hook].

Limits: durations are rounded up to whole milliseconds; a key without a TTL (written by someone
else) reads as not open [tests/clients/valkey/test_breaker_store.py::test_key_layout].
"""

from __future__ import annotations

import math
import os
import socket
from typing import Any, Final

from ai.backend.common.resilience import BreakerStateStore

from .client import ValkeyClient
from .exceptions import ValkeyConfigError, ValkeyError

__all__ = ("DEFAULT_BREAKER_PREFIX", "ValkeyBreakerStateStore")

DEFAULT_BREAKER_PREFIX: Final = "backendai:resilience:breaker:"
"""Key prefix of the open marks (one key per breaker name)."""


class ValkeyBreakerStateStore(BreakerStateStore):
    """Shares circuit breakers' open state through ``client`` (which the caller opens and
    closes); ``owner`` tags the marks this process writes (host:pid by default)."""

    def __init__(
        self,
        client: ValkeyClient,
        *,
        prefix: str = DEFAULT_BREAKER_PREFIX,
        request_timeout: float = 0.5,
        owner: str | None = None,
    ) -> None:
        if not request_timeout > 0:
            raise ValkeyConfigError(f"`request_timeout` must be > 0, got {request_timeout}")
        self._client = client
        self._prefix = prefix
        self._timeout = request_timeout
        self._owner = owner if owner is not None else f"{socket.gethostname()}:{os.getpid()}"

    @property
    def prefix(self) -> str:
        """Key prefix of the marks."""
        return self._prefix

    def key(self, name: str) -> str:
        """The key holding breaker ``name``'s open mark."""
        return self._prefix + name

    async def trip(self, name: str, open_for: float) -> None:
        """``SET <prefix><name> <owner> PX ceil(open_for ms)`` (``DEL`` when ``open_for <= 0``).

        Raises ``ValkeyConfigError`` for a non-finite duration and a ``ValkeyError`` naming the
        key when the server fails or does not answer within the store's time limit; cancelling
        may or may not leave the mark written.
        """
        if not math.isfinite(open_for):
            raise ValkeyConfigError(f"breaker {name!r}: `open_for` must be finite, got {open_for}")
        key = self.key(name)
        millis = math.ceil(open_for * 1000)
        if millis <= 0:
            await self._execute("trip", key, "DEL", key)
        else:
            await self._execute("trip", key, "SET", key, self._owner, "PX", millis)

    async def clear(self, name: str) -> None:
        """``DEL <prefix><name>``; errors as in :meth:`trip`."""
        key = self.key(name)
        await self._execute("clear", key, "DEL", key)

    async def open_remaining(self, name: str) -> float | None:
        """``PTTL <prefix><name>`` in seconds, or ``None`` when there is no mark (or it has
        no TTL); errors as in :meth:`trip`."""
        key = self.key(name)
        millis = int(await self._execute("open_remaining", key, "PTTL", key))
        return millis / 1000 if millis > 0 else None

    async def _execute(self, what: str, key: str, *command: Any) -> Any:
        operation = str(command[0]).lower()
        try:
            # No hook: a breaker guarding this Redis must still reach it while open.
            return await self._client._call(
                operation,
                lambda redis: redis.execute_command(*command),
                self._timeout,
                gated=True,
                hooked=False,
            )
        except ValkeyError as exc:
            raise type(exc)(
                f"breaker state store: {what} of {key!r} failed: {exc}", data=exc.data
            ) from exc
