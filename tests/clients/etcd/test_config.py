"""EtcdConfigLayer + EtcdConfigWatcher: etcd as a config layer, re-validated on change."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel, ConfigDict

from ai.backend.common.clients.etcd import (
    AsyncEtcd,
    ConfigScopes,
    EtcdConfigLayer,
    EtcdConfigWatcher,
    EtcdUnavailable,
    MemoryEtcd,
    MemoryEtcdServer,
)
from ai.backend.common.configs import ConfigHolder, ConfigLoader, ConfigurationError, MappingLayer
from tests._helpers import until

from .conftest import EtcdEnv


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


async def test_watch_from_a_compacted_revision_resyncs(etcd_env: EtcdEnv, etcd: AsyncEtcd) -> None:
    await etcd.put("config/redis/pool_size", "16")
    holder, layer = await _holder(etcd)
    # While nobody watches, the config changes and etcd compacts the history it would replay.
    await etcd.put("config/redis/pool_size", "24")
    for i in range(3):
        await etcd.put(f"elsewhere/{i}", "x")
    await etcd_env.compact(await etcd.current_revision())
    async with EtcdConfigWatcher(holder, layer, debounce=0.01) as watcher:
        await until(lambda: holder.current.redis.pool_size == 24, what="the re-read value")
        assert watcher.statistics().resyncs == 1
        await etcd.put("config/redis/pool_size", "32")  # and it watches on from there
        await until(lambda: holder.current.redis.pool_size == 32, what="the next change")


async def test_idle_watch_survives_a_reconnect_after_compaction() -> None:
    server = MemoryEtcdServer()
    async with MemoryEtcd("ns", server=server) as etcd, MemoryEtcd("ns", server=server) as other:
        await etcd.put("config/redis/pool_size", "8")
        holder, layer = await _holder(etcd)
        async with EtcdConfigWatcher(holder, layer, debounce=0.01) as watcher:
            for i in range(5):  # traffic elsewhere (service heartbeats); no config change
                await other.put(f"ai/backend/service_discovery/x/{i}", "v")
            server.compact(server.revision)  # etcd's periodic auto-compaction
            etcd.simulate_disconnect()  # a member restart: the watch resumes at a compacted rev
            await until(lambda: watcher.statistics().resyncs == 1, what="the resync")
            await other.put("config/redis/pool_size", "64")
            await until(lambda: holder.current.redis.pool_size == 64, what="the new value")
            assert holder.current.redis.pool_size == 64


async def test_enter_raises_when_the_watch_cannot_open() -> None:
    async with MemoryEtcd("ns") as etcd:
        holder, layer = await _holder(etcd)
        etcd.simulate_outage()
        watcher = EtcdConfigWatcher(holder, layer)
        async with asyncio.timeout(5):  # it used to wait for ever
            with pytest.raises(EtcdUnavailable):
                await watcher.__aenter__()
        etcd.end_outage()
        async with watcher:  # and a later attempt works
            await etcd.put("config/debug", "true")
            await until(lambda: holder.current.debug, what="the change")


async def test_exit_does_not_swallow_the_callers_cancellation() -> None:
    async with MemoryEtcd("ns") as etcd:
        holder, layer = await _holder(etcd)
        watcher = EtcdConfigWatcher(holder, layer)
        await watcher.__aenter__()

        async def leave() -> None:
            await watcher.__aexit__(None, None, None)
            await asyncio.sleep(10)  # reached only if the cancellation was swallowed

        task = asyncio.create_task(leave())
        await asyncio.sleep(0)  # the task is now waiting for the watcher to stop
        task.cancel()
        await asyncio.wait((task,), timeout=2)
        done = task.done()
        if not done:
            task.cancel()
            await asyncio.wait((task,))
        assert done, "the cancellation was swallowed by __aexit__"
        assert task.cancelled()
        for _ in range(10):  # let the cancelled watcher task finish
            await asyncio.sleep(0)
