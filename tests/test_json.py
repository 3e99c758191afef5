"""Tests of ai.backend.common.json: the orjson helpers every module encodes with."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from ai.backend.common.exception import InvalidArgument
from ai.backend.common.json import dump_json, dump_json_str, load_json
from ai.backend.common.types import BinarySize, HostPortPair, ResourceSlot


class _Kind(enum.StrEnum):
    BATCH = "batch"


class _Level(enum.IntEnum):
    HIGH = 2


@dataclasses.dataclass
class _Point:
    x: int
    y: int


class _Model(BaseModel):
    id: uuid.UUID
    at: datetime.datetime
    amount: Decimal
    kind: _Kind


class _Pair(NamedTuple):
    left: int
    right: str


def test_dump_uuid_decimal_datetime() -> None:
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=datetime.UTC)
    payload = {
        "id": ident,
        "at": when,
        "day": datetime.date(2024, 1, 2),
        "amount": Decimal("0.1"),
        "big": Decimal("12345678901234567890.123456789"),
    }
    decoded = load_json(dump_json(payload))
    assert decoded == {
        "id": "12345678-1234-5678-1234-567812345678",
        "at": "2024-01-02T03:04:05.600000+00:00",
        "day": "2024-01-02",
        "amount": "0.1",
        "big": "12345678901234567890.123456789",
    }
    assert uuid.UUID(decoded["id"]) == ident
    assert datetime.datetime.fromisoformat(decoded["at"]) == when
    assert Decimal(decoded["big"]) == payload["big"]  # no float rounding on the way


@given(st.decimals(allow_nan=False))
def test_decimal_round_trips_exactly(value: Decimal) -> None:
    assert Decimal(load_json(dump_json({"v": value}))["v"]) == value


def test_dump_enums_dataclasses_sets_mappings() -> None:
    payload = {
        "kind": _Kind.BATCH,
        "level": _Level.HIGH,
        "point": _Point(1, 2),
        "tags": {"b", "a"},
        "frozen": frozenset({3}),
        "slots": ResourceSlot({"cpu": "1.5"}),
        "size": BinarySize(1024),
    }
    assert load_json(dump_json(payload)) == {
        "kind": "batch",
        "level": 2,
        "point": {"x": 1, "y": 2},
        "tags": ["a", "b"],
        "frozen": [3],
        "slots": {"cpu": "1.5"},
        "size": 1024,
    }


def test_dump_named_tuples_as_arrays() -> None:
    assert dump_json(_Pair(1, "a")) == b'[1,"a"]'
    assert dump_json({"addr": HostPortPair("::1", 8080)}) == b'{"addr":["::1",8080]}'
    assert dump_json((1, 2)) == b"[1,2]"


def test_dump_pydantic_model() -> None:
    model = _Model(
        id=uuid.UUID(int=1),
        at=datetime.datetime(2024, 5, 6, tzinfo=datetime.UTC),
        amount=Decimal("2.50"),
        kind=_Kind.BATCH,
    )
    decoded = load_json(dump_json({"model": model}))
    assert decoded["model"]["id"] == str(uuid.UUID(int=1))
    assert decoded["model"]["kind"] == "batch"
    assert _Model.model_validate(decoded["model"]) == model


def test_dump_options() -> None:
    assert dump_json({"b": 1, "a": 2}, sort_keys=True) == b'{"a":2,"b":1}'
    assert dump_json({"a": [1]}, indent=True) == b'{\n  "a": [\n    1\n  ]\n}'
    assert dump_json({1: "x", uuid.UUID(int=0): "y"}) == (
        b'{"1":"x","00000000-0000-0000-0000-000000000000":"y"}'
    )
    text = dump_json_str({"k": "värde"})
    assert isinstance(text, str)
    assert text == '{"k":"värde"}'


def test_dump_unsupported_type_names_it() -> None:
    class Opaque:
        pass

    with pytest.raises(TypeError, match="not JSON serializable"):
        dump_json({"x": Opaque()})


@pytest.mark.parametrize(
    "data", ['{"a": 1}', b'{"a": 1}', bytearray(b'{"a": 1}'), memoryview(b'{"a": 1}')]
)
def test_load_accepts_text_and_bytes(data: Any) -> None:
    assert load_json(data) == {"a": 1}


@pytest.mark.parametrize("bad", ["{", "", "{'a': 1}", b"\xff", "[1,]", "NaN"])
def test_load_malformed_names_source(bad: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        load_json(bad, source="agent.toml:resources")
    assert str(info.value).startswith("agent.toml:resources: malformed JSON")
    assert info.value.data == {"source": "agent.toml:resources"}
    assert info.value.__cause__ is not None


def test_load_malformed_default_source() -> None:
    with pytest.raises(InvalidArgument, match=r"^input: malformed JSON"):
        load_json("{")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(json_values)
def test_round_trip_plain_values(value: Any) -> None:
    assert load_json(dump_json(value)) == value
    assert load_json(dump_json_str(value)) == value
