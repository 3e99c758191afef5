from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from ai.backend.common.contexts import (
    ContextBundle,
    bind_request_id,
    bind_traceparent,
    bind_triggered_user,
    bind_user,
)
from ai.backend.common.data.user import UserData, UserRole
from ai.backend.common.events import (
    AbstractEvent,
    BgtaskDoneEvent,
    BgtaskUpdatedEvent,
    DeliveryPattern,
    EventCodec,
    EventDecodeError,
    UnknownEvent,
    decode_broadcast_json,
    encode_broadcast_json,
)
from tests._vectors import load_vectors

VECTORS: list[dict[str, Any]] = load_vectors()["event_envelopes"]
IDS = [v["event_name"] for v in VECTORS]


def _context_of(metadata_text: str) -> ContextBundle:
    meta = orjson.loads(metadata_text)
    return ContextBundle(
        request_id=meta["request_id"],
        user=None if meta["user"] is None else UserData.model_validate(meta["user"]),
        triggered_user=(
            None
            if meta["triggered_user"] is None
            else UserData.model_validate(meta["triggered_user"])
        ),
        traceparent=meta["traceparent"],
    )


def _event_of(vector: dict[str, Any]) -> AbstractEvent:
    codec = EventCodec()
    cls = codec.registry.resolve(vector["event_name"], DeliveryPattern(vector["delivery"]))
    assert cls.event_domain == vector["domain"]
    assert cls.delivery_pattern == vector["delivery"]
    return cls.model_validate(orjson.loads(vector["event_json"]))


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_vectors_encode_byte_for_byte(vector: dict[str, Any]) -> None:
    codec = EventCodec()
    event = _event_of(vector)
    assert event.model_dump_json() == vector["event_json"]
    fields = vector["anycast_stream_fields"]
    context = _context_of(fields["metadata"])
    encoded = codec.encode_fields(event, source=fields["source"], context=context)
    assert encoded == fields
    assert list(encoded) == list(fields)  # same field order too
    retry = codec.encode_fields(event, source=fields["source"], context=context, retry_count=2)
    assert retry == vector["anycast_stream_fields_retry2"]
    assert (
        codec.encode_broadcast(event, source=fields["source"], context=context)
        == (vector["broadcast_json"])
    )
    assert encode_broadcast_json(encoded) == vector["broadcast_json"]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_vectors_decode(vector: dict[str, Any]) -> None:
    codec = EventCodec()
    expected = _event_of(vector)
    fields = vector["anycast_stream_fields"]
    context = _context_of(fields["metadata"])
    for entry, retry_count in (
        (fields, 0),
        (vector["anycast_stream_fields_retry2"], 2),
    ):
        env = codec.decode_fields(entry)
        assert env.event == expected
        assert type(env.event) is type(expected)
        assert env.source == fields["source"]
        assert env.context == context
        assert env.retry_count == retry_count
    env = codec.decode_broadcast(vector["broadcast_json"])
    assert env.event == expected
    assert env.context == context
    assert decode_broadcast_json(vector["broadcast_json"]) == fields


def test_metadata_round_trip() -> None:
    codec = EventCodec()
    user = UserData(user_id=uuid.uuid4(), role=UserRole.ADMIN, is_admin=True)
    other = UserData(user_id=uuid.uuid4())
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with (
        bind_request_id("req-abc"),
        bind_user(user),
        bind_triggered_user(other),
        bind_traceparent(tp),
    ):
        fields = codec.encode_fields(BgtaskDoneEvent(task_id=uuid.uuid4()), source="x")
        captured = ContextBundle.capture()
    meta = orjson.loads(fields["metadata"])
    assert list(meta) == ["request_id", "user", "triggered_user", "traceparent"]
    assert meta["request_id"] == "req-abc"
    assert meta["traceparent"] == tp
    decoded = EventCodec().decode_metadata(fields["metadata"])
    assert decoded == captured
    assert decoded.client_ip is None


def test_decode_ignores_unknown_fields_and_metadata_keys() -> None:
    codec = EventCodec()
    task_id = uuid.uuid4()
    fields = {
        "name": "bgtask_updated",
        "source": "peer",
        "payload": orjson.dumps(
            {
                "task_id": str(task_id),
                "current_progress": 1,
                "total_progress": 2,
                "message": "m",
                "added_in_a_future_version": [1, 2],
            }
        ).decode(),
        "metadata": '{"request_id":"r1","user":null,"triggered_user":null,'
        '"traceparent":null,"baggage":"x"}',
        "another_new_field": "ignored",
    }
    env = codec.decode_fields(fields, delivery=DeliveryPattern.BROADCAST)
    assert env.event == BgtaskUpdatedEvent(
        task_id=task_id, current_progress=1.0, total_progress=2.0, message="m"
    )
    assert env.context.request_id == "r1"


def test_missing_metadata_means_empty_context() -> None:
    env = EventCodec().decode_fields(
        {"name": "bgtask_done", "source": "s", "payload": f'{{"task_id":"{uuid.uuid4()}"}}'}
    )
    assert env.context == ContextBundle()


@pytest.mark.parametrize(
    ("fields", "error", "fragment"),
    [
        ({"source": "s", "payload": "{}"}, EventDecodeError, "'name'"),
        ({"name": "bgtask_done", "source": "s"}, EventDecodeError, "'payload'"),
        ({"name": "bgtask_done", "payload": "{not json"}, EventDecodeError, "bgtask_done"),
        ({"name": "bgtask_done", "payload": '{"task_id":"nope"}'}, EventDecodeError, "task_id"),
        ({"name": "no_such_event_anywhere", "payload": "{}"}, UnknownEvent, "no_such_event"),
        (
            {"name": "bgtask_done", "payload": f'{{"task_id":"{uuid.uuid4()}"}}', "metadata": "["},
            EventDecodeError,
            "metadata",
        ),
        (
            {
                "name": "bgtask_done",
                "payload": f'{{"task_id":"{uuid.uuid4()}"}}',
                "metadata": '{"user":{"user_id":"not-a-uuid"}}',
            },
            EventDecodeError,
            "metadata",
        ),
        (
            {
                "name": "bgtask_done",
                "payload": f'{{"task_id":"{uuid.uuid4()}"}}',
                "_retry_count": "x",
            },
            EventDecodeError,
            "_retry_count",
        ),
    ],
)
def test_malformed_entries_raise(
    fields: dict[str, str], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        EventCodec().decode_fields(fields)


@pytest.mark.parametrize("text", ["[1]", "nope", '{"name": 3, "payload": "{}"}'])
def test_malformed_broadcast_json_raises(text: str) -> None:
    with pytest.raises(EventDecodeError):
        EventCodec().decode_broadcast(text)
