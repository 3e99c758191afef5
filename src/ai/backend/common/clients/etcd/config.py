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
  [tests/clients/etcd/test_config.py::test_change_swaps_the_config].

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
from .abc import AsyncEtcd
from .exceptions import EtcdError
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


class EtcdConfigWatcher(Generic[M]):
    """Reloads ``holder`` whenever the etcd layer's prefix changes; a bad value is rejected.

    ``layer`` must be one of the holder's loader layers. ``async with`` refreshes the layer
    first if it was never refreshed, then watches until the block ends.
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
        self._last_error: str | None = None

    async def __aenter__(self) -> Self:
        if self._layer.snapshot() is None:
            await self._layer.refresh()
        ready = asyncio.Event()
        self._runner = asyncio.create_task(self._run(ready), name="etcd-config-watcher")
        await ready.wait()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    async def _run(self, ready: asyncio.Event) -> None:
        layer = self._layer
        etcd = layer.etcd
        start = layer.revision + 1
        prefixes = _scopes_to_watch(etcd, layer.scope)
        async with contextlib.AsyncExitStack() as stack:
            watches = [
                await stack.enter_async_context(
                    etcd.watch_prefix(
                        slash(layer.prefix) if layer.prefix else "",
                        scope=scope,
                        start_revision=start,
                    )
                )
                for scope in prefixes
            ]
            async with asyncio.TaskGroup() as tg:
                for watch in watches:
                    tg.create_task(self._pump(watch))
                ready.set()
                while True:
                    await self._changed.wait()
                    await asyncio.sleep(self._debounce)  # let a burst of changes settle
                    self._changed.clear()
                    await self._apply()

    async def _pump(self, watch: Any) -> None:
        async for _ in watch:
            self._changed.set()

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
        try:
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
        """Reloads, rejections and the last error."""
        return ConfigWatchStatistics(self._reloads, self._rejections, self._last_error)


def _scopes_to_watch(etcd: AsyncEtcd, scope: ConfigScopes) -> list[ConfigScopes]:
    mapped = etcd.scope_prefix_map
    if scope is ConfigScopes.MERGED or scope is ConfigScopes.NODE:
        candidates = [ConfigScopes.GLOBAL, ConfigScopes.SGROUP, ConfigScopes.NODE]
    elif scope is ConfigScopes.SGROUP:
        candidates = [ConfigScopes.GLOBAL, ConfigScopes.SGROUP]
    else:
        candidates = [ConfigScopes.GLOBAL]
    return [s for s in candidates if s in mapped]
