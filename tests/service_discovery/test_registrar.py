"""ServiceRegistrar: registration for a context's lifetime, heartbeats, upstream's events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ai.backend.common.clients.valkey import ValkeyTarget
from ai.backend.common.events import EventCodec, EventProducer
from ai.backend.common.events.families import ServiceDeregisteredEvent, ServiceRegisteredEvent
from ai.backend.common.message_queue import (
    MemoryBroker,
    MemoryMessageQueue,
    QueueClosed,
    QueueConfig,
)
from ai.backend.common.service_discovery import (
    MemoryServiceDiscovery,
    RedisServiceDiscovery,
    ServiceDiscoveryUnavailable,
    ServiceMetadata,
    ServiceNotFound,
    ServiceRegistrar,
)
from tests._helpers import until

from .conftest import make_record


async def test_events_are_published() -> None:
    broker = MemoryBroker()
    record = make_record("storage-proxy", labels={"zone": "a"})
    async with (
        MemoryMessageQueue(broker, QueueConfig(source="sp", group="watcher")) as queue,
        MemoryServiceDiscovery() as sd,
    ):
        producer = EventProducer(queue, "storage-proxy-1")
        async with ServiceRegistrar(sd, record, producer=producer, heartbeat_interval=0.05) as reg:
            assert await sd.get_service("storage-proxy", record.id) == reg.record
            await until(lambda: reg.statistics().heartbeats >= 2, what="two heartbeats")
        with_id = await _drain(queue)
        with pytest.raises(ServiceNotFound):
            await sd.get_service("storage-proxy", record.id)
    registered = [e for e in with_id if isinstance(e, ServiceRegisteredEvent)]
    deregistered = [e for e in with_id if isinstance(e, ServiceDeregisteredEvent)]
    assert len(registered) >= 3  # the registration, then one per heartbeat
    first = registered[0]
    assert first.instance_id == str(record.id)
    assert first.service_group == "storage-proxy"
    assert first.labels == {"zone": "a"}
    assert first.endpoints[0].port == record.endpoint.port
    assert first.endpoints[0].metadata["prometheus_address"] == record.endpoint.prometheus_address
    assert deregistered == [
        ServiceDeregisteredEvent(instance_id=str(record.id), service_group="storage-proxy")
    ]
    assert isinstance(with_id[-1], ServiceDeregisteredEvent)


@pytest.mark.redis
async def test_heartbeat_failures_are_reported(redis_server_factory: Any) -> None:
    server = redis_server_factory()
    errors: list[Exception] = []
    record = make_record("agent")
    async with (
        RedisServiceDiscovery(ValkeyTarget.from_url(server.url, request_timeout=0.5), ttl=5) as sd,
        ServiceRegistrar(
            sd, record, heartbeat_interval=0.05, on_heartbeat_error=errors.append
        ) as reg,
    ):
        await asyncio.to_thread(server.kill)
        await until(lambda: len(errors) >= 2, what="two failed heartbeats")
        assert all(isinstance(e, ServiceDiscoveryUnavailable) for e in errors)
        beats = reg.statistics().heartbeats
        await asyncio.to_thread(server.start)  # empty again: the heartbeat writes it back
        await until(lambda: reg.statistics().heartbeats > beats, what="heartbeats again")
        await until(lambda: _present(sd, record), what="the record to be back")
    assert reg.statistics().heartbeat_failures >= 2


async def _present(sd: RedisServiceDiscovery, record: ServiceMetadata) -> bool:
    try:
        await sd.get_service(record.service_group, record.id)
    except ServiceNotFound:
        return False
    return True


async def _drain(queue: MemoryMessageQueue) -> list[object]:
    codec = EventCodec()
    events: list[object] = []
    consume = queue.consume()
    try:
        while True:
            async with asyncio.timeout(0.3):
                message = await anext(consume)
            events.append(codec.decode_fields(message.fields).event)
            await queue.ack(message.msg_id)
    except TimeoutError:
        return events
    finally:
        await consume.aclose()


async def test_failed_announcement_deregisters() -> None:
    broker = MemoryBroker()
    queue = MemoryMessageQueue(broker, QueueConfig(source="sp", group="watcher"))  # never opened
    record = make_record("storage-proxy")
    async with MemoryServiceDiscovery() as sd:
        producer = EventProducer(queue, "storage-proxy-1")
        with pytest.raises(QueueClosed):
            async with ServiceRegistrar(sd, record, producer=producer):
                pytest.fail("entered although the announcement failed")
        with pytest.raises(ServiceNotFound):
            await sd.get_service("storage-proxy", record.id)
        assert sd.statistics().owned == 0


async def test_failed_loop_still_deregisters() -> None:
    calls = 0

    def clock() -> float:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("a bug in the heartbeat path")
        return 1_000.0

    record = make_record("agent")
    async with MemoryServiceDiscovery(wall_clock=clock) as sd:
        with pytest.raises(ExceptionGroup) as info:
            async with ServiceRegistrar(sd, record, heartbeat_interval=0.01):
                await until(lambda: calls > 1, what="the failing heartbeat")
        assert info.group_contains(RuntimeError, match="a bug")
        with pytest.raises(ServiceNotFound):
            await sd.get_service("agent", record.id)
        assert sd.statistics().owned == 0
