"""Event <-> wire conversion: anycast stream fields and the broadcast JSON (DESIGN.md §3).

Anycast entry fields: ``name``, ``source``, ``payload`` (the event's JSON text),
``metadata`` (JSON text with ``request_id``, ``user``, ``triggered_user``, ``traceparent`` in
that order) and ``_retry_count`` (decimal text, only when > 0). A broadcast is the JSON object
``{"name", "source", "payload", "metadata"}`` whose payload and metadata are JSON *strings*.

Guarantees:
- encoding reproduces every ``event_envelopes`` vector of upstream byte for byte, and decoding
  accepts each of them [tests/events/test_codec.py::test_vectors_encode_byte_for_byte];
- a missing field, malformed JSON, an unknown name or a payload that fails validation raises
  :class:`~.exceptions.EventDecodeError` / :class:`~.exceptions.UnknownEvent` naming it
  [tests/events/test_codec.py::test_malformed_entries_raise];
- unknown payload fields and unknown metadata keys are ignored
  [tests/events/test_codec.py::test_decode_ignores_unknown_fields_and_metadata_keys].

Limits:
- ``client_ip`` of the context bundle is not carried (upstream's metadata has no such key)
  [tests/events/test_codec.py::test_metadata_round_trip].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from ..contexts import ContextBundle
from ..exception import InvalidArgument, format_validation_errors
from .event import AbstractEvent
from .exceptions import EventDecodeError
from .registry import EventRegistry, default_registry
from .types import DeliveryPattern

__all__ = (
    "EMPTY_CONTEXT",
    "EventCodec",
    "EventEnvelope",
    "decode_broadcast_json",
    "encode_broadcast_json",
)

EMPTY_CONTEXT = ContextBundle()
"""The bundle of a message without metadata values."""

_EMPTY_METADATA = '{"request_id":null,"user":null,"triggered_user":null,"traceparent":null}'
_CACHE_SIZE = 512


@dataclass(frozen=True, slots=True)
class EventEnvelope:
    """A decoded message: the event, who sent it, and the context it was sent in."""

    event: AbstractEvent
    source: str
    context: ContextBundle
    retry_count: int = 0
    """Upstream's ``_retry_count`` field (0 when absent); ours counts deliveries instead."""


def encode_broadcast_json(fields: Mapping[str, str]) -> str:
    """The upstream ``events_all`` JSON text of broadcast ``fields``."""
    return orjson.dumps(
        {
            "name": fields["name"],
            "source": fields["source"],
            "payload": fields["payload"],
            "metadata": fields["metadata"],
        }
    ).decode()


