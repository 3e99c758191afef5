"""The AsyncEtcd contract, run against every backend (memory, real etcd)."""

from __future__ import annotations

import asyncio

import pytest

from ai.backend.common.clients.etcd import (
    AsyncEtcd,
    ConfigScopes,
    EtcdClosed,
    EtcdCompareFailed,
    EtcdError,
    EtcdInvalidArgument,
    EtcdLeaseNotFound,
    EtcdWatchCompacted,
    WatchEvent,
    WatchEventType,
)
from tests._helpers import until

from .conftest import EtcdEnv, next_events

PUT = WatchEventType.PUT
DELETE = WatchEventType.DELETE


async def test_put_get_round_trip(etcd: AsyncEtcd) -> None:
    await etcd.put("config/a", "1")
    await etcd.put("config/b", "")
    assert await etcd.get("config/a") == "1"
    assert await etcd.get("config/b") == ""
    assert await etcd.get("config/missing") is None


async def test_put_returns_increasing_revisions(etcd: AsyncEtcd) -> None:
    r1 = await etcd.put("k", "1")
    r2 = await etcd.put("k", "2")
    assert r2 > r1
    assert await etcd.current_revision() == r2


async def test_put_prefix_round_trip_quotes_keys(etcd: AsyncEtcd) -> None:
    data = {
        "plain": "v",
        "with/slash": "s",
        "50% off & more?": "p",
        "ünïcode key": "u",
        "nested": {"a": "1", "deeper": {"x/y": "2"}},
    }
    await etcd.put_prefix("obj", data)
    assert await etcd.get_prefix("obj") == data
    # the slash inside a key was quoted, so it did not create a level
    assert await etcd.get("obj/with%2Fslash") == "s"
    assert await etcd.get("obj/nested/deeper/x%2Fy") == "2"


async def test_put_prefix_stringifies_values(etcd: AsyncEtcd) -> None:
    await etcd.put_prefix("n", {"port": 8080, "ratio": 0.5, "flag": True})
    assert await etcd.get_prefix("n") == {"port": "8080", "ratio": "0.5", "flag": "True"}


async def test_get_prefix_value_and_children(etcd: AsyncEtcd) -> None:
    await etcd.put("p/mydata", "abc")
    await etcd.put("p/mydata/x", "1")
    await etcd.put("p/mykey", "def")
    assert await etcd.get_prefix("p") == {"mydata": {"": "abc", "x": "1"}, "mykey": "def"}


async def test_get_prefix_missing_is_empty(etcd: AsyncEtcd) -> None:
    assert await etcd.get_prefix("nothing/here") == {}


async def test_put_prefix_replace_drops_stale_keys(etcd: AsyncEtcd) -> None:
    await etcd.put_prefix("rec", {"a": "1", "labels": {"x": "1", "y": "2"}})
    await etcd.put_prefix("rec", {"a": "2", "labels": {"x": "1"}}, replace=True)
    assert await etcd.get_prefix("rec") == {"a": "2", "labels": {"x": "1"}}
    # a sibling sharing the text prefix is not touched
    await etcd.put("record", "keep")
    await etcd.put_prefix("rec", {"a": "3"}, replace=True)
    assert await etcd.get("record") == "keep"


async def test_merged_get_prefers_node(etcd: AsyncEtcd) -> None:
    await etcd.put("k", "global")
    assert await etcd.get("k") == "global"
    await etcd.put("k", "sgroup", scope=ConfigScopes.SGROUP)
    assert await etcd.get("k") == "sgroup"
    await etcd.put("k", "node", scope=ConfigScopes.NODE)
    assert await etcd.get("k") == "node"
    assert await etcd.get("k", scope=ConfigScopes.SGROUP) == "sgroup"
    assert await etcd.get("k", scope=ConfigScopes.GLOBAL) == "global"


