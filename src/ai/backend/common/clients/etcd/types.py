"""Value types of the etcd client: scopes, watch events, leases' clock, statistics, key quoting.

Key layout (upstream Backend.AI ``ai.backend.common.etcd``, kept so both read each other's data):
every key lives under ``/sorna/<namespace>/``; a scope adds its prefix (global ``""``, scaling
group ``sgroup/<name>``, node ``nodes/<kind>/<id>``, e.g. ``nodes/agents/i-01``); the components
of a nested dict written by ``put_prefix`` are URL-quoted with ``safe=""``.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import heapq
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypeAlias
from urllib.parse import quote as _quote
from urllib.parse import unquote

__all__ = (
    "Clock",
    "ConfigScopes",
    "EtcdStatistics",
    "ManualClock",
    "NestedStrDict",
    "NestedStrMapping",
    "SystemClock",
    "WatchEvent",
    "WatchEventType",
    "make_scope_prefix_map",
    "quote",
    "unquote",
)

NestedStrMapping: TypeAlias = "Mapping[str, str | NestedStrMapping]"
"""A nested mapping with string leaves, as written by ``put_prefix``."""

NestedStrDict: TypeAlias = "dict[str, str | NestedStrDict]"
"""A nested dict with string leaves, as returned by ``get_prefix``."""

quote = functools.partial(_quote, safe="")
"""Quote one key component as upstream does (``/`` becomes ``%2F``)."""


class ConfigScopes(enum.Enum):
    """Where a key lives; reads in ``MERGED`` see node over scaling group over global."""

    MERGED = 0
    GLOBAL = 1
    SGROUP = 2
    NODE = 3


def make_scope_prefix_map(
    *,
    scaling_group: str | None = None,
    node_kind: str | None = None,
    node_id: str | None = None,
) -> dict[ConfigScopes, str]:
    """Upstream's scope prefixes: ``""``, ``sgroup/<name>`` and ``nodes/<kind>/<id>``."""
    result = {ConfigScopes.GLOBAL: ""}
    if scaling_group is not None:
        result[ConfigScopes.SGROUP] = f"sgroup/{scaling_group}"
    if node_id is not None:
        kind = f"{node_kind}/" if node_kind else ""
        result[ConfigScopes.NODE] = f"nodes/{kind}{node_id}"
    return result


class WatchEventType(enum.Enum):
    """What happened to a watched key."""

    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change of a watched key; ``key`` is relative to the scope prefix, as upstream."""

    key: str
    event: WatchEventType
    value: str
    revision: int


@dataclass(frozen=True, slots=True)
class EtcdStatistics:
    """A snapshot of a client's state, for tests and metrics."""

    endpoint: str
    """The endpoint requests currently go to (``host:port``, or ``memory``)."""
    failovers: int
    """How many times the client switched to another endpoint."""
    watches: int
    """Watches currently open."""
    watch_reconnects: int
    """Times a watch stream broke and was resumed."""
    leases_kept_alive: int
    """Leases whose keep-alive loop is running."""
    leases_lost: int
    """Leases that expired although they were kept alive."""


class Clock(Protocol):
    """The time source of lease keep-alive and of the in-memory backend's lease expiry."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def sleep(self, delay: float) -> None:
        """Return after ``delay`` seconds of this clock have passed."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        """Seconds from ``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, delay: float) -> None:
        """``asyncio.sleep(delay)``."""
        await asyncio.sleep(max(delay, 0.0))


class ManualClock:
    """A clock that moves only when :meth:`advance` is called; sleepers wake when their time comes.

    Limits: one event loop; ``advance`` wakes sleepers but does not wait for them to run.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        """The current manual time."""
        return self._now

    async def sleep(self, delay: float) -> None:
        """Wait until :meth:`advance` has moved the clock ``delay`` seconds on."""
        if delay <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + delay, next(self._seq), fut))
        await fut

    def advance(self, seconds: float) -> None:
        """Move the clock on and wake every sleeper whose deadline has passed."""
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards (seconds={seconds!r})")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)
