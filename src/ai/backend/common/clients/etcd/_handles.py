"""Handles the etcd client gives out: a lease, a watch, a flat snapshot (private module;
the public names are re-exported by :mod:`ai.backend.common.clients.etcd`)."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ._backend import RawWatchStream
from .exceptions import EtcdClosed, EtcdInvalidArgument, EtcdTimeout, EtcdUnavailable
from .types import WatchEvent

if TYPE_CHECKING:
    from .abc import AsyncEtcd

__all__ = ("EtcdLease", "EtcdWatch", "FlatSnapshot")


class FlatSnapshot:
    """Keys under a prefix (relative to the scope prefix, as stored) and the revision read at."""

    __slots__ = ("items", "revision")

    def __init__(self, items: dict[str, str], revision: int) -> None:
        self.items = items
        self.revision = revision

    def __repr__(self) -> str:
        return f"FlatSnapshot({len(self.items)} keys, revision={self.revision})"


class EtcdLease:
    """A granted lease; while its client keeps it alive it does not expire.

    ``lost`` becomes true when etcd reports the lease gone (expired, revoked elsewhere) or when
    no keep-alive succeeded for a whole TTL; every key attached to it is then gone too.
    """

    __slots__ = ("_lost", "_owner", "_stopped", "id", "keepalive", "ttl")

    def __init__(self, owner: AsyncEtcd, lease_id: int, ttl: int, keepalive: bool) -> None:
        self.id = lease_id
        self.ttl = ttl
        self.keepalive = keepalive
        self._owner = owner
        self._lost = asyncio.Event()
        self._stopped = False

    def __repr__(self) -> str:
        state = "lost" if self.lost else ("kept alive" if self.keepalive else "alive")
        return f"EtcdLease(id={self.id:#x}, ttl={self.ttl}, {state})"

    @property
    def lost(self) -> bool:
        """Whether the lease is known to be gone."""
        return self._lost.is_set()

    async def wait_lost(self) -> None:
        """Return once the lease is lost (never, for a lease that is revoked by its owner)."""
        await self._lost.wait()

    def _mark_lost(self) -> None:
        self._lost.set()


class EtcdWatch:
    """An open watch on a key or a prefix: ``async with`` it, then ``async for`` its events.

    After ``__aenter__`` returns, the watch is registered: every change from then on (or from
    ``start_revision``) is delivered, in revision order, exactly once. When the stream breaks
    (member killed, connection lost) it reconnects with backoff, to another endpoint if needed,
    and resumes at the revision after the last event delivered, so no event is missed or
    repeated. Iteration stops when the watch or its client is closed; it raises
    ``EtcdWatchCompacted`` when the revision to resume from was compacted away.
    """

    def __init__(
        self,
        owner: AsyncEtcd,
        raw_key: str,
        *,
        prefix: bool,
        strip: int,
        start_revision: int | None,
    ) -> None:
        self._owner = owner
        self._raw_key = raw_key
        self._prefix = prefix
        self._strip = strip
        self._next_revision = start_revision
        self._stream: RawWatchStream | None = None
        self._closed = False
        self._entered = False

    @property
    def next_revision(self) -> int | None:
        """The first revision not delivered yet (where a reconnect resumes)."""
        return self._next_revision

    async def __aenter__(self) -> Self:
        if self._entered:
            raise EtcdInvalidArgument(f"watch on {self._raw_key!r} was already entered")
        self._entered = True
        self._owner._check_open()
        if self._next_revision is None:
            self._next_revision = (await self._owner.current_revision()) + 1
        self._stream = await self._owner._open_watch_stream(
            self._raw_key, self._prefix, self._next_revision
        )
        self._owner._watch_opened(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the watch; idempotent."""
        if self._closed:
            return
        self._closed = True
        stream, self._stream = self._stream, None
        if self._entered:
            self._owner._watch_closed(self)
        if stream is not None:
            await stream.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> WatchEvent:
        """The next event; cancelling leaves the watch usable (no event is lost)."""
        owner = self._owner
        attempt = 0
        while True:
            if self._closed or owner._closing:
                raise StopAsyncIteration
            if self._stream is None:
                if attempt:
                    await asyncio.sleep(owner._watch_backoff(attempt))
                    if self._closed or owner._closing:
                        raise StopAsyncIteration
                attempt += 1
                try:
                    assert self._next_revision is not None
                    self._stream = await owner._open_watch_stream(
                        self._raw_key, self._prefix, self._next_revision
                    )
                except (EtcdUnavailable, EtcdTimeout):
                    continue
                except EtcdClosed:
                    raise StopAsyncIteration from None
                owner._watch_reconnects += 1
            try:
                raw = await self._stream.__anext__()
            except StopAsyncIteration:
                # The stream ended: the client is closing, or the server dropped it.
                await self._drop_stream()
                continue
            except (EtcdUnavailable, EtcdTimeout):
                await self._drop_stream()
                continue
            attempt = 0
            self._next_revision = raw.revision + 1
            return WatchEvent(raw.key[self._strip :], raw.type, raw.value, raw.revision)

    async def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()