async def test_merged_get_prefix_prefers_node(etcd: AsyncEtcd) -> None:
    await etcd.put_prefix("cfg", {"a": "g", "b": "g", "sub": {"x": "g", "y": "g"}})
    await etcd.put_prefix("cfg", {"b": "s", "sub": {"y": "s"}}, scope=ConfigScopes.SGROUP)
    await etcd.put_prefix("cfg", {"sub": {"y": "n", "z": "n"}}, scope=ConfigScopes.NODE)
    assert await etcd.get_prefix("cfg") == {
        "a": "g",
        "b": "s",
        "sub": {"x": "g", "y": "n", "z": "n"},
    }
    assert await etcd.get_prefix("cfg", scope=ConfigScopes.GLOBAL) == {
        "a": "g",
        "b": "g",
        "sub": {"x": "g", "y": "g"},
    }


async def test_scopes_are_separate_keys(etcd_env: EtcdEnv, etcd: AsyncEtcd) -> None:
    await etcd.put("k", "node-only", scope=ConfigScopes.NODE)
    other_node = await etcd_env.open(scopes={ConfigScopes.GLOBAL: "", ConfigScopes.NODE: "n/2"})
    assert await other_node.get("k") is None


async def test_namespaces_are_isolated(etcd_env: EtcdEnv, etcd: AsyncEtcd) -> None:
    other = await etcd_env.open(namespace=etcd_env.namespace + "-other")
    await etcd.put("shared-name", "mine")
    assert await other.get("shared-name") is None
    await other.put_prefix("x", {"a": "1"})
    assert await etcd.get_prefix("x") == {}


async def test_invalid_scope_raises(etcd_env: EtcdEnv) -> None:
    plain = await etcd_env.open(scopes={ConfigScopes.GLOBAL: ""})
    with pytest.raises(EtcdInvalidArgument):
        await plain.put("k", "v", scope=ConfigScopes.NODE)
    with pytest.raises(EtcdInvalidArgument):
        await plain.put("k", "v", scope=ConfigScopes.MERGED)
    # merged reads without node/sgroup prefixes read the global scope only
    await plain.put("k", "v")
    assert await plain.get("k") == "v"


async def test_replace_is_compare_and_swap(etcd: AsyncEtcd) -> None:
    assert await etcd.replace("cas", "a", "b") is False  # a missing key never matches
    assert await etcd.get("cas") is None
    await etcd.put("cas", "a")
    assert await etcd.replace("cas", "a", "b") is True
    assert await etcd.replace("cas", "a", "c") is False
    assert await etcd.get("cas") == "b"
    with pytest.raises(EtcdCompareFailed) as info:
        await etcd.replace("cas", "a", "c", raise_on_conflict=True)
    assert "cas" in str(info.value)


async def test_replace_races_have_one_winner(etcd_env: EtcdEnv, etcd: AsyncEtcd) -> None:
    others = [await etcd_env.open() for _ in range(3)]
    await etcd.put("counter", "0")
    results = await asyncio.gather(
        *(c.replace("counter", "0", f"by-{i}") for i, c in enumerate([etcd, *others]))
    )
    assert sum(results) == 1
    assert await etcd.get("counter") == f"by-{results.index(True)}"


async def test_put_if_absent(etcd: AsyncEtcd) -> None:
    assert await etcd.put_if_absent("once", "first") is True
    assert await etcd.put_if_absent("once", "second") is False
    assert await etcd.get("once") == "first"


async def test_deletes(etcd: AsyncEtcd) -> None:
    await etcd.put_prefix("d", {"a": "1", "b": "2", "c": {"x": "3"}})
    await etcd.put("dz", "outside")
    assert await etcd.delete("d/a") == 1
    assert await etcd.delete("d/a") == 0
    assert await etcd.delete_multi(["d/b", "d/nope"]) == 1
    assert await etcd.delete_if_value("dz", "wrong") is False
    assert await etcd.delete_prefix("d/") == 1
    assert await etcd.get_prefix("d") == {}
    assert await etcd.delete_if_value("dz", "outside") is True
    assert await etcd.get("dz") is None


