"""Where circuit breakers of several processes share their open state.

A :class:`BreakerStateStore` holds, per breaker name, whether the breaker is open and for how
much longer. Durations, not timestamps, cross the interface, so processes need no common clock
(a Redis store keeps the open mark as a key with a time to live). Only the *open* state is
shared: a process whose breaker is closed and that reads an open mark opens its own breaker for
the remaining time; each process then probes and closes on its own.

This layer holds the interface and an in-memory store (one process, several breakers, tests);
the Redis-backed store is :class:`ai.backend.common.clients.valkey.ValkeyBreakerStateStore`
(layer 4), and the same conformance suite runs against both.

Guarantees:
- ``open_remaining()`` is ``None`` after ``clear()`` and after the ``trip()`` duration has
  elapsed [tests/resilience/test_store_conformance.py::test_trip_expires];
- a later ``trip()`` replaces the earlier duration
  [tests/resilience/test_store_conformance.py::test_trip_replaces].
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from .clock import SYSTEM_CLOCK, Clock

__all__ = ("BreakerStateStore", "MemoryBreakerStateStore")


class BreakerStateStore(ABC):
    """Shares breakers' open state between processes; every method may block (I/O)."""

    @abstractmethod
    async def trip(self, name: str, open_for: float) -> None:
        """Mark breaker ``name`` open for ``open_for`` seconds from now (replacing any mark).

        Cancelling it may or may not leave the mark written; either state is valid.
        """

    @abstractmethod
    async def clear(self, name: str) -> None:
        """Remove the open mark of breaker ``name`` (a no-op when there is none)."""

    @abstractmethod
    async def open_remaining(self, name: str) -> float | None:
        """Seconds breaker ``name`` stays open, or ``None`` when it is not marked open."""


class MemoryBreakerStateStore(BreakerStateStore):
    """A store inside one process: breakers built with the same name and store share state."""

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}

    async def trip(self, name: str, open_for: float) -> None:
        """Mark ``name`` open for ``open_for`` seconds."""
        self._until[name] = self._clock.monotonic() + max(0.0, open_for)

    async def clear(self, name: str) -> None:
        """Remove ``name``'s mark."""
        self._until.pop(name, None)

    async def open_remaining(self, name: str) -> float | None:
        """Remaining open seconds of ``name``, if marked and not expired."""
        until = self._until.get(name)
        if until is None:
            return None
        remaining = until - self._clock.monotonic()
        if remaining <= 0:
            del self._until[name]
            return None
        return remaining
