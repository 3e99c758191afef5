"""Tests of ai.backend.common.utils: durations, nested get, deep merge, sizes, uuids, flags."""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai.backend.common.exception import InvalidArgument
from ai.backend.common.types import BinarySize
from ai.backend.common.utils import (
    batched,
    deep_merge,
    format_duration,
    humanize_bytes,
    is_uuid,
    nested_get,
    new_id,
    parse_bool,
    parse_duration,
    readable_size_to_bytes,
    short_uuid,
    uuid_from_str,
)

# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1d2h30m", timedelta(days=1, hours=2, minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        ("500ms", timedelta(milliseconds=500)),
        ("30", timedelta(seconds=30)),
        ("2.25", timedelta(seconds=2, milliseconds=250)),
        ("1h 30m", timedelta(minutes=90)),
        (" 2w ", timedelta(weeks=2)),
        ("30m1h", timedelta(minutes=90)),
        ("1s500ms", timedelta(seconds=1, milliseconds=500)),
        ("250us", timedelta(microseconds=250)),
        ("250µs", timedelta(microseconds=250)),
        (".5s", timedelta(milliseconds=500)),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_parse_duration_numbers_and_timedelta() -> None:
    assert parse_duration(30) == timedelta(seconds=30)
    assert parse_duration(0.25) == timedelta(milliseconds=250)
    assert parse_duration(timedelta(hours=1)) == timedelta(hours=1)


@pytest.mark.parametrize(
    "bad", ["", "abc", "1x", "-5s", "-5", "1h1h", "1 h x", "h", "1d2", "1.2.3s", "5M"]
)
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_duration(bad, field="idle_timeout")
    assert repr(bad) in str(info.value)
    assert "idle_timeout" in str(info.value)


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True, None, timedelta(-1)])
def test_parse_duration_rejects_other_values(bad: Any) -> None:
    with pytest.raises(InvalidArgument):
        parse_duration(bad)


def test_parse_duration_out_of_range() -> None:
    with pytest.raises(InvalidArgument, match="out of range"):
        parse_duration("99999999999w")


