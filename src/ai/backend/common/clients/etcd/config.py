"""etcd as a configuration layer, and a watch that re-validates and swaps the live config.

:class:`EtcdConfigLayer` plugs etcd into :class:`~ai.backend.common.configs.ConfigLoader`: it
holds a snapshot of the nested dict under ``prefix`` (scopes merged: node over scaling group
over global), read by :meth:`EtcdConfigLayer.refresh`, because a layer's ``load()`` must not
block on the network. :class:`EtcdConfigWatcher` watches that prefix in every scope and, after
each burst of changes, refreshes the snapshot and calls
:meth:`~ai.backend.common.configs.ConfigHolder.reload`.

Guarantees:
- a valid change in etcd replaces the config atomically (readers see the old or the new one)
  [tests/clients/etcd/test_config.py::test_change_swaps_the_config];
- a change that fails validation is rejected: the old config stays, ``on_rejected`` gets the
  error, and the layer keeps the snapshot that produced the config in force
  [tests/clients/etcd/test_config.py::test_bad_value_is_rejected_and_old_config_stays];
- no change is missed: the watches start at the revision after the snapshot's read
  [tests/clients/etcd/test_config.py::test_change_swaps_the_config];
- a watch that cannot resume because etcd compacted its history (a reconnect after
  auto-compaction, even while no config changes) re-reads the prefix, reloads and watches on
  from that read, counted in ``statistics().resyncs``
  [tests/clients/etcd/test_config.py::test_idle_watch_survives_a_reconnect_after_compaction]
  [tests/clients/etcd/test_config.py::test_watch_from_a_compacted_revision_resyncs];
- entering raises when the watches cannot be opened, and leaving never swallows the caller's
  cancellation [tests/clients/etcd/test_config.py::test_enter_raises_when_the_watch_cannot_open]
  [tests/clients/etcd/test_config.py::test_exit_does_not_swallow_the_callers_cancellation].

Limits: values are text; the loader parses them as the model's field types (JSON for lists and
mappings), as for environment variables.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from pydantic import BaseModel

from ...configs import AbstractConfigLayer, ConfigHolder, ConfigurationError, LoadedConfig
from ...configs.provenance import KeyPath, ValueSource, format_key_path
from ._keys import slash
from .abc import AsyncEtcd, EtcdWatch
from .exceptions import EtcdClosed, EtcdError, EtcdTimeout, EtcdUnavailable, EtcdWatchCompacted
from .types import ConfigScopes

__all__ = ("ConfigWatchStatistics", "EtcdConfigLayer", "EtcdConfigWatcher")

M = TypeVar("M", bound=BaseModel)


class EtcdConfigLayer(AbstractConfigLayer):
    """The config under ``prefix`` in etcd, as of the last :meth:`refresh`."""

    name = "etcd"
    text_values = True

    def __init__(
        self,
        etcd: AsyncEtcd,
        prefix: str = "config",
        *,
        scope: ConfigScopes = ConfigScopes.MERGED,
    ) -> None:
        self.etcd = etcd
        self.prefix = prefix.strip("/")
        self.scope = scope
        self.location = f"etcd:/sorna/{etcd.namespace}/{self.prefix}"
        self._snapshot: Mapping[str, Any] | None = None
        self.revision = 0
        """The etcd revision the snapshot was read at (0 before the first refresh)."""

    async def refresh(self) -> int:
        """Read the prefix again (every scope, merged); returns the revision read at.

        Raises ``ConfigurationError`` (chained) when etcd cannot be read.
        """
        try:
            revision = await self.etcd.current_revision()
            snapshot = await self.etcd.get_prefix(self.prefix, scope=self.scope)
        except EtcdError as exc:
            raise ConfigurationError(
                f"cannot read the configuration at {self.location}: {exc}",
                data={"layer": self.name, "location": self.location},
            ) from exc
        self._snapshot = snapshot
        self.revision = revision
        return revision

    def load(self) -> Mapping[str, Any]:
        """The last snapshot (``refresh()`` first; never touches the network)."""
        if self._snapshot is None:
            raise ConfigurationError(
                f"the etcd layer {self.location} was not refreshed before loading",
                data={"layer": self.name, "location": self.location},
            )
        return self._snapshot

    def snapshot(self) -> Mapping[str, Any] | None:
        """The current snapshot, if any."""
        return self._snapshot

    def restore(self, snapshot: Mapping[str, Any] | None, revision: int) -> None:
        """Put back an earlier snapshot (after a rejected reload)."""
        self._snapshot = snapshot
        self.revision = revision

    def source_of(self, path: KeyPath) -> ValueSource:
        """``etcd`` at ``/sorna/<ns>/<prefix>``, key ``<prefix>/<a>/<b>``."""
        return ValueSource(self.name, self.location, f"{self.prefix}/{format_key_path(path)}")


@dataclass(frozen=True, slots=True)
class ConfigWatchStatistics:
    """What the watcher did so far."""

    reloads: int
    """Changes applied (the holder's config replaced)."""
    rejections: int
    """Changes rejected because the result did not validate."""
    last_error: str | None
    """The message of the last rejection."""
    resyncs: int = 0
    """Times the history to resume from was compacted away, so the prefix was read again."""


class EtcdConfigWatcher(Generic[M]):
    """Reloads ``holder`` whenever the etcd layer's prefix changes; a bad value is rejected.

    ``layer`` must be one of the holder's loader layers. ``async with`` refreshes the layer
    first if it was never refreshed, opens the watches (raising the ``EtcdError`` if they
    cannot be opened), then follows changes until the block ends. If the revision a watch must
    resume from was compacted away (a reconnect after etcd's auto-compaction, even with no
    config change at all), the watcher reads the prefix again, reloads, and watches on from the
    revision of that read. Leaving the block raises a failure of the background task, if any;
    cancelling ``__aenter__`` or ``__aexit__`` stops the watcher and propagates.
    """

    def __init__(
        self,
        holder: ConfigHolder[M],
        layer: EtcdConfigLayer,
        *,
        debounce: float = 0.05,
        retry_interval: float = 0.5,
        on_reloaded: Callable[[LoadedConfig[M]], None] | None = None,
        on_rejected: Callable[[ConfigurationError], None] | None = None,
    ) -> None:
        if layer not in holder.loader.layers:
            raise ConfigurationError(
                f"{layer!r} is not a layer of the holder's loader",
                data={"layer": layer.name, "location": layer.location},
            )
        self._holder = holder
        self._layer = layer
        self._debounce = debounce
        self._retry_interval = retry_interval
        self._on_reloaded = on_reloaded
        self._on_rejected = on_rejected
        self._changed = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._reloads = 0
        self._rejections = 0
        self._resyncs = 0
        self._last_error: str | None = None

    async def __aenter__(self) -> Self:
        if self._layer.snapshot() is None:
            await self._layer.refresh()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        runner = self._runner = asyncio.create_task(self._run(ready), name="etcd-config-watcher")
        try:
            await asyncio.wait((ready, runner), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await self._stop()
            raise
        if not ready.done():
            # The runner ended before its watches were open: raise why.
            self._runner = None
            runner.result()
            raise EtcdClosed(f"config watch of {self._layer.location} ended before it started")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        runner.cancel()
        # asyncio.wait takes neither the runner's outcome nor a cancellation of ours.
        await asyncio.wait((runner,))
        if not runner.cancelled() and (failure := runner.exception()) is not None:
            raise failure

    async def _run(self, ready: asyncio.Future[None]) -> None:
        start = self._layer.revision + 1
        while True:
            try:
                await self._follow(start, ready)
                return  # every watch ended: the etcd client was closed
            except EtcdWatchCompacted:
                self._resyncs += 1
                start = await self._resync() + 1
            except (EtcdUnavailable, EtcdTimeout):
                if not ready.done():
                    raise
                await asyncio.sleep(self._retry_interval)

    async def _follow(self, start: int, ready: asyncio.Future[None]) -> None:
        """Watch every scope from ``start`` and apply changes; raises ``EtcdWatchCompacted``
        when a watch cannot resume, returns when every watch ended (client closed)."""
        layer = self._layer
        etcd = layer.etcd
        compacted: list[EtcdWatchCompacted] = []
        async with contextlib.AsyncExitStack() as stack:
            watches = [
                await stack.enter_async_context(
                    etcd.watch_prefix(
                        slash(layer.prefix) if layer.prefix else "",
                        scope=scope,
                        start_revision=start,
                    )
                )
                for scope in _scopes_to_watch(etcd, layer.scope)
            ]
            if not ready.done():
                ready.set_result(None)
            async with asyncio.TaskGroup() as tg:
                pumps = [tg.create_task(self._pump(watch, compacted)) for watch in watches]
                while not compacted and not all(p.done() for p in pumps):
                    await self._changed.wait()
                    if compacted:
                        break
                    await asyncio.sleep(self._debounce)  # let a burst of changes settle
                    self._changed.clear()
                    if compacted:
                        break
                    await self._apply()
                for pump in pumps:
                    pump.cancel()
        if compacted:
            raise compacted[0]

    async def _pump(self, watch: EtcdWatch, compacted: list[EtcdWatchCompacted]) -> None:
        try:
            async for _ in watch:
                self._changed.set()
        except EtcdWatchCompacted as exc:
            compacted.append(exc)
        # Wake the main loop: it stops on a compaction, or when every watch has ended.
        self._changed.set()

    async def _resync(self) -> int:
        """Read the prefix again (retrying while etcd is unreachable) and reload; returns the
        revision read at, from which watching resumes (even if the reload was rejected)."""
        layer = self._layer
        self._changed.clear()  # the read below sees every change made so far
        previous, previous_rev = layer.snapshot(), layer.revision
        while True:
            try:
                revision = await layer.refresh()
                break
            except ConfigurationError:
                await asyncio.sleep(self._retry_interval)
        await self._reload(previous, previous_rev)
        return revision

    async def _apply(self) -> None:
        layer = self._layer
        previous, previous_rev = layer.snapshot(), layer.revision
        try:
            await layer.refresh()
        except ConfigurationError:
            # etcd could not be read (not a bad value): try again shortly.
            await asyncio.sleep(self._retry_interval)
            self._changed.set()
            return
        await self._reload(previous, previous_rev)

    async def _reload(self, previous: Mapping[str, Any] | None, previous_rev: int) -> None:
        layer = self._layer
        try:
            # Other layers (files) may block on I/O: reload off the event loop.
            loaded = await asyncio.to_thread(self._holder.reload)
        except ConfigurationError as exc:
            layer.restore(previous, previous_rev)
            self._rejections += 1
            self._last_error = str(exc)
            if self._on_rejected is not None:
                self._on_rejected(exc)
            return
        self._reloads += 1
        if self._on_reloaded is not None:
            self._on_reloaded(loaded)

    def statistics(self) -> ConfigWatchStatistics:
        """Reloads, rejections, the last error and resyncs after compaction."""
        return ConfigWatchStatistics(
            self._reloads, self._rejections, self._last_error, resyncs=self._resyncs
        )


def _scopes_to_watch(etcd: AsyncEtcd, scope: ConfigScopes) -> list[ConfigScopes]:
    mapped = etcd.scope_prefix_map
    if scope is ConfigScopes.MERGED or scope is ConfigScopes.NODE:
        candidates = [ConfigScopes.GLOBAL, ConfigScopes.SGROUP, ConfigScopes.NODE]
    elif scope is ConfigScopes.SGROUP:
        candidates = [ConfigScopes.GLOBAL, ConfigScopes.SGROUP]
    else:
        candidates = [ConfigScopes.GLOBAL]
    return [s for s in candidates if s in mapped]
