"""Tests of ConfigHolder: atomic swap on reload, old config kept on failure."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ai.backend.common.configs import (
    AbstractConfigLayer,
    ConfigFileError,
    ConfigHolder,
    ConfigLoader,
    ConfigUnknownKeyError,
    ConfigValidationError,
    TomlFileLayer,
)

from ._models import ManagerConfig


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "manager.toml"
    path.write_text("[db]\nport = 1111\n", encoding="utf-8")
    return path


def test_reload_swaps_config(config_file: Path) -> None:
    holder = ConfigHolder.load(ConfigLoader(ManagerConfig, [TomlFileLayer(config_file)]))
    first = holder.current
    assert first.db.port == 1111
    assert holder.generation == 0
    config_file.write_text("[db]\nport = 2222\n", encoding="utf-8")
    loaded = holder.reload()
    assert loaded is holder.loaded
    assert holder.current.db.port == 2222
    assert holder.generation == 1
    assert first.db.port == 1111  # the old object is untouched


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[db]\nport = "oops"\n', ConfigValidationError),
        ("[db]\nprot = 1\n", ConfigUnknownKeyError),
        ("[db\n", ConfigFileError),
    ],
)
def test_reload_keeps_old_config_on_bad_value(
    config_file: Path, text: str, error: type[Exception]
) -> None:
    holder = ConfigHolder.load(ConfigLoader(ManagerConfig, [TomlFileLayer(config_file)]))
    before = holder.loaded
    config_file.write_text(text, encoding="utf-8")
    with pytest.raises(error) as info:
        holder.reload()
    assert str(config_file) in str(info.value)
    assert holder.loaded is before
    assert holder.current.db.port == 1111
    assert holder.generation == 0
    config_file.write_text("[db]\nport = 3333\n", encoding="utf-8")
    assert holder.reload().config.db.port == 3333


class GatedLayer(AbstractConfigLayer):
    """A layer whose load() blocks until released, counting concurrent loads."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.loads = 0

    def load(self) -> Mapping[str, Any]:
        with self.lock:
            self.active += 1
            self.loads += 1
            self.max_active = max(self.max_active, self.active)
        self.entered.release()
        try:
            if not self.gate.wait(timeout=10):
                raise AssertionError("gate never opened")
            return {"db": {"port": 1000 + self.loads}}
        finally:
            with self.lock:
                self.active -= 1


def test_concurrent_reloads_are_serialised() -> None:
    layer = GatedLayer()
    layer.gate.set()
    holder = ConfigHolder.load(ConfigLoader(ManagerConfig, [layer]))
    assert layer.entered.acquire(timeout=1)
    layer.gate.clear()
    threads = [threading.Thread(target=holder.reload) for _ in range(2)]
    for t in threads:
        t.start()
    assert layer.entered.acquire(timeout=10)  # one reload is inside load()
    # The other must wait for the holder's lock, not enter load() beside it.
    assert not layer.entered.acquire(timeout=0.2)
    layer.gate.set()
    for t in threads:
        t.join(timeout=10)
    assert layer.entered.acquire(timeout=1)  # the second reload ran afterwards
    assert layer.max_active == 1
    assert holder.generation == 2
    assert holder.current.db.port == 1003
