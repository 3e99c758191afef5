"""The in-memory etcd backend: the same semantics as etcd, in process, stdlib asyncio only.

:class:`MemoryEtcdServer` is one store (revisions, history, leases, watchers) that several
:class:`MemoryEtcd` clients can share, as processes share an etcd cluster. Leases expire on an
injectable :class:`~.types.Clock`, so tests drive time with :class:`~.types.ManualClock`.

Guarantees (the suite of the real backend, ``tests/clients/etcd/test_etcd_conformance.py``):
- every write is one revision; watches replay history from any revision not compacted
  [tests/clients/etcd/test_etcd_conformance.py::test_watch_from_revision_replays_history];
- a lease's keys vanish, with delete events, when its clock deadline passes
  [tests/clients/etcd/test_memory.py::test_lease_expiry_follows_the_manual_clock]
  [tests/clients/etcd/test_etcd_conformance.py::test_lease_expiry_deletes_keys_and_notifies_watch];
- a watch broken by :meth:`MemoryEtcd.simulate_disconnect` resumes with no gap
  [tests/clients/etcd/test_memory.py::test_watch_resumes_without_gap_after_disconnect];
- faults of a real cluster can be injected per client: an outage
  (:meth:`MemoryEtcd.simulate_outage`, every request fails as ``EtcdUnavailable`` while lease
  time goes on), failing requests (:meth:`MemoryEtcd.fail_requests`) and slow replies
  (:meth:`MemoryEtcd.delay_replies`, applied at once, answered late)
  [tests/clients/etcd/test_memory.py::test_outage_fails_requests_and_lets_leases_expire]
  [tests/clients/etcd/test_memory.py::test_failed_and_slow_requests].

Limits: no persistence; like etcd, a transaction may not put a key twice or inside a range it
deletes (``EtcdInvalidArgument``).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

from ._backend import (
    Compare,
    CompareTarget,
    DeleteOp,
    Op,
    PutOp,
    RawEvent,
    RawKV,
    RawWatchStream,
    TxnResult,
)
from .abc import AsyncEtcd
from .exceptions import (
    EtcdInvalidArgument,
    EtcdLeaseNotFound,
    EtcdUnavailable,
    EtcdWatchCompacted,
)
from .types import Clock, ConfigScopes, SystemClock, WatchEventType

__all__ = ("REQUEST_KINDS", "MemoryEtcd", "MemoryEtcdServer")

T = TypeVar("T")

REQUEST_KINDS: Final = frozenset(
    {"range", "txn", "watch", "grant", "keepalive", "revoke", "time_to_live"}
)
"""The kinds of request :meth:`MemoryEtcd.fail_requests` can target."""


@dataclass(slots=True)
class _Fault:
    error: Exception
    remaining: int
    kinds: frozenset[str]


@dataclass(slots=True)
class _Entry:
    value: str
    create_revision: int
    mod_revision: int
    version: int
    lease: int


@dataclass(slots=True)
class _Lease:
    ttl: int
    deadline: float
    keys: set[str] = field(default_factory=set)


class _Signal:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


_BROKEN = _Signal("broken")
_END = _Signal("end")
_FAILED = _Signal("failed")


class _MemoryWatchStream(RawWatchStream):
    def __init__(self, server: MemoryEtcdServer, client: MemoryEtcd, key: str, prefix: bool):
        self._server = server
        self._client = client
        self._key = key
        self._prefix = prefix
        self._queue: asyncio.Queue[RawEvent | _Signal] = asyncio.Queue()
        self._closed = False
        self._error: EtcdWatchCompacted | None = None

    def matches(self, key: str) -> bool:
        return key.startswith(self._key) if self._prefix else key == self._key

    def feed(self, event: RawEvent) -> None:
        if not self._closed and self.matches(event.key):
            self._queue.put_nowait(event)

    def signal(self, sig: _Signal) -> None:
        if not self._closed:
            self._queue.put_nowait(sig)

    def fail(self, error: EtcdWatchCompacted) -> None:
        self._error = error
        self._queue.put_nowait(_FAILED)

    async def __anext__(self) -> RawEvent:
        if self._closed:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _FAILED and self._error is not None:
            self._detach()
            raise self._error
        if item is _BROKEN:
            self._detach()
            raise EtcdUnavailable(f"watch({self._key!r}): stream broke (simulated disconnect)")
        if isinstance(item, _Signal):
            self._detach()
            raise StopAsyncIteration
        return item

    def _detach(self) -> None:
        self._closed = True
        self._server._streams.discard(self)
        self._client._streams.discard(self)

    async def aclose(self) -> None:
        if not self._closed:
            self._detach()
            self._queue.put_nowait(_END)


class MemoryEtcdServer:
    """One in-process etcd store, shared by the :class:`MemoryEtcd` clients given it."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._data: dict[str, _Entry] = {}
        self._keys: list[str] = []  # sorted, for prefix ranges
        self._revision = 1
        self._compacted = 0
        self._history: list[RawEvent] = []
        self._streams: set[_MemoryWatchStream] = set()
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(random.randrange(1 << 40, 1 << 60))
        self._lease_changed = asyncio.Event()

    @property
    def revision(self) -> int:
        """The current store revision."""
        return self._revision

    def compact(self, revision: int) -> None:
        """Drop history below ``revision``; watches from earlier revisions are then refused."""
        self._compacted = max(self._compacted, min(revision, self._revision))
        cut = 0
        while cut < len(self._history) and self._history[cut].revision < self._compacted:
            cut += 1
        del self._history[:cut]

    # -- reads -------------------------------------------------------------------------

    def _matching(self, key: str, prefix: bool) -> list[str]:
        if not prefix:
            return [key] if key in self._data else []
        start = bisect.bisect_left(self._keys, key)
        result = []
        for k in itertools.islice(self._keys, start, None):
            if not k.startswith(key):
                break
            result.append(k)
        return result

    def range(self, key: str, prefix: bool) -> tuple[list[RawKV], int]:
        """Keys equal to / starting with ``key``, sorted, and the revision."""
        self.expire_due()
        kvs = []
        for k in self._matching(key, prefix):
            e = self._data[k]
            kvs.append(RawKV(k, e.value, e.create_revision, e.mod_revision, e.lease))
        return kvs, self._revision

    # -- writes ------------------------------------------------------------------------

    def _check(self, cmp: Compare) -> bool:
        entry = self._data.get(cmp.key)
        match cmp.target:
            case CompareTarget.VALUE:
                return entry is not None and entry.value == str(cmp.operand)
            case CompareTarget.CREATE_REVISION:
                return (entry.create_revision if entry else 0) == int(cmp.operand)
            case CompareTarget.MOD_REVISION:
                return (entry.mod_revision if entry else 0) == int(cmp.operand)
            case CompareTarget.LEASE:
                return (entry.lease if entry else 0) == int(cmp.operand)
        return False  # pragma: no cover

    def _validate(self, ops: Sequence[Op]) -> None:
        puts: set[str] = set()
        deletes: list[DeleteOp] = []
        for op in ops:
            if isinstance(op, PutOp):
                if op.key in puts:
                    raise EtcdInvalidArgument(f"duplicate key given in txn request: {op.key!r}")
                puts.add(op.key)
                if op.lease and op.lease not in self._leases:
                    raise EtcdLeaseNotFound(f"requested lease not found: {op.lease:#x}")
            else:
                deletes.append(op)
        for d in deletes:
            for k in puts:
                if k.startswith(d.key) if d.prefix else k == d.key:
                    raise EtcdInvalidArgument(f"duplicate key given in txn request: {k!r}")

    def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
    ) -> TxnResult:
        """Run a transaction atomically."""
        self.expire_due()
        ok = all(self._check(c) for c in compares)
        ops = success if ok else failure
        self._validate(ops)
        deleted = self._apply(ops)
        return TxnResult(ok, self._revision, deleted)

    def _apply(self, ops: Sequence[Op]) -> int:
        rev = self._revision + 1
        events: list[RawEvent] = []
        deleted = 0
        for op in ops:
            if isinstance(op, PutOp):
                old = self._data.get(op.key)
                if old is None:
                    bisect.insort(self._keys, op.key)
                elif old.lease and old.lease != op.lease and old.lease in self._leases:
                    self._leases[old.lease].keys.discard(op.key)
                self._data[op.key] = _Entry(
                    op.value,
                    old.create_revision if old else rev,
                    rev,
                    old.version + 1 if old else 1,
                    op.lease,
                )
                if op.lease:
                    self._leases[op.lease].keys.add(op.key)
                events.append(RawEvent(op.key, WatchEventType.PUT, op.value, rev))
            else:
                for k in self._matching(op.key, op.prefix):
                    self._remove(k)
                    deleted += 1
                    events.append(RawEvent(k, WatchEventType.DELETE, "", rev))
        if events:
            self._commit(rev, events)
        return deleted

    def _remove(self, key: str) -> None:
        entry = self._data.pop(key)
        del self._keys[bisect.bisect_left(self._keys, key)]
        if entry.lease and entry.lease in self._leases:
            self._leases[entry.lease].keys.discard(key)

    def _commit(self, rev: int, events: list[RawEvent]) -> None:
        self._revision = rev
        self._history.extend(events)
        for stream in list(self._streams):
            for ev in events:
                stream.feed(ev)

    # -- watches -----------------------------------------------------------------------

    def open_stream(
        self, client: MemoryEtcd, key: str, prefix: bool, start_revision: int
    ) -> _MemoryWatchStream:
        """Register a stream and replay history from ``start_revision``."""
        self.expire_due()
        stream = _MemoryWatchStream(self, client, key, prefix)
        if start_revision < self._compacted:
            # etcd accepts the watch, then cancels it with the compaction revision.
            stream.fail(
                EtcdWatchCompacted(
                    f"watch({key!r}): revision {start_revision} compacted below {self._compacted}",
                    compact_revision=self._compacted,
                )
            )
            return stream
        start = bisect.bisect_left(self._history, start_revision, key=lambda e: e.revision)
        for ev in itertools.islice(self._history, start, None):
            stream.feed(ev)
        self._streams.add(stream)
        client._streams.add(stream)
        return stream

    # -- leases ------------------------------------------------------------------------

    def grant(self, ttl: int) -> int:
        """Grant a lease; returns its id."""
        self.expire_due()
        lease_id = next(self._lease_ids)
        self._leases[lease_id] = _Lease(ttl, self.clock.monotonic() + ttl)
        self._lease_changed.set()
        return lease_id

    def keepalive(self, lease_id: int) -> int:
        """Refresh a lease; its TTL, or 0 when it is gone."""
        self.expire_due()
        lease = self._leases.get(lease_id)
        if lease is None:
            return 0
        lease.deadline = self.clock.monotonic() + lease.ttl
        self._lease_changed.set()
        return lease.ttl

    def revoke(self, lease_id: int) -> None:
        """Revoke a lease and delete its keys in one revision."""
        self.expire_due()
        lease = self._leases.pop(lease_id, None)
        if lease is not None:
            self._drop_keys(lease)
            self._lease_changed.set()

    def time_to_live(self, lease_id: int) -> int:
        """Remaining whole seconds of a lease, or -1."""
        self.expire_due()
        lease = self._leases.get(lease_id)
        if lease is None:
            return -1
        return max(int(lease.deadline - self.clock.monotonic()), 0)

    def _drop_keys(self, lease: _Lease) -> None:
        keys = sorted(lease.keys)
        lease.keys.clear()
        if keys:
            self._apply([DeleteOp(k) for k in keys])

    def expire_due(self) -> None:
        """Expire every lease whose deadline has passed."""
        now = self.clock.monotonic()
        for lease_id, lease in list(self._leases.items()):
            if lease.deadline <= now:
                del self._leases[lease_id]
                self._drop_keys(lease)

    def next_deadline(self) -> float | None:
        """The earliest lease deadline, if any."""
        return min((lease.deadline for lease in self._leases.values()), default=None)