async def test_get_prefix_flat_gives_revision(etcd: AsyncEtcd) -> None:
    rev = await etcd.put_prefix("f", {"a": "1", "b": {"c": "2"}})
    snap = await etcd.get_prefix_flat("f/")
    assert snap.items == {"f/a": "1", "f/b/c": "2"}
    assert snap.revision >= rev


# -- watches ---------------------------------------------------------------------------


async def test_watch_prefix_sees_puts_and_deletes_in_order(etcd: AsyncEtcd) -> None:
    async with etcd.watch_prefix("w/") as watch:
        r1 = await etcd.put("w/a", "1")
        r2 = await etcd.put("w/b", "2")
        await etcd.put("other/c", "3")
        r3 = await etcd.delete_prefix("w/")
        assert r3 == 2
        events = await next_events(watch, 4)
    assert events[:2] == [WatchEvent("w/a", PUT, "1", r1), WatchEvent("w/b", PUT, "2", r2)]
    assert {(e.key, e.event) for e in events[2:]} == {("w/a", DELETE), ("w/b", DELETE)}
    assert events[2].revision == events[3].revision > r2


async def test_watch_single_key(etcd: AsyncEtcd) -> None:
    async with etcd.watch("solo") as watch:
        await etcd.put("solo2", "x")
        rev = await etcd.put("solo", "y")
        [event] = await next_events(watch, 1)
    assert event == WatchEvent("solo", PUT, "y", rev)


async def test_watch_in_scope_strips_scope_prefix(etcd: AsyncEtcd) -> None:
    async with etcd.watch_prefix("cfg/", scope=ConfigScopes.NODE) as watch:
        await etcd.put("cfg/x", "global")  # another scope: not seen
        rev = await etcd.put("cfg/x", "node", scope=ConfigScopes.NODE)
        [event] = await next_events(watch, 1)
    assert event == WatchEvent("cfg/x", PUT, "node", rev)


async def test_watch_from_revision_replays_history(etcd: AsyncEtcd) -> None:
    await etcd.put("h/a", "0")
    snap = await etcd.get_prefix_flat("h/")
    r1 = await etcd.put("h/a", "1")
    r2 = await etcd.put("h/b", "2")
    async with etcd.watch_prefix("h/", start_revision=snap.revision + 1) as watch:
        r3 = await etcd.put("h/c", "3")
        events = await next_events(watch, 3)
    assert [(e.key, e.value, e.revision) for e in events] == [
        ("h/a", "1", r1),
        ("h/b", "2", r2),
        ("h/c", "3", r3),
    ]
    assert watch.next_revision == r3 + 1


async def test_watch_from_compacted_revision_raises(etcd_env: EtcdEnv, etcd: AsyncEtcd) -> None:
    first = await etcd.put("cmp/a", "1")
    await etcd.put("cmp/a", "2")
    last = await etcd.put("cmp/a", "3")
    await etcd_env.compact(last)
    with pytest.raises(EtcdWatchCompacted) as info:
        async with etcd.watch_prefix("cmp/", start_revision=first) as watch:
            await next_events(watch, 1)
    assert isinstance(info.value, EtcdError)


async def test_watch_ends_when_client_closes(etcd_env: EtcdEnv) -> None:
    client = await etcd_env.open()
    watch = client.watch_prefix("x/")
    await watch.__aenter__()
    received: list[WatchEvent] = []

    async def consume() -> None:
        async for ev in watch:
            received.append(ev)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(consume())
        await client.put("x/1", "a")
        await until(lambda: len(received) == 1, what="first event")
        await client.aclose()
    assert [e.key for e in received] == ["x/1"]
    assert client.statistics().watches == 0


