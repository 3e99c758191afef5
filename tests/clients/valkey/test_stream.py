"""ValkeyStreamClient against a real Redis: batches, groups, claims, pending-safe trimming."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ai.backend.common.clients.valkey import (
    ValkeyClient,
    ValkeyNoGroup,
    ValkeyStreamClient,
    ValkeyTarget,
)


@pytest.fixture
async def streams(redis_url: str) -> AsyncIterator[ValkeyStreamClient]:
    async with ValkeyClient(ValkeyTarget.from_url(redis_url)) as client:
        yield ValkeyStreamClient(client)


async def test_add_batch_and_read_group(streams: ValkeyStreamClient) -> None:
    assert await streams.create_group("s", "g") is True
    assert await streams.create_group("s", "g") is False  # BUSYGROUP is not an error
    batch = [{"name": f"e{i}", "payload": "{}"} for i in range(5)]
    ids = await streams.add_batch("s", batch)
    assert len(ids) == 5
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    ((key, entries),) = await streams.read_group("g", "c1", {"s": ">"}, count=10, block_ms=10)
    assert key == "s"
    assert [e.id for e in entries] == ids
    assert entries[0].fields == {b"name": b"e0", b"payload": b"{}"}
    assert list(entries[0].fields) == [b"name", b"payload"]  # field order kept
    assert await streams.read_group("g", "c1", {"s": ">"}, count=10, block_ms=10) == []
    summary = await streams.pending_summary("s", "g")
    assert (summary.count, summary.min_id, summary.consumers) == (5, ids[0], {"c1": 5})
    assert await streams.ack("s", "g", *ids[:3]) == 3
    pending = await streams.pending("s", "g", consumer="c1")
    assert [(p.id, p.consumer, p.deliveries) for p in pending] == [
        (ids[3], "c1", 1),
        (ids[4], "c1", 1),
    ]
    with pytest.raises(ValkeyNoGroup):
        await streams.read_group("nogroup", "c", {"s": ">"}, count=1)


async def test_claim_keeps_ids_and_counts(streams: ValkeyStreamClient) -> None:
    await streams.create_group("s", "g")
    ids = await streams.add_batch("s", [{"n": "1"}, {"n": "2"}])
    await streams.read_group("g", "c1", {"s": ">"}, count=10)
    claimed = await streams.claim("s", "g", "c2", ids)
    assert [e.id for e in claimed] == ids
    assert [p.deliveries for p in await streams.pending("s", "g", consumer="c2")] == [2, 2]
    _, auto, deleted = await streams.autoclaim("s", "g", "c3", min_idle_ms=0)
    assert ([e.id for e in auto], deleted) == (ids, [])


async def test_claim_from_moves_only_that_consumers_entries(
    streams: ValkeyStreamClient,
) -> None:
    await streams.create_group("s", "g")
    ids = await streams.add_batch("s", [{"n": str(i)} for i in range(5)])
    await streams.read_group("g", "dead", {"s": ">"}, count=3)
    await streams.read_group("g", "alive", {"s": ">"}, count=2)
    moved = await streams.claim_from("s", "g", "dead", "heir")
    assert [(m.id, m.deliveries) for m in moved] == [(i, 2) for i in ids[:3]]
    assert moved[0].fields == {b"n": b"0"}
    assert await streams.claim_from("s", "g", "dead", "other") == []  # moved once
    owners = {p.id: p.consumer for p in await streams.pending("s", "g")}
    assert owners == {
        ids[0]: "heir",
        ids[1]: "heir",
        ids[2]: "heir",
        ids[3]: "alive",
        ids[4]: "alive",
    }
    # an idle bound keeps fresh entries where they are
    assert await streams.claim_from("s", "g", "alive", "heir", min_idle_ms=60_000) == []


async def test_claim_from_reports_deleted_entries(streams: ValkeyStreamClient) -> None:
    await streams.create_group("s", "g")
    ids = await streams.add_batch("s", [{"n": "1"}, {"n": "2"}])
    await streams.read_group("g", "dead", {"s": ">"}, count=2)
    await streams.delete("s", ids[0])
    moved = await streams.claim_from("s", "g", "dead", "heir")
    assert [(m.id, m.fields) for m in moved] == [(ids[0], None), (ids[1], {b"n": b"2"})]


async def test_trim_retained_keeps_pending_and_undelivered(streams: ValkeyStreamClient) -> None:
    await streams.create_group("s", "fast")
    await streams.create_group("s", "slow")
    ids = await streams.add_batch("s", [{"n": str(i)} for i in range(600)])
    (_, fast) = (await streams.read_group("fast", "c", {"s": ">"}, count=600))[0]
    await streams.ack("s", "fast", *(e.id for e in fast))
    (_, slow) = (await streams.read_group("slow", "c", {"s": ">"}, count=300))[0]
    await streams.ack("s", "slow", *(e.id for e in slow[:250]))
    # "slow" still has 250..299 pending and 300..599 undelivered
    await streams.trim_retained("s", maxlen=10)
    kept = [e.id for e in await streams.range("s")]
    assert kept[-350:] == ids[250:]
    assert len(kept) < 600  # acked history below the oldest pending entry went
    # an age bound alone trims nothing that a group still needs either
    await streams.trim_retained("s", maxlen=10_000, cutoff_id=ids[-1])
    assert [e.id for e in await streams.range("s")][-350:] == ids[250:]
    await streams.ack("s", "slow", *(e.id for e in slow[250:]))
    (_, rest) = (await streams.read_group("slow", "c", {"s": ">"}, count=300))[0]
    await streams.ack("s", "slow", *(e.id for e in rest))
    await streams.trim_retained("s", maxlen=10)
    assert await streams.length("s") <= 100  # whole nodes go (approximate trimming)
    assert await streams.last_id("s") == ids[-1]


async def test_trim_retained_without_groups_and_missing_stream(
    streams: ValkeyStreamClient,
) -> None:
    assert await streams.trim_retained("missing", maxlen=1) == 0
    await streams.add_batch("s", [{"n": str(i)} for i in range(300)])
    await streams.trim_retained("s", maxlen=50)
    assert await streams.length("s") <= 100
