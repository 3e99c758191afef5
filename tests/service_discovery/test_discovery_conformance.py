"""The AbstractServiceDiscovery contract, run against every backend."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from ai.backend.common.exception import ObjectNotFound
from ai.backend.common.service_discovery import (
    AbstractServiceDiscovery,
    RecordsRestored,
    ServiceDiscoveryClosed,
    ServiceMetadata,
    ServiceNotFound,
)
from tests._helpers import until

from .conftest import TTL, SDEnv, make_record


async def test_register_then_get(sd: AbstractServiceDiscovery) -> None:
    record = make_record("manager", labels={"region": "kr", "app.kubernetes.io/name": "mgr"})
    await sd.register(record)
    assert await sd.get_service("manager", record.id) == record
    assert await sd.get_service_group("manager") == [record]
    assert await sd.discover() == [record]


async def test_discover_sorts_and_groups(sd: AbstractServiceDiscovery) -> None:
    records = [make_record(g, port=p) for g in ("storage", "agent", "manager") for p in (1, 2)]
    for record in records:
        await sd.register(record)
    expected = sorted(records, key=lambda r: (r.service_group, str(r.id)))
    assert await sd.discover() == expected
    agents = await sd.get_service_group("agent")
    assert agents == [r for r in expected if r.service_group == "agent"]


async def test_empty_is_an_empty_list(sd: AbstractServiceDiscovery) -> None:
    assert await sd.discover() == []
    assert await sd.get_service_group("nobody") == []
    await sd.register(make_record("manager"))
    assert await sd.get_service_group("manag") == []  # a prefix of a group is not the group


async def test_get_missing_raises_service_not_found(sd: AbstractServiceDiscovery) -> None:
    missing = uuid.uuid4()
    with pytest.raises(ServiceNotFound) as info:
        await sd.get_service("manager", missing)
    assert isinstance(info.value, ObjectNotFound)
    assert isinstance(info.value, LookupError)
    assert str(missing) in str(info.value)


async def test_deregister_removes_and_is_idempotent(sd: AbstractServiceDiscovery) -> None:
    keep, drop = make_record("agent", port=1), make_record("agent", port=2)
    await sd.register(keep)
    await sd.register(drop)
    await sd.deregister("agent", drop.id)
    assert await sd.get_service_group("agent") == [keep]
    with pytest.raises(ServiceNotFound):
        await sd.get_service("agent", drop.id)
    await sd.deregister("agent", drop.id)
    await sd.unregister("agent", keep.id)  # upstream's name
    assert await sd.discover() == []
    assert sd.statistics().owned == 0


async def test_reregister_overwrites(sd: AbstractServiceDiscovery) -> None:
    record = make_record("agent", labels={"a": "1", "b": "2"})
    await sd.register(record)
    changed = record.model_copy(update={"version": "27.0.0", "labels": {"a": "9"}})
    await sd.register(changed)
    assert await sd.get_service("agent", record.id) == changed


async def test_heartbeat_updates_last_heartbeat(sd_env: SDEnv) -> None:
    now = [1_000.0]
    sd = await sd_env.open(wall_clock=lambda: now[0])
    record = make_record("agent")
    beat = await sd.heartbeat(record)  # registers when absent
    assert beat.health_status.last_heartbeat == 1_000.0
    assert beat.health_status.registration_time == record.health_status.registration_time
    now[0] = 1_030.5
    beat = await sd.heartbeat(beat)
    stored = await sd.get_service("agent", record.id)
    assert stored.health_status.last_heartbeat == 1_030.5
    assert stored == beat


async def test_health_status_follows_heartbeat(sd_env: SDEnv) -> None:
    now = [5_000.0]
    sd = await sd_env.open(wall_clock=lambda: now[0])
    beat = await sd.heartbeat(make_record("agent"))
    stored = await sd.get_service("agent", beat.id)
    assert stored.is_healthy(60, now=5_059.0)
    assert not stored.is_healthy(60, now=5_061.0)


async def test_records_of_other_instances_are_visible(sd_env: SDEnv) -> None:
    a, b = await sd_env.open(), await sd_env.open()
    ra, rb = make_record("agent", port=1), make_record("agent", port=2)
    await a.register(ra)
    await b.register(rb)

    async def both_see_both() -> bool:
        return (
            {r.id for r in await a.discover()}
            == {r.id for r in await b.discover()}
            == {
                ra.id,
                rb.id,
            }
        )

    await until(both_see_both, what="both instances to see both records")


async def test_records_stay_while_owner_is_open(
    sd_env: SDEnv, sd: AbstractServiceDiscovery
) -> None:
    record = make_record("agent")
    await sd.register(record)
    await sd_env.pass_time(TTL + 1)  # past the TTL: only the keep-alive explains it
    assert await sd.get_service("agent", record.id) == record


async def test_crashed_owner_records_expire(sd_env: SDEnv) -> None:
    survivor, crashing = await sd_env.open(), await sd_env.open()
    kept, lost = make_record("agent", port=1), make_record("agent", port=2)
    await survivor.register(kept)
    await crashing.register(lost)
    await crashing.abort()

    async def expired() -> bool:
        await sd_env.pass_time(0.2)
        return [r.id for r in await survivor.get_service_group("agent")] == [kept.id]

    await until(expired, within=TTL + 10, what="the crashed owner's record to expire")


async def test_close_removes_own_records(sd_env: SDEnv) -> None:
    watcher, closing = await sd_env.open(), await sd_env.open()
    record = make_record("storage")
    await closing.register(record)
    await until(lambda: _has(watcher, record.id), what="the record to be visible")
    await closing.aclose()
    await closing.aclose()  # idempotent
    await until(lambda: _lacks(watcher, record.id), what="the closed owner's record to go")


async def test_lost_records_are_restored(sd_env: SDEnv) -> None:
    events: list[RecordsRestored] = []
    sd = await sd_env.open(on_records_restored=events.append)
    record = make_record("manager")
    await sd.register(record)
    await sd_env.lose(sd)

    async def restored() -> bool:
        await sd_env.pass_time(0.2)
        return bool(events) and await _has(sd, record.id)

    await until(restored, within=TTL + 10, what="the record to be restored")
    assert events[0].services == (record.key,)
    assert sd.statistics().restorations >= 1
    assert await sd.get_service("manager", record.id) == record


async def test_closed_instance_raises(sd_env: SDEnv) -> None:
    sd = await sd_env.open()
    await sd.aclose()
    with pytest.raises(ServiceDiscoveryClosed):
        await sd.discover()
    with pytest.raises(ServiceDiscoveryClosed):
        await sd.register(make_record())
    with pytest.raises(ServiceDiscoveryClosed):
        await sd.open()


async def _has(sd: AbstractServiceDiscovery, service_id: uuid.UUID) -> bool:
    return any(r.id == service_id for r in await sd.discover())


async def _lacks(sd: AbstractServiceDiscovery, service_id: uuid.UUID) -> bool:
    return not await _has(sd, service_id)


async def test_group_lookup_is_exact(sd: AbstractServiceDiscovery) -> None:
    model, v2, prefixed = make_record("model"), make_record("model.v2"), make_record("modelx")
    for record in (model, v2, prefixed):
        await sd.register(record)
    assert await sd.get_service_group("model") == [model]
    assert await sd.get_service_group("model.v2") == [v2]
    assert [r.service_group for r in await sd.discover()] == ["model", "model.v2", "modelx"]


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("service_group", {"service_group": "ml/inference"}),
        ("service_group", {"service_group": ""}),
        ("labels", {"labels": {"": "x"}}),
    ],
)
async def test_names_that_break_keys_are_refused(
    sd: AbstractServiceDiscovery, field: str, bad: dict[str, Any]
) -> None:
    good = make_record("agent").to_dict()
    with pytest.raises(ValidationError) as info:
        ServiceMetadata.model_validate({**good, **bad})
    assert info.value.errors()[0]["loc"] == (field,)
    assert field in str(info.value)
    group = bad.get("service_group", "agent")
    # Such a group cannot hold a record: looking it up finds nothing, deleting deletes nothing.
    await sd.register(make_record("ml"))
    assert await sd.get_service_group(group) == []
    with pytest.raises(ServiceNotFound):
        await sd.get_service(group, uuid.uuid4())
    await sd.deregister(group, uuid.uuid4())
    assert [r.service_group for r in await sd.discover()] == ["ml"]


async def test_unusual_group_names_round_trip(sd: AbstractServiceDiscovery) -> None:
    names = ["model.v2", "with space", "50%", "a%2Fb", "x:y", "glob*?[z]", "ünï", ".", ".."]
    records = {name: make_record(name, labels={"a/b": "1", "%": "2"}) for name in names}
    for record in records.values():
        await sd.register(record)
    for name, record in records.items():
        assert await sd.get_service_group(name) == [record], name
        assert await sd.get_service(name, record.id) == record
    assert {r.service_group for r in await sd.discover()} == set(names)
    assert sd.statistics().malformed == 0