async def test_many_watchers_see_the_same_sequence(etcd_env: EtcdEnv, etcd: AsyncEtcd) -> None:
    other = await etcd_env.open()
    async with etcd.watch_prefix("m/") as w1, other.watch_prefix("m/") as w2:
        for i in range(20):
            await (etcd if i % 2 else other).put(f"m/{i % 3}", str(i))
        e1 = await next_events(w1, 20)
        e2 = await next_events(w2, 20)
    assert e1 == e2
    assert [e.value for e in e1] == [str(i) for i in range(20)]
    assert [e.revision for e in e1] == sorted({e.revision for e in e1})


# -- leases ----------------------------------------------------------------------------


async def test_lease_expiry_deletes_keys_and_notifies_watch(
    etcd_env: EtcdEnv, etcd: AsyncEtcd
) -> None:
    lease = await etcd.grant_lease(2, keepalive=False)
    async with etcd.watch_prefix("l/") as watch:
        await etcd.put("l/a", "1", lease=lease)
        await etcd.put_prefix("l/b", {"x": "1"}, lease=lease)
        await etcd.put("l/keep", "1")
        await next_events(watch, 3)
        await etcd_env.pass_time(2.5)
        deleted = await next_events(watch, 2)
    assert {(e.key, e.event) for e in deleted} == {("l/a", DELETE), ("l/b/x", DELETE)}
    assert await etcd.get_prefix("l") == {"keep": "1"}
    with pytest.raises(EtcdLeaseNotFound):
        await etcd.lease_time_to_live(lease)


async def test_keepalive_keeps_lease_past_ttl(etcd_env: EtcdEnv, etcd: AsyncEtcd) -> None:
    lease = await etcd.grant_lease(2)
    await etcd.put("ka", "alive", lease=lease)
    assert etcd.statistics().leases_kept_alive == 1
    await etcd_env.pass_time(3.2)  # well past the TTL: only keep-alives can explain it
    assert await etcd.get("ka") == "alive"
    assert await etcd.lease_time_to_live(lease) > 0
    assert not lease.lost
    await etcd.revoke_lease(lease)
    assert await etcd.get("ka") is None
    assert etcd.statistics().leases_kept_alive == 0
    await etcd.revoke_lease(lease)  # idempotent


async def test_put_with_revoked_lease_raises(etcd: AsyncEtcd) -> None:
    lease = await etcd.grant_lease(5, keepalive=False)
    await etcd.revoke_lease(lease)
    with pytest.raises(EtcdLeaseNotFound):
        await etcd.put("k", "v", lease=lease)
    assert await etcd.get("k") is None


async def test_lease_revoked_elsewhere_is_reported_lost(etcd_env: EtcdEnv, etcd: AsyncEtcd) -> None:
    other = await etcd_env.open()
    lease = await etcd.grant_lease(2)
    await etcd.put("lost/k", "v", lease=lease)
    await other.revoke_lease(lease.id)
    assert await other.get("lost/k") is None

    async def lost() -> bool:
        await etcd_env.pass_time(0.2)
        return lease.lost

    await until(lost, what="the lease to be reported lost")
    await lease.wait_lost()
    assert etcd.statistics().leases_lost == 1
    assert etcd.statistics().leases_kept_alive == 0


async def test_grant_lease_rejects_bad_ttl(etcd: AsyncEtcd) -> None:
    with pytest.raises(EtcdInvalidArgument):
        await etcd.grant_lease(0)


# -- lifecycle -------------------------------------------------------------------------


async def test_closed_client_raises(etcd_env: EtcdEnv) -> None:
    client = await etcd_env.open()
    await client.aclose()
    await client.aclose()  # idempotent
    with pytest.raises(EtcdClosed):
        await client.get("k")
    with pytest.raises(EtcdClosed):
        await client.open()


async def test_statistics_snapshot(etcd: AsyncEtcd) -> None:
    stats = etcd.statistics()
    assert stats.watches == 0
    async with etcd.watch_prefix("s/"):
        assert etcd.statistics().watches == 1
    assert etcd.statistics().watches == 0
    assert stats.endpoint
