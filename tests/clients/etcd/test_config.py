"""EtcdConfigLayer + EtcdConfigWatcher: etcd as a config layer, re-validated on change."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from ai.backend.common.clients.etcd import (
    AsyncEtcd,
    ConfigScopes,
    EtcdConfigLayer,
    EtcdConfigWatcher,
)
from ai.backend.common.configs import ConfigHolder, ConfigLoader, ConfigurationError, MappingLayer
from tests._helpers import until


class RedisConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    addr: str = "127.0.0.1:6379"
    pool_size: int = 8


class AppConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    redis: RedisConfig = RedisConfig()
    debug: bool = False


async def _holder(etcd: AsyncEtcd) -> tuple[ConfigHolder[AppConfig], EtcdConfigLayer]:
    layer = EtcdConfigLayer(etcd, "config")
    await layer.refresh()
    loader = ConfigLoader(AppConfig, [MappingLayer({"debug": False}, name="defaults"), layer])
    return ConfigHolder(loader, loader.load()), layer


async def test_change_swaps_the_config(etcd: AsyncEtcd) -> None:
    await etcd.put_prefix("config", {"redis": {"addr": "10.0.0.1:6379"}})
    layer = EtcdConfigLayer(etcd, "config")
    await layer.refresh()
    loader = ConfigLoader(AppConfig, [MappingLayer({}, name="defaults"), layer])
    holder = ConfigHolder.load(loader)
    assert holder.current.redis.addr == "10.0.0.1:6379"
    async with EtcdConfigWatcher(holder, layer, debounce=0.01) as watcher:
        await etcd.put("config/redis/pool_size", "16")
        await etcd.put("config/debug", "true")
        await until(
            lambda: holder.current.redis.pool_size == 16 and holder.current.debug,
            what="the new values",
        )
        source = holder.loaded.provenance.lookup(("redis", "pool_size"))
        assert source is not None
        assert source.layer == "etcd"
        assert source.key == "config/redis.pool_size"
        assert watcher.statistics().reloads >= 1
        assert watcher.statistics().rejections == 0


async def test_bad_value_is_rejected_and_old_config_stays(etcd: AsyncEtcd) -> None:
    rejected: list[ConfigurationError] = []
    await etcd.put("config/redis/pool_size", "16")
    holder, layer = await _holder(etcd)
    good = holder.current
    assert good.redis.pool_size == 16
    async with EtcdConfigWatcher(holder, layer, debounce=0.01, on_rejected=rejected.append) as w:
        await etcd.put("config/redis/pool_size", "lots")
        await until(lambda: len(rejected) == 1, what="the bad value to be rejected")
        assert holder.current is good
        assert "pool_size" in str(rejected[0])
        assert layer.load() == {"redis": {"pool_size": "16"}}  # the snapshot in force
        await etcd.put("config/redis/pool_size", "32")
        await until(lambda: holder.current.redis.pool_size == 32, what="the fixed value")
        stats = w.statistics()
    assert stats.rejections == 1
    assert stats.last_error is not None


async def test_node_scope_overrides_global(etcd: AsyncEtcd) -> None:
    await etcd.put("config/redis/addr", "global:6379")
    holder, layer = await _holder(etcd)
    assert holder.current.redis.addr == "global:6379"
    async with EtcdConfigWatcher(holder, layer, debounce=0.01):
        await etcd.put("config/redis/addr", "node:6379", scope=ConfigScopes.NODE)
        await until(lambda: holder.current.redis.addr == "node:6379", what="the node value")


async def test_load_before_refresh_is_an_error(etcd: AsyncEtcd) -> None:
    layer = EtcdConfigLayer(etcd, "config")
    with pytest.raises(ConfigurationError, match="refreshed"):
        layer.load()