def test_parse_duration_rounds_to_microseconds() -> None:
    assert parse_duration("1.4us") == timedelta(microseconds=1)
    assert parse_duration("0.0000026") == timedelta(microseconds=3)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(days=1, hours=2, minutes=30), "1d2h30m"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(seconds=1, microseconds=1500), "1s1500us"),
        (timedelta(weeks=2), "14d"),
        (timedelta(seconds=-90), "-1m30s"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@settings(max_examples=300)
@given(st.timedeltas(min_value=timedelta(0)))
def test_duration_round_trip(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


# --------------------------------------------------------------------------- nested_get


def test_nested_get() -> None:
    data = {"a": {"b": {"c": 1}, "l": [{"x": "first"}, {"x": "second"}]}, "n": None}
    assert nested_get(data, "a.b.c") == 1
    assert nested_get(data, ["a", "b", "c"]) == 1
    assert nested_get(data, "a.l.1.x") == "second"
    assert nested_get(data, ("a", "l", 0, "x")) == "first"
    assert nested_get(data, "a/b/c", sep="/") == 1
    assert nested_get(data, "n") is None
    assert nested_get(data, "n", default=5) is None  # present keys win over the default
    assert nested_get(data, "a.missing", "dflt") == "dflt"
    assert nested_get(data, "a.b.c.d", "dflt") == "dflt"
    assert nested_get(data, "a.l.9.x", "dflt") == "dflt"
    assert nested_get(data, ["a", "l", -1], "dflt") == "dflt"
    assert nested_get(data, "a.l.x", "dflt") == "dflt"
    assert nested_get({"s": "text"}, "s.0", "dflt") == "dflt"
    assert nested_get(data, []) is data


# --------------------------------------------------------------------------- deep_merge


def test_deep_merge_examples() -> None:
    base = {"db": {"host": "a", "port": 1, "opts": {"ssl": False}}, "list": [1, 2], "keep": 1}
    over = {"db": {"host": "b", "opts": {"ssl": True}}, "list": [3], "new": {"x": 1}}
    assert deep_merge(base, over) == {
        "db": {"host": "b", "port": 1, "opts": {"ssl": True}},
        "list": [3],
        "keep": 1,
        "new": {"x": 1},
    }
    assert deep_merge({"a": {"b": 1}}, {"a": 5}) == {"a": 5}
    assert deep_merge({"a": 5}, {"a": {"b": 1}}) == {"a": {"b": 1}}
    assert deep_merge({"a": 1}) == {"a": 1}
    assert deep_merge({"a": 1}, {"b": 2}, {"a": 3}) == {"a": 3, "b": 2}


_keys = st.sampled_from(["a", "b", "c", "d"])
_leaves = st.one_of(st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=3))
_trees = st.recursive(
    st.dictionaries(_keys, _leaves, max_size=4),
    lambda children: st.dictionaries(_keys, st.one_of(_leaves, children), max_size=4),
    max_leaves=20,
)


def _leaf_paths(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in tree.items():
        if isinstance(value, dict):
            paths.extend(_leaf_paths(value, (*prefix, key)))
        else:
            paths.append((*prefix, key))
    return paths


@settings(max_examples=200)
@given(_trees, _trees)
def test_deep_merge_later_leaves_win(a: dict[str, Any], b: dict[str, Any]) -> None:
    merged = deep_merge(a, b)
    for path in _leaf_paths(b):
        assert nested_get(merged, list(path)) == nested_get(b, list(path))
    # a's leaves survive unless b holds that path or a leaf at one of its ancestors
    for path in _leaf_paths(a):
        overridden = nested_get(b, list(path), default=...) is not ... or any(
            nested_get(b, list(path[:i]), default=...) is not ...
            and not isinstance(nested_get(b, list(path[:i])), dict)
            for i in range(1, len(path))
        )
        if not overridden:
            assert nested_get(merged, list(path)) == nested_get(a, list(path))
    assert deep_merge(a, a) == a
    assert deep_merge(a, {}) == a
    assert deep_merge({}, a) == a


@settings(max_examples=200)
@given(_trees, _trees)
def test_deep_merge_does_not_mutate_inputs(a: dict[str, Any], b: dict[str, Any]) -> None:
    a_before, b_before = copy.deepcopy(a), copy.deepcopy(b)
    merged = deep_merge(a, b)
    assert a == a_before
    assert b == b_before
    assert merged is not a
    assert merged is not b
    # mutating nested mappings of the result leaves the inputs alone
    for value in merged.values():
        if isinstance(value, dict):
            value["__mutated__"] = True
    assert a == a_before
    assert b == b_before


# Shape-consistent trees: keys "d*" always hold mappings, other keys never do, so no key holds
# a mapping in one input and a leaf in another (the only case where merging is not associative).
_shaped = st.recursive(
    st.dictionaries(st.sampled_from(["x", "y", "z"]), _leaves, max_size=3),
    lambda children: st.fixed_dictionaries(
        {}, optional={"d1": children, "d2": children, "x": _leaves, "y": _leaves}
    ),
    max_leaves=20,
)


@settings(max_examples=200)
@given(_trees, _trees, _trees, _shaped, _shaped, _shaped)
def test_deep_merge_fold_and_associativity(
    a: dict[str, Any],
    b: dict[str, Any],
    c: dict[str, Any],
    p: dict[str, Any],
    q: dict[str, Any],
    r: dict[str, Any],
) -> None:
    assert deep_merge(a, b, c) == deep_merge(deep_merge(a, b), c)
    assert deep_merge(deep_merge(p, q), r) == deep_merge(p, deep_merge(q, r))


def test_deep_merge_is_not_associative_across_shape_conflicts() -> None:
    a, b, c = {"k": {"x": 1}}, {"k": 5}, {"k": {"y": 2}}
    assert deep_merge(deep_merge(a, b), c) == {"k": {"y": 2}}
    assert deep_merge(a, deep_merge(b, c)) == {"k": {"x": 1, "y": 2}}


def test_deep_merge_shares_leaves() -> None:
    items = [1, 2]
    merged = deep_merge({}, {"items": items})
    assert merged["items"] is items


# --------------------------------------------------------------------------- sizes


def test_humanize_bytes() -> None:
    assert humanize_bytes(0) == "0 bytes"
    assert humanize_bytes(1) == "1 byte"
    assert humanize_bytes(1536 * 2**20) == "1.5 GiB"
    assert humanize_bytes(1536 * 2**20, short=True) == "1.5g"
    assert humanize_bytes(Decimal(2048), short=True) == "2k"
    assert humanize_bytes(Decimal("Infinity")) == "infinity"
    assert humanize_bytes(Decimal("Infinity"), short=True) == "inf"
    assert BinarySize.from_str(humanize_bytes(Decimal("Infinity"))) == BinarySize.INFINITY
    with pytest.raises(InvalidArgument):
        humanize_bytes(Decimal("-Infinity"))
    with pytest.raises(InvalidArgument):
        humanize_bytes(Decimal("1.5"))


def test_readable_size_to_bytes() -> None:
    assert readable_size_to_bytes("512m") == 512 * 2**20
    assert isinstance(readable_size_to_bytes(10), BinarySize)
    with pytest.raises(InvalidArgument, match="'inf'"):
        readable_size_to_bytes("inf")


# --------------------------------------------------------------------------- uuids


def test_uuid_helpers() -> None:
    value = uuid.UUID("3f2a9c1e-0000-4000-8000-000000000001")
    assert is_uuid(value)
    assert is_uuid(str(value))
    assert is_uuid(value.hex)
    assert is_uuid("{3f2a9c1e-0000-4000-8000-000000000001}")
    assert not is_uuid("not-a-uuid")
    assert not is_uuid(12)
    assert uuid_from_str(str(value)) == value
    assert uuid_from_str(f"  {value.hex} ") == value
    assert uuid_from_str(value) is value
    assert short_uuid(value) == "3f2a9c1e"
    assert short_uuid(str(value), 4) == "3f2a"
    with pytest.raises(InvalidArgument):
        short_uuid(value, 0)
    first, second = new_id(), new_id()
    assert first != second
    assert first.version == 4


@pytest.mark.parametrize("bad", ["", "xyz", "3f2a9c1e-0000", 12])
def test_uuid_from_str_names_field(bad: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        uuid_from_str(bad, field="session_id")
    assert "session_id" in str(info.value)
    assert repr(bad) in str(info.value)


# --------------------------------------------------------------------------- flags, batches


@pytest.mark.parametrize("text", ["1", "true", "True", "YES", "y", "on", " On ", "t"])
def test_parse_bool_true(text: str) -> None:
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["0", "false", "FALSE", "no", "n", "off", "f"])
def test_parse_bool_false(text: str) -> None:
    assert parse_bool(text) is False


def test_parse_bool_values_and_errors() -> None:
    assert parse_bool(True) is True
    assert parse_bool(0) is False
    assert parse_bool(1) is True
    for bad in ["", "maybe", "2", 2, None]:
        with pytest.raises(InvalidArgument) as info:
            parse_bool(bad, field="BACKEND_DEBUG")  # type: ignore[arg-type]
        assert "BACKEND_DEBUG" in str(info.value)


def test_batched() -> None:
    assert list(batched(range(7), 3)) == [(0, 1, 2), (3, 4, 5), (6,)]
    assert list(batched([], 2)) == []
    assert list(batched("ab", 5)) == [("a", "b")]
    for bad in [0, -1, True]:
        with pytest.raises(InvalidArgument):
            list(batched([1], bad))


@given(st.lists(st.integers()), st.integers(min_value=1, max_value=10))
def test_batched_preserves_items(items: list[int], n: int) -> None:
    batches = list(batched(iter(items), n))
    assert [x for batch in batches for x in batch] == items
    assert all(len(batch) == n for batch in batches[:-1])
    assert all(1 <= len(batch) <= n for batch in batches)
