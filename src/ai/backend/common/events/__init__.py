"""Events: typed messages between Backend.AI components over the message queue (layer 5).

Event classes are frozen pydantic models declaring their wire name, domain and delivery pattern
(:class:`AbstractEvent`); :class:`EventRegistry` resolves names; :class:`EventCodec` speaks the
upstream wire format (DESIGN.md section 3). :class:`EventProducer` publishes on an
:class:`~ai.backend.common.message_queue.AbstractMessageQueue`, :class:`EventDispatcher` runs
handlers for what arrives, and :class:`EventHub` fans events out to in-process listeners
(server-sent events). The upstream event families live in :mod:`.families` (the bgtask ones are
re-exported here).

Guarantees:
- the wire format is upstream's, byte for byte
  [tests/events/test_codec.py::test_vectors_encode_byte_for_byte];
- a duplicate event name fails when the second class is defined
  [tests/events/test_event.py::test_duplicate_name_fails_at_definition];
- unknown fields are ignored on decode
  [tests/events/test_event.py::test_decode_ignores_unknown_fields];
- the producer writes the caller's context bundle into the metadata, and handlers run inside it
  [tests/events/test_producer.py::test_metadata_is_captured_from_the_context]
  [tests/events/test_dispatcher.py::test_context_is_restored_in_handlers];
- anycast handlers are acknowledged one by one: a redelivered message re-runs only the handlers
  that did not succeed [tests/events/test_dispatcher.py::test_redelivery_runs_only_failed_handlers];
- a handler that always fails ends in the dead-letter stream with its error, and can be replayed
  [tests/events/test_dispatcher.py::test_always_failing_handler_dead_letters];
- undecodable messages are dead-lettered with the reason; handler errors are reported and never
  stop the pump [tests/events/test_dispatcher.py::test_undecodable_payload_is_dead_lettered]
  [tests/events/test_dispatcher.py::test_handler_errors_are_reported_and_pump_goes_on];
- coalesced messages are acked
  [tests/events/test_dispatcher.py::test_coalescing_acks_every_message];
- bounded concurrency, and a close that drains, nacks the rest and leaves no task
  [tests/events/test_dispatcher.py::test_concurrency_is_bounded]
  [tests/events/test_dispatcher.py::test_close_drains_then_cancels];
- a consumer process killed with SIGKILL mid-batch loses no event and re-runs only the handler
  calls that had not recorded their success
  [tests/events/test_dispatcher_kill.py::test_kill_9_mid_batch];
- a late hub subscriber first gets the cached latest event of its id
  [tests/events/test_hub.py::test_late_subscriber_gets_cached_event].

Limits:
- delivery is at-least-once: a handler whose success was not recorded yet when its process died
  runs again [tests/events/test_dispatcher_kill.py::test_kill_9_mid_batch];
- anycast messages with no handler here (unknown names included) are acked without decoding
  [tests/events/test_dispatcher.py::test_unhandled_names_are_acked].
"""

from .codec import (
    EMPTY_CONTEXT,
    EventCodec,
    EventEnvelope,
    decode_broadcast_json,
    encode_broadcast_json,
)
from .dispatcher import (
    CoalescingOptions,
    DispatcherStatistics,
    DispatchFailure,
    EventCounts,
    EventDispatcher,
    EventHandler,
    EventObserver,
    FailureStage,
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
from .hub import EventFetcher, EventHub, EventPropagator, HubStatistics, QueuePropagator
from .producer import EventProducer, ProducerStatistics
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
    "CoalescingOptions",
    "DeliveryPattern",
    "DispatchFailure",
    "DispatcherStateError",
    "DispatcherStatistics",
    "DuplicateEventName",
    "EventCacheDomain",
    "EventCodec",
    "EventCounts",
    "EventDecodeError",
    "EventDefinitionError",
    "EventDispatcher",
    "EventDomain",
    "EventEnvelope",
    "EventError",
    "EventFetcher",
    "EventHandler",
    "EventHub",
    "EventObserver",
    "EventProducer",
    "EventPropagator",
    "EventRegistry",
    "FailureStage",
    "HandlerConflict",
    "HandlerId",
    "HubStatistics",
    "ProducerStatistics",
    "QueuePropagator",
    "UnknownEvent",
    "decode_broadcast_json",
    "default_registry",
    "encode_broadcast_json",
)
