"""Events: typed messages between Backend.AI components over the message queue (layer 5).

Event classes are frozen pydantic models declaring their wire name, domain and delivery pattern
(:class:`AbstractEvent`); :class:`EventRegistry` resolves names; :class:`EventCodec` speaks the
upstream wire format (DESIGN.md section 3). The upstream event families live in
:mod:`.families` (the bgtask ones are re-exported here).

Guarantees:
- the wire format is upstream's, byte for byte
  [tests/events/test_codec.py::test_vectors_encode_byte_for_byte];
- a duplicate event name fails when the second class is defined
  [tests/events/test_event.py::test_duplicate_name_fails_at_definition];
- unknown fields are ignored on decode
  [tests/events/test_event.py::test_decode_ignores_unknown_fields].
"""

from .codec import (
    EMPTY_CONTEXT,
    EventCodec,
    EventEnvelope,
    decode_broadcast_json,
    encode_broadcast_json,
)
from .event import AbstractAnycastEvent, AbstractBroadcastEvent, AbstractEvent
from .exceptions import (
    DispatcherStateError,
    DuplicateEventName,
    EventDecodeError,
    EventDefinitionError,
    EventError,
    HandlerConflict,
    UnknownEvent,
)
from .families import (  # importing families registers every upstream event family
    BgtaskCancelledEvent,
    BgtaskDoneEvent,
    BgtaskFailedEvent,
    BgtaskPartialSuccessEvent,
    BgtaskStatus,
    BgtaskUpdatedEvent,
)
from .registry import EventRegistry, default_registry
from .types import ALL_IDS, DeliveryPattern, EventCacheDomain, EventDomain, HandlerId

__all__ = (
    "ALL_IDS",
    "EMPTY_CONTEXT",
    "AbstractAnycastEvent",
    "AbstractBroadcastEvent",
    "AbstractEvent",
    "BgtaskCancelledEvent",
    "BgtaskDoneEvent",
    "BgtaskFailedEvent",
    "BgtaskPartialSuccessEvent",
    "BgtaskStatus",
    "BgtaskUpdatedEvent",
    "DeliveryPattern",
    "DispatcherStateError",
    "DuplicateEventName",
    "EventCacheDomain",
    "EventCodec",
    "EventDecodeError",
    "EventDefinitionError",
    "EventDomain",
    "EventEnvelope",
    "EventError",
    "EventRegistry",
    "HandlerConflict",
    "HandlerId",
    "UnknownEvent",
    "decode_broadcast_json",
    "default_registry",
    "encode_broadcast_json",
)
