"""The etcd client interface, :class:`AsyncEtcd`, with the logic every backend shares.

Backends (:class:`~.client.EtcdClient` on etcd's gRPC API through ``aetcd``,
:class:`~.memory.MemoryEtcd` in process) implement a handful of primitives (range, transaction,
watch stream, lease grant / keep-alive / revoke); namespacing, scopes, merged reads, flattening,
compare-and-swap, watch resumption and lease keep-alive are written once here, so both backends
behave the same and pass one conformance suite,
``tests/clients/etcd/test_etcd_conformance.py``.
"""

from __future__ import annotations

import abc
import asyncio
import random
from collections.abc import Iterable, Mapping, Sequence

from ...aio import AsyncResource, TaskOwner, TaskOwnerStopped
from ._backend import (
    Compare,
    CompareTarget,
    DeleteOp,
    Op,
    PutOp,
    RawKV,
    RawWatchStream,
    TxnResult,
)
from ._handles import EtcdLease, EtcdWatch, FlatSnapshot
from ._keys import deep_merge_into, flatten, slash, unflatten
from .exceptions import (
    EtcdClosed,
    EtcdCompareFailed,
    EtcdError,
    EtcdInvalidArgument,
    EtcdLeaseNotFound,
)
from .types import (
    Clock,
    ConfigScopes,
    EtcdStatistics,
    NestedStrDict,
    SystemClock,
    WatchEventType,
)

__all__ = (
    "AsyncEtcd",
    "EtcdLease",
    "EtcdWatch",
    "FlatSnapshot",
)


