"""The live config of a process: read ``current``, swap it whole with ``reload()``.

A file watcher, a signal handler or (later) the etcd layer's watch loop calls
:meth:`ConfigHolder.reload`; readers only ever see a complete old or a complete new config.

Guarantees:
- a reload whose result is invalid raises and leaves ``current`` (and ``generation``)
  unchanged [tests/configs/test_holder.py::test_reload_keeps_old_config_on_bad_value];
- a valid reload replaces the config in one assignment and bumps ``generation``
  [tests/configs/test_holder.py::test_reload_swaps_config];
- concurrent reloads from several threads run one at a time
  [tests/configs/test_holder.py::test_concurrent_reloads_are_serialised].

Limits:
- ``reload()`` reads the layers synchronously (files are small); from an event loop, call it
  through ``asyncio.to_thread`` if the files may sit on slow storage.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from pydantic import BaseModel

from .loader import ConfigLoader, LoadedConfig

__all__ = ("ConfigHolder",)

M = TypeVar("M", bound=BaseModel)


class ConfigHolder(Generic[M]):
    """Holds the current :class:`LoadedConfig` of a loader and replaces it atomically."""

    def __init__(self, loader: ConfigLoader[M], loaded: LoadedConfig[M]) -> None:
        self.loader = loader
        self._loaded = loaded
        self._generation = 0
        self._lock = threading.Lock()

    @classmethod
    def load(cls, loader: ConfigLoader[M]) -> ConfigHolder[M]:
        """Load once and hold the result (the first load's errors propagate)."""
        return cls(loader, loader.load())

    @property
    def current(self) -> M:
        """The config in force."""
        return self._loaded.config

    @property
    def loaded(self) -> LoadedConfig[M]:
        """The config in force with its provenance."""
        return self._loaded

    @property
    def generation(self) -> int:
        """How many successful reloads replaced the first config."""
        return self._generation

    def reload(self) -> LoadedConfig[M]:
        """Re-read every layer and swap the result in; on any error keep the old config.

        Raises what :meth:`ConfigLoader.load` raises (``ConfigurationError`` subclasses).
        """
        with self._lock:
            loaded = self.loader.load()
            self._loaded = loaded
            self._generation += 1
            return loaded
