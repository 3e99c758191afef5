from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from ai.backend.common.contexts import ContextBundle
from ai.backend.common.events import (
    AbstractAnycastEvent,
    AbstractBroadcastEvent,
    AbstractEvent,
    BgtaskPartialSuccessEvent,
    BgtaskUpdatedEvent,
    DeliveryPattern,
    DuplicateEventName,
    EventCodec,
    EventDefinitionError,
    EventDomain,
    EventError,
    EventRegistry,
    UnknownEvent,
    default_registry,
)
from ai.backend.common.events.families import (
    SessionStartedAnycastEvent,
    SessionStartedBroadcastEvent,
)


def test_duplicate_name_fails_at_definition() -> None:
    registry = EventRegistry()

    class First(AbstractAnycastEvent, name="dup_test", domain=EventDomain.AGENT, registry=registry):
        pass

    with pytest.raises(DuplicateEventName) as info:

        class Second(
            AbstractAnycastEvent, name="dup_test", domain=EventDomain.KERNEL, registry=registry
        ):
            pass

    message = str(info.value)
    assert "First" in message
    assert "Second" in message
    assert "dup_test" in message
    assert isinstance(info.value, EventError)
    assert isinstance(info.value, TypeError)
    assert registry.resolve("dup_test") is First


def test_duplicate_of_an_upstream_name_in_default_registry_fails() -> None:
    with pytest.raises(DuplicateEventName, match="BgtaskUpdatedEvent"):

        class MyUpdated(AbstractBroadcastEvent, name="bgtask_updated", domain=EventDomain.BGTASK):
            pass

    assert default_registry.resolve("bgtask_updated") is BgtaskUpdatedEvent


def test_same_name_for_both_delivery_patterns_is_allowed() -> None:
    registry = EventRegistry()

    class A(AbstractAnycastEvent, name="both_ways", domain=EventDomain.AGENT, registry=registry):
        pass

    class B(AbstractBroadcastEvent, name="both_ways", domain=EventDomain.AGENT, registry=registry):
        pass

    assert registry.resolve("both_ways", DeliveryPattern.ANYCAST) is A
    assert registry.resolve("both_ways", DeliveryPattern.BROADCAST) is B
    assert len(registry) == 2


def test_resolve_prefers_delivery_pattern() -> None:
    reg = default_registry
    assert reg.resolve("session_started", DeliveryPattern.ANYCAST) is SessionStartedAnycastEvent
    assert reg.resolve("session_started", DeliveryPattern.BROADCAST) is (
        SessionStartedBroadcastEvent
    )
    # a name declared for one pattern only resolves from the other pattern's channel too
    assert reg.resolve("bgtask_updated", DeliveryPattern.ANYCAST) is BgtaskUpdatedEvent
    with pytest.raises(UnknownEvent, match="never_declared"):
        reg.resolve("never_declared")
    assert reg.get("never_declared") is None


def test_redefining_the_same_class_replaces_it() -> None:
    registry = EventRegistry()

    def define() -> type[AbstractEvent]:
        class Reloaded(
            AbstractAnycastEvent, name="reloaded", domain=EventDomain.LOG, registry=registry
        ):
            value: int = 0

        return Reloaded

    first = define()
    second = define()
    assert first is not second
    assert registry.resolve("reloaded") is second
    assert len(registry) == 1


def test_bad_definitions_fail() -> None:
    registry = EventRegistry()
    with pytest.raises(EventDefinitionError, match="snake_case"):

        class BadName(AbstractAnycastEvent, name="BadName", domain=EventDomain.LOG):
            pass

    with pytest.raises(EventDefinitionError, match="domain="):

        class NoDomain(AbstractAnycastEvent, name="no_domain", registry=registry):
            pass

    with pytest.raises(EventDefinitionError, match="delivery="):

        class NoDelivery(AbstractEvent, name="no_delivery", domain=EventDomain.LOG):
            pass

    with pytest.raises(EventDefinitionError, match="EventDomain"):

        class WrongDomain(
            AbstractAnycastEvent,
            name="wrong_domain",
            domain="log",
            registry=registry,
        ):
            pass

    class Concrete(
        AbstractAnycastEvent, name="concrete", domain=EventDomain.LOG, registry=registry
    ):
        pass

    with pytest.raises(EventDefinitionError, match="without a name"):

        class Unnamed(Concrete):
            pass

    assert len(registry) == 1


def test_class_settings_are_readable() -> None:
    assert BgtaskUpdatedEvent.event_name == "bgtask_updated"
    assert BgtaskUpdatedEvent.event_domain is EventDomain.BGTASK
    assert BgtaskUpdatedEvent.delivery_pattern is DeliveryPattern.BROADCAST
    assert BgtaskUpdatedEvent.is_concrete
    task_id = uuid.uuid4()
    event = BgtaskUpdatedEvent(task_id=task_id, current_progress=1, total_progress=2)
    assert event.domain_id() == str(task_id)
    assert event.cache_id() == f"bgtask.{task_id}"
    assert SessionStartedAnycastEvent.delivery_pattern is DeliveryPattern.ANYCAST
    assert isinstance(
        SessionStartedAnycastEvent(session_id=uuid.uuid4(), creation_id="c"), AbstractAnycastEvent
    )


def test_decode_ignores_unknown_fields() -> None:
    task_id = uuid.uuid4()
    event = BgtaskPartialSuccessEvent.model_validate_json(
        f'{{"task_id":"{task_id}","message":"m","errors":["e1"],"new_field":{{"a":1}}}}'
    )
    assert event == BgtaskPartialSuccessEvent(task_id=task_id, message="m", errors=["e1"])
    assert "new_field" not in event.model_dump_json()


def test_events_are_frozen() -> None:
    event = BgtaskUpdatedEvent(task_id=uuid.uuid4(), current_progress=1, total_progress=2)
    with pytest.raises(pydantic.ValidationError):
        event.message = "changed"  # type: ignore[misc]


_SAMPLES: dict[object, object] = {
    uuid.UUID: uuid.UUID("8420b8d9-b261-d0d2-a1c2-d9bf0dcf035b"),
    str: "text",
    float: 1.5,
    int: 7,
    dict[str, Any]: {"k": [1, "v"]},
    dict[str, str]: {"k": "v"},
    list[str]: ["a", "b"],
    datetime: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
}


_FAMILIES = "ai.backend.common.events.families."


def test_every_family_class_round_trips() -> None:
    codec = EventCodec()
    families = [c for c in default_registry if c.__module__.startswith(_FAMILIES)]
    assert len(families) >= 50
    for cls in families:
        assert cls.is_concrete
        assert re.fullmatch(r"[a-z][a-z0-9_]*", cls.event_name)
        values = {
            name: _SAMPLES[info.annotation]
            for name, info in cls.model_fields.items()
            if info.is_required()
        }
        event = cls(**values)
        fields = codec.encode_fields(event, source="test", context=ContextBundle())
        decoded = codec.decode_fields(fields, delivery=cls.delivery_pattern).event
        assert type(decoded) is cls
        assert decoded == event