class AsyncEtcd(AsyncResource):
    """An etcd v3 client with upstream Backend.AI's key layout and semantics.

    Keys are namespaced under ``/sorna/<namespace>/`` and a scope prefix
    (:func:`~.types.make_scope_prefix_map`). Writes go to one scope (``GLOBAL`` by default);
    reads default to ``MERGED``: node over scaling group over global, nested dicts merged key by
    key. Keys given by callers are used as they are (quote components yourself with
    :func:`~.types.quote`); dict keys of ``put_prefix`` are quoted for you and unquoted again
    by ``get_prefix``.

    Every call maps backend failures to :class:`~.exceptions.EtcdError` subclasses: no etcd
    endpoint answering within the failover deadline is ``EtcdUnavailable``. Cancelling a write
    leaves it applied or not, never half applied (each write is one transaction).

    ``async with`` opens the client; ``aclose()`` stops lease keep-alives (the leases then
    expire by their TTL unless revoked), ends open watches and is idempotent.
    """

    def __init__(
        self,
        namespace: str,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
        *,
        clock: Clock | None = None,
        watch_reconnect_interval: float = 0.1,
        watch_reconnect_max_interval: float = 2.0,
    ) -> None:
        if not namespace or not isinstance(namespace, str):
            raise EtcdInvalidArgument(f"etcd namespace must be a non-empty string: {namespace!r}")
        prefixes = dict(scope_prefix_map or {ConfigScopes.GLOBAL: ""})
        prefixes.setdefault(ConfigScopes.GLOBAL, "")
        if ConfigScopes.MERGED in prefixes:
            raise EtcdInvalidArgument("scope_prefix_map cannot map ConfigScopes.MERGED")
        for scope, value in prefixes.items():
            if not isinstance(value, str):
                raise EtcdInvalidArgument(
                    f"scope prefix of {scope.name} is not a string: {value!r}"
                )
        self._ns = namespace
        self._scope_prefix_map = prefixes
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._watch_reconnect_interval = watch_reconnect_interval
        self._watch_reconnect_max_interval = watch_reconnect_max_interval
        self._opened = False
        self._closing = False
        self._tasks = TaskOwner(f"etcd-{namespace}")
        self._keepalive_tasks: dict[int, asyncio.Task[None]] = {}
        self._leases: dict[int, EtcdLease] = {}
        self._watches: set[EtcdWatch] = set()
        self._watch_reconnects = 0
        self._leases_lost = 0

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and start the background task group; idempotent."""
        if self._opened:
            if self._closing:
                raise EtcdClosed(f"etcd client of namespace {self._ns!r} was closed")
            return
        self._opened = True
        await self._backend_open()
        await self._tasks.start()
        self._backend_started()

    async def aclose(self) -> None:
        """Stop keep-alives, end watches, release connections; idempotent.

        Leases are not revoked: their keys live on until the TTL ends.
        """
        if not self._opened or self._closing:
            self._closing = True
            return
        self._closing = True
        try:
            await self._tasks.stop()  # keep-alives and backend loops
        finally:
            for watch in list(self._watches):
                await watch.aclose()
            await self._backend_close()

    def _check_open(self) -> None:
        if not self._opened:
            raise EtcdClosed(f"etcd client of namespace {self._ns!r} is not open")
        if self._closing:
            raise EtcdClosed(f"etcd client of namespace {self._ns!r} is closed")

    # -- backend primitives ------------------------------------------------------------

    @abc.abstractmethod
    async def _backend_open(self) -> None:
        """Prepare connections (no task may be left running on failure)."""

    def _backend_started(self) -> None:
        """Start backend background loops with ``self._tasks.spawn`` (cancelled on close)."""

    @abc.abstractmethod
    async def _backend_close(self) -> None:
        """Release connections; ends backend watch streams."""

    @abc.abstractmethod
    async def _range(self, key: str, *, prefix: bool) -> tuple[list[RawKV], int]:
        """Keys equal to (or starting with) ``key``, sorted, and the store revision."""

    @abc.abstractmethod
    async def _txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """Run one transaction."""

    @abc.abstractmethod
    async def _open_watch_stream(
        self, key: str, prefix: bool, start_revision: int
    ) -> RawWatchStream:
        """Open one watch stream from ``start_revision`` (registered when this returns)."""

    @abc.abstractmethod
    async def _lease_grant(self, ttl: int) -> tuple[int, int]:
        """Grant a lease; returns its id and the TTL etcd granted."""

    @abc.abstractmethod
    async def _lease_keepalive_once(self, lease_id: int) -> int:
        """Refresh a lease once (one attempt); the remaining TTL, <= 0 when it is gone."""

    @abc.abstractmethod
    async def _lease_revoke(self, lease_id: int) -> None:
        """Revoke a lease; a lease that is already gone is not an error."""

    @abc.abstractmethod
    async def _lease_time_to_live(self, lease_id: int) -> int:
        """Remaining TTL in seconds, or -1 when the lease does not exist."""

    @abc.abstractmethod
    def _endpoint_name(self) -> str:
        """The endpoint currently used, for statistics."""

    def _failover_count(self) -> int:
        return 0

    # -- keys and scopes ---------------------------------------------------------------

    @property
    def namespace(self) -> str:
        """The namespace every key lives under (``/sorna/<namespace>/``)."""
        return self._ns

    @property
    def scope_prefix_map(self) -> Mapping[ConfigScopes, str]:
        """The scope prefixes this client was created with."""
        return dict(self._scope_prefix_map)

    def _mangle(self, key: str) -> str:
        return f"/sorna/{self._ns}/{key.removeprefix('/')}"

    def _scope_prefix(
        self, scope: ConfigScopes, override: Mapping[ConfigScopes, str] | None
    ) -> str:
        if scope is ConfigScopes.MERGED:
            raise EtcdInvalidArgument("writes and watches need one scope, not ConfigScopes.MERGED")
        if override and scope in override:
            return override[scope]
        try:
            return self._scope_prefix_map[scope]
        except KeyError:
            raise EtcdInvalidArgument(
                f"scope {scope.name} has no prefix in this client's scope_prefix_map"
            ) from None

    def _read_prefixes(
        self, scope: ConfigScopes, override: Mapping[ConfigScopes, str] | None
    ) -> list[str]:
        """Scope prefixes to read, highest priority first."""
        merged = {**self._scope_prefix_map, **(override or {})}
        order: tuple[ConfigScopes, ...]
        if scope in (ConfigScopes.MERGED, ConfigScopes.NODE):
            order = (ConfigScopes.NODE, ConfigScopes.SGROUP, ConfigScopes.GLOBAL)
        elif scope is ConfigScopes.SGROUP:
            order = (ConfigScopes.SGROUP, ConfigScopes.GLOBAL)
        else:
            order = (ConfigScopes.GLOBAL,)
        return [merged[s] for s in order if s in merged]

    def _full_key(
        self,
        key: str,
        scope: ConfigScopes,
        scope_prefix_map: Mapping[ConfigScopes, str] | None,
    ) -> str:
        return self._mangle(slash(self._scope_prefix(scope, scope_prefix_map)) + key)

    # -- writes ------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        val: str,
        *,
        scope: ConfigScopes = ConfigScopes.GLOBAL,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
        lease: EtcdLease | None = None,
    ) -> int:
        """Put one key (quoted by the caller as needed); returns the new revision."""
        self._check_open()
        full = self._full_key(key, scope, scope_prefix_map)
        result = await self._txn((), [PutOp(full, str(val), _lease_id(lease))])
        return result.revision

    async def put_prefix(
        self,
        key: str,
        dict_obj: Mapping[str, object],
        *,
        scope: ConfigScopes = ConfigScopes.GLOBAL,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
        lease: EtcdLease | None = None,
        replace: bool = False,
    ) -> int:
        """Put a nested dict under ``key`` in one transaction (keys quoted, leaves ``str()``ed).

        With ``replace`` the keys under ``key`` not in ``dict_obj`` are deleted in the same
        transaction. Returns the new revision.
        """
        self._check_open()
        flat = flatten(key, dict_obj)
        return await self.put_dict(
            flat,
            scope=scope,
            scope_prefix_map=scope_prefix_map,
            lease=lease,
            _replace_prefix=key if replace else None,
        )

    async def put_dict(
        self,
        flattened_dict_obj: Mapping[str, str],
        *,
        scope: ConfigScopes = ConfigScopes.GLOBAL,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
        lease: EtcdLease | None = None,
        delete: Iterable[str] = (),
        _replace_prefix: str | None = None,
    ) -> int:
        """Put already flattened (and quoted) keys, and delete the keys in ``delete``, in one
        transaction; returns the revision."""
        self._check_open()
        prefix = slash(self._scope_prefix(scope, scope_prefix_map))
        lease_id = _lease_id(lease)
        ops: list[Op] = [
            PutOp(self._mangle(prefix + k), str(v), lease_id) for k, v in flattened_dict_obj.items()
        ]
        ops.extend(
            DeleteOp(self._mangle(prefix + k)) for k in delete if k not in flattened_dict_obj
        )
        if _replace_prefix is not None:
            # etcd refuses a put inside a range deleted by the same transaction: delete only
            # the keys that the new dict does not write again.
            base = self._mangle(prefix + _replace_prefix)
            kvs, _ = await self._range(base, prefix=True)
            keep = {op.key for op in ops}
            ops.extend(
                DeleteOp(kv.key)
                for kv in kvs
                if kv.key not in keep and (kv.key == base or kv.key.startswith(base + "/"))
            )
        if not ops:
            return await self.current_revision()
        result = await self._txn((), ops)
        return result.revision

    async def put_if_absent(
        self,
        key: str,
        val: str,
        *,
        scope: ConfigScopes = ConfigScopes.GLOBAL,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
        lease: EtcdLease | None = None,
    ) -> bool:
        """Create ``key`` only if it does not exist; whether it was created."""
        self._check_open()
        full = self._full_key(key, scope, scope_prefix_map)
        result = await self._txn(
            [Compare(full, CompareTarget.CREATE_REVISION, 0)],
            [PutOp(full, str(val), _lease_id(lease))],
        )
        return result.succeeded

    async def replace(
        self,
        key: str,
        initial_val: str,
        new_val: str,
        *,
        scope: ConfigScopes = ConfigScopes.GLOBAL,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
        lease: EtcdLease | None = None,
        raise_on_conflict: bool = False,
    ) -> bool:
        """Compare-and-swap: set ``new_val`` only if the value is ``initial_val``.

        Returns whether it was swapped; with ``raise_on_conflict`` a mismatch raises
        ``EtcdCompareFailed`` instead. A missing key never matches.
        """
        self._check_open()
        full = self._full_key(key, scope, scope_prefix_map)
        result = await self._txn(
            [Compare(full, CompareTarget.VALUE, str(initial_val))],
            [PutOp(full, str(new_val), _lease_id(lease))],
        )
        if not result.succeeded and raise_on_conflict:
            raise EtcdCompareFailed(
                f"replace({key!r}): the value is not {initial_val!r}",
                data={"key": key, "expected": initial_val},
            )
        return result.succeeded

    async def delete(
        self,
        key: str,
        *,
        scope: ConfigScopes = ConfigScopes.GLOBAL,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
    ) -> int:
        """Delete one key; returns how many keys were deleted (0 or 1)."""
        self._check_open()
        full = self._full_key(key, scope, scope_prefix_map)
        return (await self._txn((), [DeleteOp(full)])).deleted

    async def delete_multi(
        self,
        keys: Iterable[str],
        *,
        scope: ConfigScopes = ConfigScopes.GLOBAL,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
    ) -> int:
        """Delete several keys in one transaction; returns how many existed."""
        self._check_open()
        ops: list[Op] = [DeleteOp(self._full_key(k, scope, scope_prefix_map)) for k in keys]
        if not ops:
            return 0
        return (await self._txn((), ops)).deleted

    async def delete_prefix(
        self,
        key_prefix: str,
        *,
        scope: ConfigScopes = ConfigScopes.GLOBAL,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
    ) -> int:
        """Delete every key starting with ``key_prefix``; returns how many."""
        self._check_open()
        full = self._full_key(key_prefix, scope, scope_prefix_map)
        return (await self._txn((), [DeleteOp(full, prefix=True)])).deleted

    async def delete_if_value(
        self,
        key: str,
        val: str,
        *,
        scope: ConfigScopes = ConfigScopes.GLOBAL,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
    ) -> bool:
        """Delete ``key`` only if its value is ``val``; whether it was deleted."""
        self._check_open()
        full = self._full_key(key, scope, scope_prefix_map)
        result = await self._txn([Compare(full, CompareTarget.VALUE, str(val))], [DeleteOp(full)])
        return result.succeeded

    # -- reads -------------------------------------------------------------------------

    async def get(
        self,
        key: str,
        *,
        scope: ConfigScopes = ConfigScopes.MERGED,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
    ) -> str | None:
        """The value of ``key`` in the first scope that has it, or ``None``."""
        self._check_open()
        for prefix in self._read_prefixes(scope, scope_prefix_map):
            kvs, _ = await self._range(self._mangle(slash(prefix) + key), prefix=False)
            if kvs:
                return kvs[0].value
        return None

    async def get_prefix(
        self,
        key_prefix: str,
        *,
        scope: ConfigScopes = ConfigScopes.MERGED,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
    ) -> NestedStrDict:
        """Every key under ``key_prefix`` as a nested dict (keys unquoted), scopes merged.

        A key that has both a value and children maps to ``{"": value, ...children}``.
        Missing prefix gives ``{}``. Unlike upstream, ``get_prefix("a/b")`` reads the subtree
        ``a/b`` and ``a/b/...`` only, not a sibling such as ``a/bc``.
        """
        self._check_open()
        result: NestedStrDict = {}
        for prefix in reversed(self._read_prefixes(scope, scope_prefix_map)):
            base = slash(prefix) + key_prefix
            kvs, _ = await self._range(self._mangle(base), prefix=True)
            strip = len(self._mangle(""))
            pairs = ((kv.key[strip:], kv.value) for kv in kvs)
            layer = unflatten(base, (p for p in pairs if _in_subtree(p[0], base)))
            deep_merge_into(result, layer)
        return result

    get_prefix_dict = get_prefix

    async def get_prefix_flat(
        self,
        key_prefix: str,
        *,
        scope: ConfigScopes = ConfigScopes.GLOBAL,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
    ) -> FlatSnapshot:
        """Keys under ``key_prefix`` of one scope, flat (relative to the scope prefix), with
        the revision they were read at: watch from ``revision + 1`` to miss nothing."""
        self._check_open()
        scope_part = slash(self._scope_prefix(scope, scope_prefix_map))
        kvs, revision = await self._range(self._mangle(scope_part + key_prefix), prefix=True)
        strip = len(self._mangle(scope_part))
        return FlatSnapshot({kv.key[strip:]: kv.value for kv in kvs}, revision)

    async def current_revision(self) -> int:
        """The store's current revision."""
        self._check_open()
        _, revision = await self._range(self._mangle("\x00"), prefix=False)
        return revision

    # -- watches -----------------------------------------------------------------------

    def watch(
        self,
        key: str,
        *,
        scope: ConfigScopes = ConfigScopes.GLOBAL,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
        start_revision: int | None = None,
    ) -> EtcdWatch:
        """A watch on one key; ``async with`` it to register, then iterate (see EtcdWatch)."""
        return self._make_watch(key, False, scope, scope_prefix_map, start_revision)

    def watch_prefix(
        self,
        key_prefix: str,
        *,
        scope: ConfigScopes = ConfigScopes.GLOBAL,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
        start_revision: int | None = None,
    ) -> EtcdWatch:
        """A watch on every key under ``key_prefix``; event keys are relative to the scope."""
        return self._make_watch(key_prefix, True, scope, scope_prefix_map, start_revision)

    def _make_watch(
        self,
        key: str,
        prefix: bool,
        scope: ConfigScopes,
        scope_prefix_map: Mapping[ConfigScopes, str] | None,
        start_revision: int | None,
    ) -> EtcdWatch:
        scope_part = slash(self._scope_prefix(scope, scope_prefix_map))
        return EtcdWatch(
            self,
            self._mangle(scope_part + key),
            prefix=prefix,
            strip=len(self._mangle(scope_part)),
            start_revision=start_revision,
        )

    def _watch_opened(self, watch: EtcdWatch) -> None:
        self._watches.add(watch)

    def _watch_closed(self, watch: EtcdWatch) -> None:
        self._watches.discard(watch)

    def _watch_backoff(self, attempt: int) -> float:
        base = self._watch_reconnect_interval * (2 ** min(attempt - 1, 10))
        jitter: float = 0.5 + random.random() / 2
        return float(min(base, self._watch_reconnect_max_interval)) * jitter

    # -- leases ------------------------------------------------------------------------

    async def grant_lease(self, ttl: int, *, keepalive: bool = True) -> EtcdLease:
        """Grant a lease of ``ttl`` seconds; with ``keepalive`` this client refreshes it every
        ``ttl / 3`` seconds until it is revoked, lost, or the client closes.

        If cancelled after etcd granted it, the lease expires by itself after ``ttl``.
        """
        self._check_open()
        if not isinstance(ttl, int) or ttl < 1:
            raise EtcdInvalidArgument(f"lease ttl must be a positive integer: {ttl!r}")
        lease_id, granted = await self._lease_grant(ttl)
        lease = EtcdLease(self, lease_id, max(granted, ttl), keepalive)
        if keepalive:
            try:
                self._keepalive_tasks[lease_id] = self._tasks.spawn(
                    self._keepalive_loop(lease), f"lease-{lease_id:x}"
                )
            except TaskOwnerStopped as exc:
                # The background group ended (closing, or a loop failed): nothing could keep
                # this lease alive, and it expires by its TTL.
                lease._stopped = True
                raise EtcdClosed(
                    f"grant_lease(ttl={ttl}): the keep-alive tasks of the etcd client of "
                    f"namespace {self._ns!r} are not running",
                    data={"lease": lease_id},
                ) from exc
        self._leases[lease_id] = lease
        return lease

    async def revoke_lease(self, lease: EtcdLease | int) -> None:
        """Stop keeping ``lease`` (or a lease id) alive and revoke it; its keys are deleted.

        Idempotent: revoking a lease that is already gone is not an error. If cancelled, the
        keep-alive is stopped and the lease may or may not be revoked (it then expires by TTL).
        """
        self._check_open()
        lease_id = lease if isinstance(lease, int) else lease.id
        known = self._leases.pop(lease_id, None)
        if isinstance(lease, EtcdLease):
            lease._stopped = True
        if known is not None:
            known._stopped = True
        task = self._keepalive_tasks.pop(lease_id, None)
        if task is not None:
            await _cancel_and_wait(task)
        await self._lease_revoke(lease_id)

    async def refresh_lease(self, lease: EtcdLease) -> int:
        """Refresh ``lease`` once (one request); its TTL, or 0 when it is gone.

        For callers that pace renewals themselves (leader election); transport failures raise
        ``EtcdUnavailable``/``EtcdTimeout``.
        """
        self._check_open()
        return await self._lease_keepalive_once(lease.id)

    async def wait_absent(
        self,
        key: str,
        *,
        scope: ConfigScopes = ConfigScopes.GLOBAL,
        scope_prefix_map: Mapping[ConfigScopes, str] | None = None,
    ) -> None:
        """Return once ``key`` does not exist (at once if it is absent now).

        Reads the key and watches it from the revision after that read, so a deletion in
        between is not missed. Bound it with ``asyncio.timeout()``; cancelling leaves nothing.
        """
        self._check_open()
        snap = await self.get_prefix_flat(key, scope=scope, scope_prefix_map=scope_prefix_map)
        if key not in snap.items:
            return
        async with self.watch(
            key, scope=scope, scope_prefix_map=scope_prefix_map, start_revision=snap.revision + 1
        ) as watch:
            async for event in watch:
                if event.event is WatchEventType.DELETE:
                    return
        raise EtcdClosed(f"wait_absent({key!r}): the client closed")

    async def stop_keepalive(self, lease: EtcdLease) -> None:
        """Stop refreshing ``lease`` without revoking it: it expires after its TTL.

        Cancelling it still stops the keep-alive (the caller's cancellation propagates).
        """
        lease._stopped = True
        task = self._keepalive_tasks.pop(lease.id, None)
        if task is not None:
            await _cancel_and_wait(task)

    async def lease_time_to_live(self, lease: EtcdLease) -> int:
        """Remaining seconds of ``lease``; raises ``EtcdLeaseNotFound`` when it is gone."""
        self._check_open()
        ttl = await self._lease_time_to_live(lease.id)
        if ttl < 0:
            raise EtcdLeaseNotFound(f"lease {lease.id:#x} does not exist", data={"lease": lease.id})
        return ttl

    async def _keepalive_loop(self, lease: EtcdLease) -> None:
        """Refresh ``lease`` every ``ttl / 3``; after a failed attempt retry sooner, and
        declare it lost once no attempt succeeded for a whole TTL.

        Any ``EtcdError`` but ``EtcdClosed`` is a failed attempt (a throttled or refused
        refresh is as good as a lost one): it never ends the loop early, so one lease's trouble
        cannot stop the keep-alives of the others. If the loop ends any other way than being
        stopped, the client closing or the lease found lost (a bug, or the background group
        cancelled by another loop's failure), nothing keeps the lease alive any more, so it is
        marked lost: whoever waits on ``wait_lost()`` learns it at once.
        """
        clock = self._clock
        interval = max(lease.ttl / 3.0, 0.05)
        retry = min(interval, 0.25)
        last_ok = clock.monotonic()
        delay = interval
        try:
            while not lease._stopped:
                await clock.sleep(delay)
                if lease._stopped:
                    return
                try:
                    remaining = await self._lease_keepalive_once(lease.id)
                except EtcdClosed:
                    return
                except EtcdLeaseNotFound:
                    remaining = 0
                except EtcdError:
                    if clock.monotonic() - last_ok >= lease.ttl:
                        self._lease_is_lost(lease)
                        return
                    delay = retry
                    continue
                if remaining <= 0:
                    self._lease_is_lost(lease)
                    return
                last_ok = clock.monotonic()
                delay = interval
        finally:
            if self._keepalive_tasks.get(lease.id) is asyncio.current_task():
                del self._keepalive_tasks[lease.id]
            if not lease._stopped and not self._closing and not lease.lost:
                self._lease_is_lost(lease)

    def _lease_is_lost(self, lease: EtcdLease) -> None:
        self._leases_lost += 1
        self._leases.pop(lease.id, None)
        lease._mark_lost()

    # -- statistics --------------------------------------------------------------------

    def statistics(self) -> EtcdStatistics:
        """A snapshot of endpoints, watches and leases."""
        return EtcdStatistics(
            endpoint=self._endpoint_name(),
            failovers=self._failover_count(),
            watches=len(self._watches),
            watch_reconnects=self._watch_reconnects,
            leases_kept_alive=len(self._keepalive_tasks),
            leases_lost=self._leases_lost,
        )


def _in_subtree(key: str, base: str) -> bool:
    return not base or base.endswith("/") or key == base or key.startswith(base + "/")


def _lease_id(lease: EtcdLease | None) -> int:
    return 0 if lease is None else lease.id


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it ended, without taking its outcome.

    ``asyncio.wait`` neither raises the task's ``CancelledError`` (so nothing needs
    suppressing) nor swallows a cancellation of the caller, which propagates from here.
    """
    task.cancel()
    await asyncio.wait((task,))
