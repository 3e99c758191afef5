"""Register one service for the lifetime of a context: heartbeats and upstream's SD events.

``async with ServiceRegistrar(discovery, record, producer=producer):`` registers ``record``,
publishes ``service_registered`` (upstream's :class:`ServiceRegisteredEvent`, also on every
heartbeat, as upstream's publisher does), heartbeats every ``heartbeat_interval`` seconds, and on
exit deregisters and publishes ``service_deregistered``.

Guarantees:
- register/deregister publish upstream's events with the record's id, group and endpoint
  [tests/service_discovery/test_registrar.py::test_events_are_published];
- a failing heartbeat is reported to ``on_heartbeat_error`` and retried next interval, never
  stopping the loop
  [tests/service_discovery/test_registrar.py::test_heartbeat_failures_are_reported];
- the record never outlives the registrar: if announcing it fails on entry it is deregistered
  before the error is raised, and on exit it is deregistered even if the heartbeat loop failed
  (whose error is then raised)
  [tests/service_discovery/test_registrar.py::test_failed_announcement_deregisters]
  [tests/service_discovery/test_registrar.py::test_failed_loop_still_deregisters].
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from ..aio import TaskOwner
from ..events import EventProducer
from ..events.families import (
    ServiceDeregisteredEvent,
    ServiceEndpointInfo,
    ServiceRegisteredEvent,
)
from ..exception import BackendAIError
from .abc import AbstractServiceDiscovery
from .types import ServiceMetadata

__all__ = ("RegistrarStatistics", "ServiceRegistrar", "registered_event")


def registered_event(record: ServiceMetadata) -> ServiceRegisteredEvent:
    """Upstream's ``service_registered`` event describing ``record``."""
    endpoint = record.endpoint
    return ServiceRegisteredEvent(
        instance_id=str(record.id),
        service_group=record.service_group,
        display_name=record.display_name,
        version=record.version,
        labels=dict(record.labels),
        endpoints=[
            ServiceEndpointInfo(
                role="main",
                scope="public",
                address=endpoint.address,
                port=endpoint.port,
                protocol=endpoint.protocol,
                metadata={"prometheus_address": endpoint.prometheus_address},
            )
        ],
        startup_time=datetime.fromtimestamp(record.health_status.registration_time, tz=UTC),
    )


@dataclass(frozen=True, slots=True)
class RegistrarStatistics:
    """Counters of one registrar."""

    heartbeats: int
    """Heartbeats written."""
    heartbeat_failures: int
    """Heartbeats (or their events) that failed."""
    events_published: int
    """Events published."""


class ServiceRegistrar:
    """Keeps one record registered and heartbeated while the context is open.

    ``discovery`` and ``producer`` are the caller's (opened and closed by the caller).
    """

    def __init__(
        self,
        discovery: AbstractServiceDiscovery,
        record: ServiceMetadata,
        *,
        heartbeat_interval: float = 10.0,
        producer: EventProducer | None = None,
        publish_heartbeats: bool = True,
        on_heartbeat_error: Callable[[BackendAIError], None] | None = None,
    ) -> None:
        if heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval must be positive: {heartbeat_interval!r}")
        self._discovery = discovery
        self._record = record
        self._interval = heartbeat_interval
        self._producer = producer
        self._publish_heartbeats = publish_heartbeats
        self._on_error = on_heartbeat_error
        self._tasks = TaskOwner("service-registrar")
        self._heartbeats = 0
        self._failures = 0
        self._published = 0

    @property
    def record(self) -> ServiceMetadata:
        """The record as last written."""
        return self._record

    async def __aenter__(self) -> Self:
        """Register, announce, start heartbeating; if announcing fails (or this is cancelled)
        after the record was written, the record is deregistered before the error is raised."""
        self._record = await self._discovery.heartbeat(self._record)
        try:
            await self._publish(registered_event(self._record))
            await self._tasks.start()
            self._tasks.spawn(self._loop(), "heartbeat")
        except BaseException as exc:
            await self._tasks.stop()
            await self._undo_registration(exc)
            raise
        return self

    async def _undo_registration(self, exc: BaseException) -> None:
        record = self._record
        try:
            # Short cleanup that must run even while cancelled: a record nobody announced and
            # nobody heartbeats must not stay registered (kept alive by the backend).
            await asyncio.shield(self._discovery.deregister(record.service_group, record.id))
        except BackendAIError as cleanup:
            exc.add_note(f"deregistering {record.service_group}/{record.id} failed: {cleanup!r}")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop heartbeating, deregister, announce it; a failure of the heartbeat loop is
        raised after the record was deregistered."""
        try:
            await self._tasks.stop()
        finally:
            record = self._record
            await self._discovery.deregister(record.service_group, record.id)
            await self._publish(
                ServiceDeregisteredEvent(
                    instance_id=str(record.id), service_group=record.service_group
                )
            )

    async def _publish(self, event: ServiceRegisteredEvent | ServiceDeregisteredEvent) -> None:
        if self._producer is not None:
            await self._producer.anycast_event(event)
            self._published += 1

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                self._record = await self._discovery.heartbeat(self._record)
                self._heartbeats += 1
                if self._publish_heartbeats:
                    await self._publish(registered_event(self._record))
            except BackendAIError as exc:
                # A heartbeat that fails (backend or queue down) is retried next interval;
                # the record itself is kept alive by the backend meanwhile. Anything else is
                # a bug: it ends the loop and is raised when the registrar exits.
                self._failures += 1
                if self._on_error is not None:
                    self._on_error(exc)

    def statistics(self) -> RegistrarStatistics:
        """Heartbeats, failures and events published so far."""
        return RegistrarStatistics(self._heartbeats, self._failures, self._published)
