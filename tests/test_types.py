"""Tests of ai.backend.common.types: upstream vectors, BinarySize, ResourceSlot, HostPortPair."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from ai.backend.common.exception import InvalidArgument
from ai.backend.common.json import dump_json, load_json
from ai.backend.common.types import (
    QUANTITY_MAX_DIGITS,
    REDIS_BGTASK_DB,
    REDIS_STREAM_DB,
    BinarySize,
    CIStrEnum,
    ClusterMode,
    DefaultForUnspecified,
    HostPortPair,
    RedisRole,
    ResourceSlot,
    ServiceDiscoveryType,
    SessionTypes,
    SlotTypes,
    parse_slot_name,
    validate_slot_name,
)
from tests._vectors import load_vectors

VECTORS = load_vectors()


# --------------------------------------------------------------------------- BinarySize


@pytest.mark.parametrize("vector", VECTORS["binary_size"], ids=lambda v: repr(v["input"]))
def test_binary_size_vectors(vector: dict[str, Any]) -> None:
    size = BinarySize.from_str(vector["input"])
    assert isinstance(size, BinarySize)
    assert size == vector["bytes"]
    assert str(size) == vector["str"]
    assert format(size, "s") == vector["short"]
    assert f"{size:s}" == vector["short"]
    assert BinarySize.finite_from_str(vector["input"]) == vector["bytes"]


def test_vectors_are_not_empty() -> None:
    assert len(VECTORS["binary_size"]) >= 10
    assert len(VECTORS["binary_size_bad"]) >= 5


@pytest.mark.parametrize("vector", VECTORS["binary_size_bad"], ids=lambda v: repr(v["input"]))
def test_binary_size_bad_vectors(vector: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument) as info:
        BinarySize.from_str(vector["input"])
    assert repr(vector["input"]) in str(info.value)
    with pytest.raises(InvalidArgument):
        BinarySize.finite_from_str(vector["input"])


@pytest.mark.parametrize("expr", ["1.5", "0.1k", "1.0001k", "0.5 b", ".5"])
def test_binary_size_rejects_fractional_bytes(expr: str) -> None:
    with pytest.raises(InvalidArgument, match="fractional bytes"):
        BinarySize.from_str(expr)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("1Gi", 2**30),
        ("1 gib", 2**30),
        ("3 bytes", 3),
        ("1 byte", 1),
        ("2b", 2),
        ("4 KiBytes", 4096),
        ("  7m  ", 7 * 2**20),
        (".5k", 512),
        ("1y", 2**80),
        ("2_048", 2048),
    ],
)
def test_binary_size_accepts_unit_spellings(expr: str, expected: int) -> None:
    assert BinarySize.from_str(expr) == expected


@pytest.mark.parametrize("expr", ["inf", "Infinity", " INFINITE "])
def test_binary_size_infinity(expr: str) -> None:
    result = BinarySize.from_str(expr)
    assert isinstance(result, Decimal)
    assert result is BinarySize.INFINITY
    assert result.is_infinite()
    assert BinarySize.from_str(Decimal("Infinity")) is BinarySize.INFINITY
    with pytest.raises(InvalidArgument, match="infinite"):
        BinarySize.finite_from_str(expr)
    with pytest.raises(InvalidArgument):
        BinarySize(expr)


@pytest.mark.parametrize("bad", ["-1k", "1__0", "1e3", "1.5.5", "1 k b", "0x10", "k1"])
def test_binary_size_rejects_malformed(bad: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        BinarySize.from_str(bad)
    assert repr(bad) in str(info.value)


def test_binary_size_numbers() -> None:
    assert BinarySize.from_str(1024) == 1024
    assert BinarySize.from_str(Decimal("2048")) == 2048
    assert BinarySize.from_str(4.0) == 4
    assert BinarySize("1g") == 2**30
    assert BinarySize(Decimal("10")) == 10
    with pytest.raises(InvalidArgument):
        BinarySize(1.5)
    with pytest.raises(InvalidArgument):
        BinarySize(Decimal("2.5"))
    with pytest.raises(InvalidArgument, match="negative"):
        BinarySize.from_str(-1)


def test_binary_size_str_forms() -> None:
    assert str(BinarySize(0)) == "0 bytes"
    assert str(BinarySize(1)) == "1 byte"
    assert str(BinarySize(2)) == "2 bytes"
    assert str(BinarySize(2**90)) == "1024 YiB"
    assert f"{BinarySize(5)}" == "5 bytes"
    assert format(BinarySize(3 * 2**30), "m") == "3072m"
    assert format(BinarySize(3 * 2**30), "G") == "3g"
    assert format(BinarySize(1536), ",") == "1,536"
    assert format(BinarySize(255), "x") == "ff"
    assert repr(BinarySize(7)) == "BinarySize(7)"


def test_binary_size_str_rounds() -> None:
    almost_two = BinarySize(2 * 2**30 - 2**20)  # 1.999... GiB
    assert str(almost_two) == "2 GiB"
    assert format(almost_two, "s") == "2g"
    assert BinarySize.from_str(format(almost_two, "s")) != almost_two


# Quarters of a unit below 1024 print exactly; arbitrary integers mostly do not.
_sizes = st.one_of(
    st.integers(min_value=0, max_value=2**90),
    st.builds(
        lambda quarters, exp: quarters * 1024**exp // 4,
        st.integers(min_value=0, max_value=4095),
        st.integers(min_value=0, max_value=8),
    ),
)


@settings(max_examples=300)
@given(_sizes)
def test_binary_size_format_round_trip(value: int) -> None:
    size = BinarySize(value)
    short, long = format(size, "s"), str(size)
    exp = next((e for e in range(8, 0, -1) if value >= 1024**e), 0)
    unit = 1024**exp
    if (value * 100) % unit == 0:
        assert BinarySize.from_str(short) == size
        assert BinarySize.from_str(long) == size
    else:
        shown = Decimal(short.rstrip("kmgtpezy"))
        assert abs(shown * unit - value) <= Decimal(unit) / 200
        assert long.startswith(short.rstrip("kmgtpezy") + " ")


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=102_400 * 100), st.integers(min_value=0, max_value=8))
def test_binary_size_parse_scaled_hundredths(hundredths: int, exp: int) -> None:
    text = f"{Decimal(hundredths) / 100:f}{'kmgtpezy'[exp - 1] if exp else ''}"
    numerator = hundredths * 1024**exp  # exact integer arithmetic, no Decimal rounding
    if numerator % 100 == 0:
        assert BinarySize.from_str(text) == numerator // 100
    else:
        with pytest.raises(InvalidArgument, match="fractional"):
            BinarySize.from_str(text)


class _SizeConfig(BaseModel):
    mem: BinarySize
    shm: BinarySize = BinarySize(64 * 2**20)


def test_binary_size_pydantic_field() -> None:
    cfg = _SizeConfig.model_validate({"mem": "4g"})
    assert cfg.mem == 4 * 2**30
    assert isinstance(cfg.mem, BinarySize)
    assert _SizeConfig.model_validate({"mem": 1024}).mem == 1024
    assert _SizeConfig.model_validate_json('{"mem": "1.5 GiB"}').mem == 1536 * 2**20
    assert load_json(cfg.model_dump_json()) == {"mem": 4 * 2**30, "shm": 64 * 2**20}
    assert _SizeConfig.model_validate_json(cfg.model_dump_json()) == cfg
    schema = _SizeConfig.model_json_schema()
    assert schema["properties"]["mem"]["anyOf"][0]["type"] == "integer"


@pytest.mark.parametrize("bad", ["1.5", "inf", -1, True, [1], "12q"])
def test_binary_size_pydantic_rejects(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        _SizeConfig.model_validate({"mem": bad})
    assert info.value.errors()[0]["loc"] == ("mem",)


def test_binary_size_pickles_and_serializes() -> None:
    size = BinarySize(3 * 2**20)
    again = pickle.loads(pickle.dumps(size))
    assert again == size
    assert type(again) is BinarySize
    assert dump_json({"size": size}) == b'{"size":3145728}'


# --------------------------------------------------------------------------- ResourceSlot

_slot_names = st.sampled_from(["cpu", "mem", "cuda.shares", "cuda.device", "rocm.device"])
_slot_values = st.decimals(
    min_value=-(10**12), max_value=10**12, places=3, allow_nan=False, allow_infinity=False
)
_slots = st.dictionaries(_slot_names, _slot_values, max_size=5).map(ResourceSlot)


@settings(max_examples=200)
@given(_slots, _slots)
def test_resource_slot_add_sub_inverse(a: ResourceSlot, b: ResourceSlot) -> None:
    assert (a + b) - b == a
    assert a + b == b + a
    assert a - a == ResourceSlot()
    negated = -a
    assert -negated == a
    assert a - b == a + (-b)


@settings(max_examples=200)
@given(_slots, _slots, _slots)
def test_resource_slot_order_properties(a: ResourceSlot, b: ResourceSlot, c: ResourceSlot) -> None:
    before_a, before_b = dict(a), dict(b)
    assert (a <= b and b <= a) == (a == b)
    assert (a < b) == (a <= b and a != b)
    assert (a > b) == (b < a)
    assert (a >= b) == (b <= a)
    assert not (a < b and b < a)
    assert a <= a + (b - b)
    if a <= b and b <= c:
        assert a <= c
    assert dict(a) == before_a  # comparisons never add the other side's keys
    assert dict(b) == before_b


@settings(max_examples=200)
@given(
    st.dictionaries(
        _slot_names,
        st.one_of(
            _slot_values,
            st.just(Decimal("Infinity")),
            st.builds(
                lambda digits, places: Decimal(f"{digits}E-{places}"),
                st.integers(min_value=-(10**30) + 1, max_value=10**30 - 1),
                st.integers(min_value=0, max_value=30),
            ),
        ),
        max_size=5,
    ).map(ResourceSlot)
)
def test_resource_slot_json_round_trip(slot: ResourceSlot) -> None:
    as_json = slot.to_json()
    assert all(isinstance(v, str) and "E" not in v for v in as_json.values())
    assert ResourceSlot.from_json(as_json) == slot
    assert ResourceSlot.from_json(load_json(dump_json(as_json))) == slot


def test_resource_slot_missing_is_zero() -> None:
    a = ResourceSlot({"cpu": 1})
    b = ResourceSlot({"cpu": "1", "mem": 0})
    assert a == b
    assert a <= b
    assert a >= b
    assert not a < b
    assert ResourceSlot(cpu=1) <= ResourceSlot(cpu=2, mem=1)
    assert not ResourceSlot(cpu=1, mem=2) <= ResourceSlot(cpu=2, mem=1)
    assert not ResourceSlot(cpu=1, mem=2) >= ResourceSlot(cpu=2, mem=1)
    assert ResourceSlot(cpu=1) < ResourceSlot(cpu=1, mem=1)
    assert ResourceSlot(cpu=2) > {"cpu": 1}
    assert ResourceSlot(cpu=1) == {"cpu": "1.0"}
    assert ResourceSlot(cpu=1) != {"cpu": "not-a-number"}
    assert ResourceSlot(cpu=1) != 1
    assert set(a) == {"cpu"}  # equality did not add the other side's slot


def test_resource_slot_arithmetic_values() -> None:
    a = ResourceSlot({"cpu": "1.5", "mem": 2**30})
    b = ResourceSlot({"cpu": 2, "cuda.shares": "0.5"})
    assert (a + b).to_json() == {"cpu": "3.5", "mem": "1073741824", "cuda.shares": "0.5"}
    assert (a - b)["cpu"] == Decimal("-0.5")
    assert (a - b)["cuda.shares"] == Decimal("-0.5")
    assert sum([a, b]) == a + b
    assert {"cpu": 1} + ResourceSlot(cpu=1) == ResourceSlot(cpu=2)
    assert {"cpu": 3} - ResourceSlot(cpu=1) == ResourceSlot(cpu=2)
    unlimited = ResourceSlot(mem=Decimal("Infinity"))
    assert unlimited + a >= a
    with pytest.raises(InvalidArgument, match="'mem'"):
        _ = unlimited - unlimited


@pytest.mark.parametrize("bad", ["abc", "NaN", None, [1], True, Decimal("NaN"), ""])
def test_resource_slot_rejects_non_numeric(bad: object) -> None:
    with pytest.raises(InvalidArgument) as info:
        ResourceSlot({"cuda.shares": bad})
    assert "'cuda.shares'" in str(info.value)
    assert info.value.data["slot"] == "cuda.shares"
    slot = ResourceSlot(cpu=1)
    with pytest.raises(InvalidArgument, match="'cpu'"):
        slot["cpu"] = bad


def test_resource_slot_rejects_bad_keys() -> None:
    with pytest.raises(InvalidArgument, match="slot name"):
        ResourceSlot({"": 1})
    with pytest.raises(InvalidArgument, match="slot name"):
        ResourceSlot({1: 1})  # type: ignore[arg-type]


def test_resource_slot_is_mutable_mapping() -> None:
    slot = ResourceSlot(cpu=1)
    slot["mem"] = "2048"
    assert slot["mem"] == Decimal(2048)
    del slot["cpu"]
    assert dict(slot) == {"mem": Decimal(2048)}
    assert len(slot) == 1
    with pytest.raises(TypeError):
        hash(slot)
    copy = slot.copy()
    copy["mem"] = 1
    assert slot["mem"] == 2048
    assert pickle.loads(pickle.dumps(slot)) == slot
    assert repr(ResourceSlot(cpu=1)) == "ResourceSlot({'cpu': Decimal('1')})"


def test_resource_slot_normalize_slots() -> None:
    slot = ResourceSlot({"cpu": 1, "tpu.device": 2})
    assert slot.normalize_slots(["cpu", "mem"], ignore_unknown=True) == ResourceSlot(cpu=1, mem=0)
    assert set(slot.normalize_slots(["cpu", "mem"], ignore_unknown=True)) == {"cpu", "mem"}
    with pytest.raises(InvalidArgument, match=r"'tpu\.device'"):
        slot.normalize_slots(["cpu", "mem"], ignore_unknown=False)


def test_resource_slot_from_user_input_and_humanized() -> None:
    types = {"cpu": SlotTypes.COUNT, "mem": SlotTypes.BYTES, "cuda.device": "unique"}
    slot = ResourceSlot.from_user_input({"cpu": "2.00049", "mem": "1.5g"}, types)
    assert slot == ResourceSlot({"cpu": "2", "mem": 1536 * 2**20, "cuda.device": 0})
    assert slot.to_json()["cpu"] == "2"
    assert slot.to_humanized(types) == {"cpu": "2", "mem": "1.5g", "cuda.device": "0"}
    guessed = ResourceSlot.from_user_input({"cpu": 1, "mem": "512m", "x": None})
    assert guessed == ResourceSlot(cpu=1, mem=512 * 2**20)
    assert guessed.to_humanized() == {"cpu": "1", "mem": "512m"}
    unlimited = ResourceSlot.from_user_input({"mem": "inf"}, {"mem": SlotTypes.BYTES})
    assert unlimited["mem"].is_infinite()
    assert unlimited.to_humanized({"mem": "bytes"}) == {"mem": "Infinity"}
    with pytest.raises(InvalidArgument, match="unknown slot 'gpu'"):
        ResourceSlot.from_user_input({"gpu": 1}, types)
    with pytest.raises(InvalidArgument, match="'mem'"):
        ResourceSlot.from_user_input({"mem": "lots"}, types)
    with pytest.raises(InvalidArgument, match="'mem'"):
        ResourceSlot.from_user_input({"mem": "1.5"}, types)
    with pytest.raises(InvalidArgument, match="unknown slot 'gpu'"):
        ResourceSlot(gpu=1).to_humanized(types)


class _SlotModel(BaseModel):
    slots: ResourceSlot


def test_resource_slot_pydantic_field() -> None:
    model = _SlotModel.model_validate({"slots": {"cpu": "1.5", "mem": 1024}})
    assert isinstance(model.slots, ResourceSlot)
    assert load_json(model.model_dump_json()) == {"slots": {"cpu": "1.5", "mem": "1024"}}
    assert _SlotModel.model_validate_json(model.model_dump_json()) == model
    with pytest.raises(ValidationError):
        _SlotModel.model_validate({"slots": {"cpu": "x"}})
    with pytest.raises(ValidationError):
        _SlotModel.model_validate({"slots": 3})


def test_resource_slot_dumps_through_json_helper() -> None:
    assert load_json(dump_json(ResourceSlot({"cpu": "0.5"}))) == {"cpu": "0.5"}


# --------------------------------------------------------------------------- limits

_LIMIT = 10**QUANTITY_MAX_DIGITS
_OUTPUT_MAX = 120  # characters of any one printed value, whatever the input

# Numbers far outside any real resource value: exponents up to +-10**7, 70-digit mantissas.
_huge_exponents = st.integers(min_value=-(10**7), max_value=10**7)
_long_digits = st.integers(min_value=10**69, max_value=10**70 - 1)
_numeric_texts = st.one_of(
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-999, 999), _huge_exponents),
    st.builds(lambda d, e: f"{d}E{e:+d}", _long_digits, st.integers(-100, 100)),
    st.builds(
        lambda d, places: f"{str(d)[:-places]}.{str(d)[-places:]}", _long_digits, st.integers(1, 69)
    ),
    _long_digits.map(str),
    st.integers(0, 10**70).map(str),
)
_wild_numbers = st.one_of(
    _numeric_texts,
    st.builds(
        lambda d, unit: f"{d}{unit}",
        st.integers(0, 10**70),
        st.sampled_from(["k", "g", "y", " YiB"]),
    ),
    st.integers(min_value=-(10**70), max_value=10**70),
    st.integers(min_value=0, max_value=20_000).map(lambda k: 7**k),  # up to 17,000 digits
    st.floats(allow_nan=False),
    _numeric_texts.map(Decimal),
)


def _bounded(outputs: Iterable[str]) -> None:
    for text in outputs:
        assert len(text) <= _OUTPUT_MAX, text[:80]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["cpu", "mem", "cuda.shares"]), _wild_numbers)
def test_resource_slot_wild_values_give_values_or_invalid_argument(name: str, raw: Any) -> None:
    # Anything else (decimal.InvalidOperation, Overflow, ValueError from str(int)) fails here.
    builders: list[Callable[[], ResourceSlot]] = [
        lambda: ResourceSlot.from_json({name: raw}),
        lambda: ResourceSlot.from_user_input({name: raw}),
    ]
    for build in builders:
        try:
            slot = build()
        except InvalidArgument as exc:
            message = str(exc)
            assert name in message
            assert len(message) < 400
            continue
        _bounded(slot.to_json().values())
        _bounded(slot.to_humanized().values())
        assert ResourceSlot.from_json(slot.to_json()) == slot
        try:
            total = slot + slot - slot
        except InvalidArgument:
            continue  # out of range once doubled
        assert total == slot


@settings(max_examples=400, deadline=None)
@given(_wild_numbers)
def test_binary_size_wild_values_give_values_or_invalid_argument(raw: Any) -> None:
    try:
        size = BinarySize.from_str(raw)
    except InvalidArgument:
        return
    if not isinstance(size, BinarySize):
        return  # infinity
    assert 0 <= size < _LIMIT
    _bounded([str(size), format(size, "s"), format(size, "k"), format(size, "y")])


def test_limits_are_inclusive_of_real_values() -> None:
    top = "9" * QUANTITY_MAX_DIGITS
    finest = "0." + "0" * (QUANTITY_MAX_DIGITS - 1) + "1"
    widest = f"{top}.{'9' * QUANTITY_MAX_DIGITS}"
    slot = ResourceSlot(cpu=widest, mem=top, x=finest, y=f"-{widest}")
    assert slot.to_json() == {"cpu": widest, "mem": top, "x": finest, "y": f"-{widest}"}
    half = ResourceSlot(cpu=f"{'4' * QUANTITY_MAX_DIGITS}.{'9' * QUANTITY_MAX_DIGITS}", x=finest)
    assert (half + half) - half == half  # 60 significant digits, still exact
    assert (slot - half) + half == slot
    assert BinarySize(_LIMIT - 1) == _LIMIT - 1
    assert str(BinarySize(_LIMIT - 1)) == "827180.61 YiB"
    assert BinarySize.from_str("827180y") == 827180 * 2**80
    with pytest.raises(InvalidArgument, match="out of range"):
        BinarySize.from_str("827181y")


@pytest.mark.parametrize(
    "bad",
    [
        "1e30",
        "-1e30",
        "1e-31",
        "0E-31",
        "0e30",
        "1" * 31,
        "0." + "1" * 31,
        10**30,
        1e300,
        Decimal("1e1000000"),
        "1e99999999",
        "0.1234567890123456789012345678901234567890123456789012345678901234567",
    ],
)
def test_resource_slot_rejects_out_of_range(bad: object) -> None:
    builders: list[Callable[[], ResourceSlot]] = [
        lambda: ResourceSlot(cpu=bad),
        lambda: ResourceSlot.from_json({"cpu": bad}),
        lambda: ResourceSlot.from_user_input({"cpu": bad}),
    ]
    for build in builders:
        with pytest.raises(InvalidArgument, match="out of range") as info:
            build()
        assert info.value.data["slot"] == "cpu"
    # A byte slot reads text as a size expression, which has no exponents or fractions.
    with pytest.raises(InvalidArgument, match="'mem'") as info:
        ResourceSlot.from_user_input({"mem": bad})
    assert info.value.data["slot"] == "mem"


class _WireSlots(BaseModel):
    slots: ResourceSlot


def test_resource_slot_exponent_bomb_is_refused_by_pydantic() -> None:
    with pytest.raises(ValidationError, match="out of range"):
        _WireSlots.model_validate_json('{"slots": {"cpu": "1e99999999"}}')


def test_resource_slot_arithmetic_out_of_range_raises() -> None:
    big = ResourceSlot(mem="9e29")
    with pytest.raises(InvalidArgument, match=r"'mem'.*out of range"):
        _ = big + big
    with pytest.raises(InvalidArgument, match=r"'mem'.*out of range"):
        _ = -big - big
    assert big - big == ResourceSlot(mem=0)


def test_resource_slot_unpickle_validates() -> None:
    slot = ResourceSlot(cpu="1.5")
    assert pickle.loads(pickle.dumps(slot)) == slot
    forged = ResourceSlot.__new__(ResourceSlot)
    with pytest.raises(InvalidArgument, match="out of range"):
        forged.__setstate__({"cpu": Decimal("0." + "1" * 67)})


@pytest.mark.parametrize(
    "bad",
    ["1" * 5000, "1" * 31, "9" * 4400 + "y", 10**30, 10**5000, Decimal("1e40"), 1e300],
    ids=[
        "5000-digits",
        "31-digits",
        "4400-digits-y",
        "10**30",
        "10**5000",
        "decimal-1e40",
        "1e300",
    ],
)
def test_binary_size_rejects_out_of_range(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="out of range") as info:
        BinarySize.from_str(bad)  # type: ignore[arg-type]
    assert len(str(info.value)) < 300
    with pytest.raises(InvalidArgument, match="out of range"):
        BinarySize(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-5, -1, Decimal(-5), -5.0])
def test_binary_size_constructor_rejects_negative(bad: int | Decimal | float) -> None:
    with pytest.raises(InvalidArgument, match="negative"):
        BinarySize(bad)
    with pytest.raises(InvalidArgument, match="negative"):
        BinarySize.from_str(bad)


@settings(max_examples=300)
@given(
    st.one_of(
        st.integers(min_value=0, max_value=_LIMIT - 1),
        st.builds(
            lambda n, exp: n * 1024**exp,
            st.integers(min_value=0, max_value=827180),
            st.integers(min_value=0, max_value=8),
        ),
    )
)
def test_humanized_bytes_round_trip(value: int) -> None:
    slot = ResourceSlot(mem=value)
    shown = slot.to_humanized()["mem"]
    assert ResourceSlot.from_user_input({"mem": shown}) == slot
    assert ResourceSlot.from_user_input(slot.to_humanized()) == slot


def test_humanized_bytes_use_an_exact_unit() -> None:
    shown = ResourceSlot(
        mem=8888, a_mem=1536 * 2**20, b_mem=2**30 + 2**10, c_mem=-(2**30)
    ).to_humanized()
    assert shown == {"mem": "8888", "a_mem": "1.5g", "b_mem": "1048577k", "c_mem": "-1g"}


@pytest.mark.parametrize(
    "host",
    ["a\x00b", "host\x00", "a\x07b", "a\x7fb", "a\u2028b", "fe80::1%\x00a", "[fe80::1%\x01]"],
)
def test_host_port_pair_rejects_control_characters(host: str) -> None:
    with pytest.raises(InvalidArgument, match="non-printable"):
        HostPortPair(host, 80)
    with pytest.raises(InvalidArgument):
        HostPortPair.parse(f"[{host.strip('[]')}]:80" if ":" in host else f"{host}:80")


# --------------------------------------------------------------------------- slot names


def test_slot_names() -> None:
    parts = parse_slot_name("cuda.device:1g.5gb-mig")
    assert (parts.device_name, parts.major_type, parts.minor_type) == (
        "cuda",
        "device",
        "1g.5gb-mig",
    )
    assert parts.is_accelerator
    cpu = parse_slot_name("cpu")
    assert (cpu.device_name, cpu.major_type, cpu.minor_type) == ("cpu", "", "")
    assert not cpu.is_accelerator
    assert validate_slot_name("cuda.shares") == "cuda.shares"
    for bad in ["", "CPU", "cuda.", "cuda device", ".x", "a:b:c"]:
        with pytest.raises(InvalidArgument, match=repr(bad).replace(".", r"\.")):
            validate_slot_name(bad)


# --------------------------------------------------------------------------- HostPortPair


@pytest.mark.parametrize(
    ("text", "host", "port", "canonical"),
    [
        ("127.0.0.1:6379", "127.0.0.1", 6379, "127.0.0.1:6379"),
        ("localhost:80", "localhost", 80, "localhost:80"),
        ("[::1]:8080", "::1", 8080, "[::1]:8080"),
        (" [fe80::1%eth0]:2379 ", "fe80::1%eth0", 2379, "[fe80::1%eth0]:2379"),
        ("etcd-0.example.com:0", "etcd-0.example.com", 0, "etcd-0.example.com:0"),
        ("[2001:db8::10]:65535", "2001:db8::10", 65535, "[2001:db8::10]:65535"),
    ],
)
def test_host_port_pair_parse(text: str, host: str, port: int, canonical: str) -> None:
    pair = HostPortPair.parse(text)
    assert (pair.host, pair.port) == (host, port)
    assert str(pair) == canonical
    assert pair.as_sockaddr() == (host, port)
    h, p = pair
    assert (h, p) == (host, port)


@settings(max_examples=200)
@given(
    st.one_of(
        st.ip_addresses().map(str),
        st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True),
    ),
    st.integers(min_value=0, max_value=65535),
)
def test_host_port_pair_round_trip(host: str, port: int) -> None:
    pair = HostPortPair(host, port)
    assert HostPortPair.parse(str(pair)) == pair
    assert pair.is_ipv6 == (":" in host)
    assert pickle.loads(pickle.dumps(pair)) == pair


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("::1:8080", "brackets"),
        ("localhost", "no port"),
        ("host:70000", "70000"),
        ("host:-1", "-1"),
        ("host:http", "http"),
        ("[::1", "[ipv6]:port"),
        ("[::1]8080", "[ipv6]:port"),
        ("[not-ip]:80", "IPv6"),
        (":80", "host"),
        ("a b:80", "a b"),
        ("a:b:c", "host:port"),
    ],
)
def test_host_port_pair_rejects(text: str, needle: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        HostPortPair.parse(text)
    assert needle in str(info.value)


def test_host_port_pair_defaults_and_constructor() -> None:
    assert HostPortPair.parse("redis", default_port=6379) == ("redis", 6379)
    assert HostPortPair.parse("::1", default_port=53) == HostPortPair("::1", 53)
    assert HostPortPair.parse("[::1]", default_port=53) == HostPortPair("::1", 53)
    assert HostPortPair("[::1]", "80") == HostPortPair("::1", 80)
    with pytest.raises(InvalidArgument, match="port"):
        HostPortPair("h", True)
    with pytest.raises(InvalidArgument):
        HostPortPair(1, 1)  # type: ignore[arg-type]
    assert repr(HostPortPair("h", 1)) == "HostPortPair(host='h', port=1)"


class _AddrConfig(BaseModel):
    addr: HostPortPair


@pytest.mark.parametrize(
    "raw", ["[::1]:2379", {"host": "::1", "port": 2379}, ["::1", 2379], ("[::1]", "2379")]
)
def test_host_port_pair_pydantic(raw: object) -> None:
    cfg = _AddrConfig.model_validate({"addr": raw})
    assert cfg.addr == HostPortPair("::1", 2379)
    assert isinstance(cfg.addr, HostPortPair)
    assert load_json(cfg.model_dump_json()) == {"addr": {"host": "::1", "port": 2379}}
    assert _AddrConfig.model_validate_json(cfg.model_dump_json()) == cfg


@pytest.mark.parametrize("raw", ["nope", {"host": "h"}, [1, 2, 3], 5])
def test_host_port_pair_pydantic_rejects(raw: object) -> None:
    with pytest.raises(ValidationError) as info:
        _AddrConfig.model_validate({"addr": raw})
    assert info.value.errors()[0]["loc"] == ("addr",)


# --------------------------------------------------------------------------- enums


class _Color(CIStrEnum):
    RED = "red"
    DARK_BLUE = "Dark-Blue"


def test_ci_str_enum_lookup() -> None:
    assert _Color("RED") is _Color.RED
    assert _Color("dark-blue") is _Color.DARK_BLUE
    assert _Color("DARK-BLUE").value == "Dark-Blue"
    assert str(_Color.RED) == "red"
    assert str.__eq__(_Color.RED, "red")
    with pytest.raises(ValueError):
        _Color("green")
    with pytest.raises(ValueError):
        _Color(1)  # type: ignore[arg-type]
    assert SessionTypes("Interactive") is SessionTypes.INTERACTIVE
    assert ClusterMode("SINGLE-NODE") is ClusterMode.SINGLE_NODE
    assert DefaultForUnspecified("unlimited") is DefaultForUnspecified.UNLIMITED
    assert ServiceDiscoveryType("ETCD") is ServiceDiscoveryType.ETCD


class _EnumModel(BaseModel):
    mode: ClusterMode
    kind: SessionTypes = SessionTypes.BATCH


def test_ci_str_enum_pydantic() -> None:
    model = _EnumModel.model_validate({"mode": "Multi-Node", "kind": "SYSTEM"})
    assert model.mode is ClusterMode.MULTI_NODE
    assert model.kind is SessionTypes.SYSTEM
    assert load_json(model.model_dump_json()) == {"mode": "multi-node", "kind": "system"}
    with pytest.raises(ValidationError):
        _EnumModel.model_validate({"mode": "triple-node"})


def test_platform_enum_values() -> None:
    assert [t.value for t in SessionTypes] == ["interactive", "batch", "inference", "system"]
    assert [m.value for m in ClusterMode] == ["single-node", "multi-node"]
    assert [t.value for t in ServiceDiscoveryType] == ["etcd", "redis"]
    assert [t.value for t in SlotTypes] == ["count", "bytes", "unique"]


def test_redis_role_databases() -> None:
    assert RedisRole.STREAM.default_db == REDIS_STREAM_DB == 4
    assert RedisRole.BGTASK.default_db == REDIS_BGTASK_DB == 7
    assert sorted(role.default_db for role in RedisRole) == list(range(8))