def decode_broadcast_json(text: str | bytes) -> dict[str, str]:
    """The four fields of an upstream ``events_all`` JSON message."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError(f"broadcast message is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise EventDecodeError(f"broadcast message must be an object, got {type(obj).__name__}")
    fields: dict[str, str] = {}
    for key in ("name", "source", "payload", "metadata"):
        value = obj.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise EventDecodeError(
                f"broadcast field {key!r} must be a string, got {type(value).__name__}",
                data={"field": key},
            )
        fields[key] = value
    return fields


class EventCodec:
    """Encodes events to wire fields and back, resolving names through a registry.

    It keeps small caches of encoded and decoded metadata (most messages share a handful of
    contexts), so one codec per producer or dispatcher is the intended use.
    """

    __slots__ = ("_meta_decoded", "_meta_encoded", "registry")

    def __init__(self, registry: EventRegistry | None = None) -> None:
        self.registry = registry if registry is not None else default_registry
        self._meta_encoded: dict[ContextBundle, str] = {}
        self._meta_decoded: dict[str, ContextBundle] = {}

    # -- metadata -----------------------------------------------------------------------

    def encode_metadata(self, context: ContextBundle) -> str:
        """The ``metadata`` JSON text of a context bundle (upstream key order)."""
        if context is EMPTY_CONTEXT or context == EMPTY_CONTEXT:
            return _EMPTY_METADATA
        cached = self._meta_encoded.get(context)
        if cached is not None:
            return cached
        text = orjson.dumps(
            {
                "request_id": context.request_id,
                "user": None if context.user is None else context.user.model_dump(mode="json"),
                "triggered_user": (
                    None
                    if context.triggered_user is None
                    else context.triggered_user.model_dump(mode="json")
                ),
                "traceparent": context.traceparent,
            }
        ).decode()
        if len(self._meta_encoded) >= _CACHE_SIZE:
            self._meta_encoded.clear()
        self._meta_encoded[context] = text
        return text

    def known_metadata(self, text: str | None) -> ContextBundle | None:
        """The bundle of a ``metadata`` text decoded before (a cache hit), else ``None``."""
        return self._meta_decoded.get(text) if text else EMPTY_CONTEXT

    def decode_metadata(self, text: str | None) -> ContextBundle:
        """The context bundle of a ``metadata`` JSON text (``None`` or empty: no context)."""
        if not text:
            return EMPTY_CONTEXT
        cached = self._meta_decoded.get(text)
        if cached is not None:
            return cached
        try:
            obj: Any = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise EventDecodeError(
                f"field 'metadata' is not JSON: {exc}", data={"field": "metadata"}
            ) from exc
        if obj is None:
            bundle = EMPTY_CONTEXT
        elif not isinstance(obj, dict):
            raise EventDecodeError(
                f"field 'metadata' must be a JSON object, got {type(obj).__name__}",
                data={"field": "metadata"},
            )
        else:
            try:
                bundle = ContextBundle.from_dict(obj)
            except InvalidArgument as exc:
                raise EventDecodeError(
                    f"field 'metadata': {exc}", data={"field": "metadata"}
                ) from exc
            if bundle.client_ip is not None:  # not part of the wire format
                bundle = ContextBundle(
                    request_id=bundle.request_id,
                    user=bundle.user,
                    triggered_user=bundle.triggered_user,
                    traceparent=bundle.traceparent,
                )
            if bundle == EMPTY_CONTEXT:
                bundle = EMPTY_CONTEXT  # one shared instance: handlers test it by identity
        if len(self._meta_decoded) >= _CACHE_SIZE:
            self._meta_decoded.clear()
        self._meta_decoded[text] = bundle
        return bundle

    # -- events -------------------------------------------------------------------------

    def encode_fields(
        self,
        event: AbstractEvent,
        *,
        source: str,
        context: ContextBundle | None = None,
        retry_count: int = 0,
    ) -> dict[str, str]:
        """Anycast stream entry fields (also the broadcast fields) of ``event``.

        ``context`` defaults to the bundle bound in the running task.
        """
        fields = {
            "name": event.event_name,
            "source": source,
            "payload": event.model_dump_json(),
            "metadata": self.encode_metadata(
                ContextBundle.capture() if context is None else context
            ),
        }
        if retry_count > 0:
            fields["_retry_count"] = str(retry_count)
        return fields

    def decode_event(self, event_cls: type[AbstractEvent], payload: str | bytes) -> AbstractEvent:
        """Validate ``payload`` (JSON text) as ``event_cls``; unknown fields are ignored."""
        try:
            return event_cls.model_validate_json(payload)
        except ValidationError as exc:
            errors = format_validation_errors(exc.errors(include_url=False))
            detail = ", ".join(f"{e['loc'] or '<root>'}: {e['msg']}" for e in errors)
            raise EventDecodeError(
                f"payload of event {event_cls.event_name!r} is invalid: {detail}",
                data={"event_name": event_cls.event_name, "errors": errors},
            ) from exc

    def decode_fields(
        self,
        fields: Mapping[str, str],
        *,
        delivery: DeliveryPattern = DeliveryPattern.ANYCAST,
    ) -> EventEnvelope:
        """Decode stream entry (or broadcast) fields into an :class:`EventEnvelope`."""
        name = fields.get("name")
        if not name:
            raise EventDecodeError("entry has no 'name' field", data={"field": "name"})
        payload = fields.get("payload")
        if payload is None:
            raise EventDecodeError(
                f"entry of event {name!r} has no 'payload' field", data={"field": "payload"}
            )
        event = self.decode_event(self.registry.resolve(name, delivery), payload)
        return EventEnvelope(
            event=event,
            source=fields.get("source", ""),
            context=self.decode_metadata(fields.get("metadata")),
            retry_count=_retry_count(fields.get("_retry_count")),
        )

    def encode_broadcast(
        self, event: AbstractEvent, *, source: str, context: ContextBundle | None = None
    ) -> str:
        """The upstream ``events_all`` JSON text of ``event``."""
        return encode_broadcast_json(self.encode_fields(event, source=source, context=context))

    def decode_broadcast(self, text: str | bytes) -> EventEnvelope:
        """Decode an upstream ``events_all`` JSON text."""
        return self.decode_fields(decode_broadcast_json(text), delivery=DeliveryPattern.BROADCAST)


def _retry_count(text: str | None) -> int:
    if text is None:
        return 0
    try:
        value = int(text)
    except ValueError as exc:
        raise EventDecodeError(
            f"field '_retry_count' must be a decimal number, got {text!r}",
            data={"field": "_retry_count"},
        ) from exc
    if value < 0:
        raise EventDecodeError(
            f"field '_retry_count' must be >= 0, got {text!r}", data={"field": "_retry_count"}
        )
    return value