class MemoryEtcd(AsyncEtcd):
    """:class:`~.abc.AsyncEtcd` on a :class:`MemoryEtcdServer` (a private one by default)."""

    def __init__(
        self,
        namespace: str = "local",
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
        *,
        server: MemoryEtcdServer | None = None,
        clock: Clock | None = None,
        watch_reconnect_interval: float = 0.01,
        watch_reconnect_max_interval: float = 0.1,
    ) -> None:
        if server is None:
            server = MemoryEtcdServer(clock=clock)
        super().__init__(
            namespace,
            scope_prefix_map,
            clock=clock if clock is not None else server.clock,
            watch_reconnect_interval=watch_reconnect_interval,
            watch_reconnect_max_interval=watch_reconnect_max_interval,
        )
        self._server = server
        self._streams: set[_MemoryWatchStream] = set()
        self._outage = False
        self._faults: list[_Fault] = []
        self._reply_delay = 0.0

    @property
    def server(self) -> MemoryEtcdServer:
        """The store this client reads and writes."""
        return self._server

    def simulate_disconnect(self) -> int:
        """Break every watch stream of this client (they resume); returns how many."""
        streams = list(self._streams)
        for stream in streams:
            stream.signal(_BROKEN)
        return len(streams)

    @property
    def in_outage(self) -> bool:
        """Whether a simulated outage is in progress."""
        return self._outage

    def simulate_outage(self) -> None:
        """Lose the server until :meth:`end_outage`, as when every etcd member is unreachable.

        Every request of this client (reads, writes, watch (re)connects, lease grants,
        keep-alives, revokes) raises ``EtcdUnavailable`` without reaching the server, and its
        watch streams break (they resume, with no gap, once the outage ends). The server's
        lease time goes on, so leases this client cannot refresh expire with their keys.
        """
        self._outage = True
        self.simulate_disconnect()

    def end_outage(self) -> None:
        """End a simulated outage: requests reach the server again."""
        self._outage = False

    def fail_requests(
        self,
        error: Exception,
        *,
        count: int = 1,
        kinds: Collection[str] | None = None,
    ) -> None:
        """Make the next ``count`` requests of ``kinds`` (see :data:`REQUEST_KINDS`; every
        kind when None) raise ``error`` without reaching the server, as a refused, throttled or
        broken request would."""
        chosen = REQUEST_KINDS if kinds is None else frozenset(kinds)
        unknown = chosen - REQUEST_KINDS
        if unknown or count < 1:
            raise EtcdInvalidArgument(
                f"fail_requests(kinds={sorted(unknown) or sorted(chosen)!r}, count={count!r}): "
                f"kinds must be among {sorted(REQUEST_KINDS)} and count >= 1"
            )
        self._faults.append(_Fault(error, count, chosen))

    def clear_faults(self) -> None:
        """Drop the failures :meth:`fail_requests` has not used up yet."""
        self._faults.clear()

    def delay_replies(self, seconds: float) -> None:
        """Answer every later request ``seconds`` (real time) after the server applied it,
        as a loaded etcd or a failover does; a caller cancelled meanwhile does not see the
        result of a request that took effect. ``0`` answers at once again."""
        if seconds < 0:
            raise EtcdInvalidArgument(f"delay_replies(seconds={seconds!r}): must be >= 0")
        self._reply_delay = float(seconds)

    def _check_faults(self, kind: str) -> None:
        if self._outage:
            raise EtcdUnavailable(f"{kind}: etcd unavailable (simulated outage)")
        for fault in self._faults:
            if kind in fault.kinds:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                raise fault.error.with_traceback(None)

    async def _request(self, kind: str, apply: Callable[[], T]) -> T:
        self._check_faults(kind)
        result = apply()
        if self._reply_delay > 0:
            await asyncio.sleep(self._reply_delay)
        return result

    async def _backend_open(self) -> None:
        pass

    def _backend_started(self) -> None:
        self._tasks.spawn(self._sweep_loop(), "memory-lease-sweeper")

    async def _backend_close(self) -> None:
        for stream in list(self._streams):
            stream.signal(_END)

    async def _sweep_loop(self) -> None:
        server = self._server
        clock = server.clock
        while True:
            server._lease_changed.clear()
            server.expire_due()
            deadline = server.next_deadline()
            delay = None if deadline is None else deadline - clock.monotonic()
            await _sleep_or_event(clock, delay, server._lease_changed)

    def _endpoint_name(self) -> str:
        return "memory"

    async def _range(self, key: str, *, prefix: bool) -> tuple[list[RawKV], int]:
        return await self._request("range", lambda: self._server.range(key, prefix))

    async def _txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        return await self._request("txn", lambda: self._server.txn(compares, success, failure))

    async def _open_watch_stream(
        self, key: str, prefix: bool, start_revision: int
    ) -> RawWatchStream:
        self._check_open()
        self._check_faults("watch")
        return self._server.open_stream(self, key, prefix, start_revision)

    async def _lease_grant(self, ttl: int) -> tuple[int, int]:
        return await self._request("grant", lambda: (self._server.grant(ttl), ttl))

    async def _lease_keepalive_once(self, lease_id: int) -> int:
        return await self._request("keepalive", lambda: self._server.keepalive(lease_id))

    async def _lease_revoke(self, lease_id: int) -> None:
        await self._request("revoke", lambda: self._server.revoke(lease_id))

    async def _lease_time_to_live(self, lease_id: int) -> int:
        return await self._request("time_to_live", lambda: self._server.time_to_live(lease_id))


async def _sleep_or_event(clock: Clock, delay: float | None, event: asyncio.Event) -> None:
    """Return when ``delay`` clock seconds passed or ``event`` is set, whichever comes first."""
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(delay)) if delay is not None else None
    pending = {waiter} | ({sleeper} if sleeper is not None else set())
    try:
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in pending:
            task.cancel()
        # Our own helper tasks, cancelled just above; their CancelledError is expected.
        await asyncio.gather(*pending, return_exceptions=True)
