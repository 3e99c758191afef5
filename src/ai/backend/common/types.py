"""Common domain types of Backend.AI: identifiers, sizes, resource slots, addresses, enums.

Everything here is pure (layer 1): no I/O, only the standard library, pydantic and
:mod:`ai.backend.common.exception`. The names follow upstream ``ai.backend.common.types`` so
porting code finds them; the behaviour is stricter where upstream was lossy.

``BinarySize`` is an ``int`` and cannot hold infinity. ``BinarySize.from_str("inf")`` therefore
returns :data:`BinarySize.INFINITY`, which is ``Decimal("Infinity")`` (upstream's choice too, and
the value :class:`ResourceSlot` uses for "unlimited"); ``BinarySize.finite_from_str()``, the
constructor and the pydantic field type reject infinity.

Guarantees:
- every ``binary_size`` vector of upstream parses to its bytes and formats to its ``str`` and
  short form, and every ``binary_size_bad`` vector is rejected with ``InvalidArgument``
  [tests/test_types.py::test_binary_size_vectors, ...::test_binary_size_bad_vectors];
- a size expression that means a fractional number of bytes (``"1.5"``, ``"0.1k"``) is rejected,
  never truncated [tests/test_types.py::test_binary_size_rejects_fractional_bytes];
- ``from_str(format(x, "s")) == x`` and ``from_str(str(x)) == x`` whenever the scaled value is
  exact to two decimals [tests/test_types.py::test_binary_size_format_round_trip];
- ``BinarySize`` validates as a pydantic field from an int or a size string and dumps to JSON
  as an int [tests/test_types.py::test_binary_size_pydantic_field];
- ``ResourceSlot`` arithmetic is exact: ``(a + b) - b == a``; a result that would need rounding
  or falls outside :data:`QUANTITY_MAX_DIGITS` raises ``InvalidArgument`` naming the slot
  [tests/test_types.py::test_resource_slot_add_sub_inverse]
  [tests/test_types.py::test_limits_are_inclusive_of_real_values]
  [tests/test_types.py::test_resource_slot_arithmetic_out_of_range_raises];
- every size and slot value is below ``10**30`` in magnitude and a slot value has at most 30
  decimal places (:data:`QUANTITY_MAX_DIGITS`); anything else (``"1e70"``, ``1e300``,
  ``"1e-99"``, a 5,000-digit size) raises ``InvalidArgument`` naming the slot or input, so
  no input makes printing, JSON or arithmetic slow, huge or raise anything else
  [tests/test_types.py::test_resource_slot_rejects_out_of_range]
  [tests/test_types.py::test_binary_size_rejects_out_of_range]
  [tests/test_types.py::test_resource_slot_wild_values_give_values_or_invalid_argument]
  [tests/test_types.py::test_binary_size_wild_values_give_values_or_invalid_argument];
- ``BinarySize`` is never negative, however it is made
  [tests/test_types.py::test_binary_size_constructor_rejects_negative];
- ``ResourceSlot.to_humanized`` shows a byte value in the largest unit that is exact, else in
  bytes, so ``from_user_input`` reads every non-negative value back unchanged
  [tests/test_types.py::test_humanized_bytes_round_trip];
- ``ResourceSlot`` comparisons are the slot-wise partial order with missing slots read as 0,
  never mutate their operands, and ``a <= b and b <= a`` iff ``a == b``
  [tests/test_types.py::test_resource_slot_order_properties];
- ``ResourceSlot.from_json(x.to_json()) == x``, values travel as decimal strings without
  exponents [tests/test_types.py::test_resource_slot_json_round_trip];
- a non-numeric slot value raises ``InvalidArgument`` naming the slot and the value
  [tests/test_types.py::test_resource_slot_rejects_non_numeric];
- ``HostPortPair.parse`` accepts ``host:port`` and bracketed IPv6 literals, and
  ``parse(str(p)) == p`` [tests/test_types.py::test_host_port_pair_round_trip];
- a host with a NUL or any other non-printable character is rejected
  [tests/test_types.py::test_host_port_pair_rejects_control_characters];
- a ``CIStrEnum`` member is found by its value in any letter case and keeps its canonical value
  [tests/test_types.py::test_ci_str_enum_lookup].

Limits:
- ``str()`` and the short form round to two decimals at the chosen scale (``1.999 GiB`` prints
  as ``2 GiB``), as upstream does; only exact values round-trip
  [tests/test_types.py::test_binary_size_str_rounds];
- sizes of ``10**30`` bytes or more, and slot values of ``10**30`` or more or with more than
  30 decimal places, are refused (see :data:`QUANTITY_MAX_DIGITS`);
- ``ResourceSlot`` is mutable (upstream code assigns slots), so it is not hashable
  [tests/test_types.py::test_resource_slot_is_mutable_mapping].
"""

from __future__ import annotations

import decimal
import enum
import ipaddress
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, NamedTuple, NewType, Self

from pydantic import GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema

from .exception import InvalidArgument

__all__ = (
    "PID",
    "QUANTITY_MAX_DIGITS",
    "REDIS_BGTASK_DB",
    "REDIS_CONTAINER_LOG",
    "REDIS_IMAGE_DB",
    "REDIS_LIVE_DB",
    "REDIS_RATE_LIMIT_DB",
    "REDIS_STATISTICS_DB",
    "REDIS_STREAM_DB",
    "REDIS_STREAM_LOCK",
    "AccessKey",
    "AgentId",
    "ArchName",
    "AutoPullBehavior",
    "BinarySize",
    "CIStrEnum",
    "ClusterMode",
    "ContainerId",
    "ContainerPID",
    "DefaultForUnspecified",
    "DeviceId",
    "DeviceName",
    "EndpointId",
    "HandlerForUnknownSlotName",
    "HostPID",
    "HostPortPair",
    "ImageAlias",
    "IntrinsicSlotNames",
    "KernelId",
    "MetricKey",
    "Quantum",
    "RedisRole",
    "ResourceGroupID",
    "ResourceGroupType",
    "ResourceSlot",
    "SecretKey",
    "ServiceDiscoveryType",
    "ServicePortProtocols",
    "SessionId",
    "SessionResult",
    "SessionTypes",
    "SlotName",
    "SlotNameParts",
    "SlotTypes",
    "parse_slot_name",
    "validate_slot_name",
)

# --------------------------------------------------------------------------- identifiers

PID = NewType("PID", int)
HostPID = NewType("HostPID", PID)
ContainerPID = NewType("ContainerPID", PID)

SessionId = NewType("SessionId", uuid.UUID)
KernelId = NewType("KernelId", uuid.UUID)
EndpointId = NewType("EndpointId", uuid.UUID)

ContainerId = NewType("ContainerId", str)
AgentId = NewType("AgentId", str)
ResourceGroupID = NewType("ResourceGroupID", str)
ImageAlias = NewType("ImageAlias", str)
ArchName = NewType("ArchName", str)
DeviceName = NewType("DeviceName", str)
DeviceId = NewType("DeviceId", str)
SlotName = NewType("SlotName", str)
MetricKey = NewType("MetricKey", str)

AccessKey = NewType("AccessKey", str)
SecretKey = NewType("SecretKey", str)

# --------------------------------------------------------------------------- enums


class CIStrEnum(enum.StrEnum):
    """A string enum whose lookup ignores letter case; members keep their canonical value."""

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if isinstance(value, str):
            folded = value.casefold()
            for member in cls:
                if member.value.casefold() == folded:
                    return member
        return None


class SessionTypes(CIStrEnum):
    """What a compute session is for."""

    INTERACTIVE = "interactive"
    BATCH = "batch"
    INFERENCE = "inference"
    SYSTEM = "system"


class SessionResult(CIStrEnum):
    """How a finished session ended."""

    UNDEFINED = "undefined"
    SUCCESS = "success"
    FAILURE = "failure"


class ClusterMode(CIStrEnum):
    """Whether a multi-container session runs on one node or spans several."""

    SINGLE_NODE = "single-node"
    MULTI_NODE = "multi-node"


class ServiceDiscoveryType(CIStrEnum):
    """Which backend stores service discovery records."""

    ETCD = "etcd"
    REDIS = "redis"


class SlotTypes(CIStrEnum):
    """How a resource slot's quantity is measured (and humanized)."""

    COUNT = "count"
    BYTES = "bytes"
    UNIQUE = "unique"


class AutoPullBehavior(CIStrEnum):
    """When an agent pulls a container image again."""

    DIGEST = "digest"
    TAG = "tag"
    NONE = "none"


class ServicePortProtocols(CIStrEnum):
    """Protocols of the service ports a kernel exposes."""

    HTTP = "http"
    TCP = "tcp"
    PREOPEN = "preopen"
    INTERNAL = "internal"


class ResourceGroupType(CIStrEnum):
    """Kinds of resource (scaling) groups."""

    COMPUTE = "compute"
    STORAGE = "storage"


class DefaultForUnspecified(CIStrEnum):
    """How a resource policy treats slots it does not mention."""

    LIMITED = "LIMITED"
    UNLIMITED = "UNLIMITED"


class HandlerForUnknownSlotName(CIStrEnum):
    """What to do with a slot name that no plugin declares."""

    DROP = "drop"
    ERROR = "error"


# Redis logical databases by purpose (upstream ``ai.backend.common.defs``).
REDIS_STATISTICS_DB: Final = 0
REDIS_RATE_LIMIT_DB: Final = 1
REDIS_LIVE_DB: Final = 2
REDIS_IMAGE_DB: Final = 3
REDIS_STREAM_DB: Final = 4
REDIS_STREAM_LOCK: Final = 5
REDIS_CONTAINER_LOG: Final = 6
REDIS_BGTASK_DB: Final = 7


class RedisRole(CIStrEnum):
    """What a Redis/Valkey connection is used for; ``default_db`` is upstream's DB number."""

    STATISTICS = "statistics"
    RATE_LIMIT = "rate_limit"
    LIVE = "live"
    IMAGE = "image"
    STREAM = "stream"
    STREAM_LOCK = "stream_lock"
    CONTAINER_LOG = "container_log"
    BGTASK = "bgtask"

    @property
    def default_db(self) -> int:
        """The logical database upstream components use for this role."""
        return _REDIS_ROLE_DB[self]


_REDIS_ROLE_DB: Final[Mapping[RedisRole, int]] = {
    RedisRole.STATISTICS: REDIS_STATISTICS_DB,
    RedisRole.RATE_LIMIT: REDIS_RATE_LIMIT_DB,
    RedisRole.LIVE: REDIS_LIVE_DB,
    RedisRole.IMAGE: REDIS_IMAGE_DB,
    RedisRole.STREAM: REDIS_STREAM_DB,
    RedisRole.STREAM_LOCK: REDIS_STREAM_LOCK,
    RedisRole.CONTAINER_LOG: REDIS_CONTAINER_LOG,
    RedisRole.BGTASK: REDIS_BGTASK_DB,
}

# --------------------------------------------------------------------------- limits

QUANTITY_MAX_DIGITS: Final = 30
"""Bounds of every size and slot value: magnitude below ``10**30`` (a ``BinarySize`` is below
``10**30`` bytes, about 800,000 YiB), and a slot value has at most 30 decimal places. Any
real resource fits; values beyond (``"1e70"``, ``"1e-99"``, a 5,000-digit size) raise
``InvalidArgument`` instead of costing unbounded time and memory when printed or summed."""

_QUANTITY_LIMIT: Final = 10**QUANTITY_MAX_DIGITS


def _short(value: object) -> str:
    """``repr(value)``, cut to 60 characters (error text and data must stay small)."""
    if isinstance(value, int) and abs(value).bit_length() > 128:
        # repr() of a huge int is quadratic, and refused past 4300 digits.
        return f"<an integer of {abs(value).bit_length()} bits>"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...({len(text)} characters)"


def _decimal_in_range(value: Decimal) -> bool:
    """A finite Decimal below 10**30 in magnitude, with no digit finer than 10**-30."""
    if value.adjusted() >= QUANTITY_MAX_DIGITS:  # cheap: no digits are looked at
        return False
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    return exponent >= -QUANTITY_MAX_DIGITS


def _out_of_range(what: str, value: object) -> str:
    return (
        f"{what} {_short(value)} is out of range: finite values must be below "
        f"10**{QUANTITY_MAX_DIGITS} in magnitude, with at most {QUANTITY_MAX_DIGITS} "
        "decimal places"
    )


# --------------------------------------------------------------------------- BinarySize

_SCALE_LETTERS: Final = "kmgtpezy"  # 2**10 ... 2**80
_SIZE_RE = re.compile(
    r"\s*(?P<num>\d(?:_?\d)*(?:\.\d(?:_?\d)*)?|\.\d(?:_?\d)*)\s*(?P<unit>[a-z]*)\s*",
    re.IGNORECASE,
)
_INFINITY_WORDS: Final = frozenset({"inf", "infinite", "infinity"})


def _build_unit_table() -> dict[str, int]:
    table = {"": 0, "b": 0, "byte": 0, "bytes": 0}
    for exp, letter in enumerate(_SCALE_LETTERS, start=1):
        for tail in ("", "i", "b", "ib", "byte", "bytes", "ibyte", "ibytes"):
            table[letter + tail] = exp
    return table


_UNIT_EXPONENT: Final[Mapping[str, int]] = _build_unit_table()


def _quantize_scaled(value: int, exp: int) -> str:
    """``value / 1024**exp`` as plain text: exact if integral, else two decimals, trimmed."""
    # bit_length / 3 bounds the decimal digits (log10(2) < 1/3) without str(int), which is
    # quadratic and refused past 4300 digits.
    ctx = decimal.Context(prec=max(64, value.bit_length() // 3 + 8))
    d = ctx.divide(Decimal(value), Decimal(1024**exp))
    if d == d.to_integral_value():
        return f"{d.quantize(Decimal(1), context=ctx):f}"
    return f"{d.quantize(Decimal('0.01'), context=ctx).normalize(ctx):f}"


def _scale_of(value: int) -> int:
    exp, magnitude = 0, abs(value)
    while exp < len(_SCALE_LETTERS) and magnitude >= 1024 ** (exp + 1):
        exp += 1
    return exp


class BinarySize(int):
    """A byte count with a binary-unit parser (``"1.5g"``, ``"2 GiB"``) and formatter.

    A size is in ``0 <= n < 10**30`` (see :data:`QUANTITY_MAX_DIGITS`); anything else raises
    ``InvalidArgument``, whichever way it is made.
    """

    INFINITY: Final = Decimal("Infinity")

    def __new__(cls, value: int | str | Decimal | float = 0) -> Self:
        """Make a size from an integer, an integral Decimal/float, or a finite size string."""
        if isinstance(value, str):
            return super().__new__(cls, int(cls.finite_from_str(value)))
        number = _integral(value, what="binary size")
        if number < 0:
            raise InvalidArgument(
                f"binary size {value!r} is negative", data={"value": _short(value)}
            )
        if number >= _QUANTITY_LIMIT:
            raise InvalidArgument(
                _out_of_range("binary size", value), data={"value": _short(value)}
            )
        return super().__new__(cls, number)

    @classmethod
    def from_str(cls, expr: str | int | Decimal | float) -> BinarySize | Decimal:
        """Parse a size expression; ``"inf"``/``"infinity"`` give :data:`INFINITY`."""
        if isinstance(expr, str):
            if expr.strip().casefold() in _INFINITY_WORDS:
                return cls.INFINITY
            return cls(cls._parse(expr))
        if isinstance(expr, (Decimal, float)) and expr == cls.INFINITY:
            return cls.INFINITY
        return cls._from_number(expr)

    @classmethod
    def finite_from_str(cls, expr: str | int | Decimal | float) -> BinarySize:
        """Parse a size expression, rejecting infinity."""
        result = cls.from_str(expr)
        if isinstance(result, BinarySize):
            return result
        raise InvalidArgument(
            f"binary size {expr!r} is infinite, a finite size is required", data={"value": expr}
        )

    @classmethod
    def _from_number(cls, value: int | Decimal | float) -> BinarySize:
        return cls(value)

    @staticmethod
    def _parse(expr: str) -> int:
        match = _SIZE_RE.fullmatch(expr)
        exp = _UNIT_EXPONENT.get(match["unit"].lower()) if match else None
        if match is None or exp is None:
            raise InvalidArgument(
                f"binary size {expr!r} is not a size expression "
                "(a number with an optional unit such as '512m', '1.5 GiB', or 'inf')",
                data={"value": expr},
            )
        digits = match["num"].replace("_", "")
        ctx = decimal.Context(prec=len(digits) + 32, traps=[decimal.Inexact])
        scaled = ctx.multiply(Decimal(digits), Decimal(1024**exp))
        if scaled.adjusted() >= QUANTITY_MAX_DIGITS:  # before any int() of a huge number
            raise InvalidArgument(_out_of_range("binary size", expr), data={"value": _short(expr)})
        if scaled != scaled.to_integral_value():
            raise InvalidArgument(
                f"binary size {expr!r} means {scaled:f} bytes; fractional bytes are not allowed",
                data={"value": expr},
            )
        return int(scaled)

    def __str__(self) -> str:
        exp = _scale_of(self)
        if exp == 0:
            return f"{int(self)} byte" if self == 1 else f"{int(self)} bytes"
        return f"{_quantize_scaled(self, exp)} {_SCALE_LETTERS[exp - 1].upper()}iB"

    def __repr__(self) -> str:
        return f"BinarySize({int(self)})"

    def __format__(self, format_spec: str) -> str:
        """``"s"``: short form (``"1.5g"``); a scale letter (``"m"``): that unit; else as int."""
        if format_spec == "":
            return str(self)
        if format_spec == "s":
            exp = _scale_of(self)
            if exp == 0:
                return str(int(self))
            return f"{_quantize_scaled(self, exp)}{_SCALE_LETTERS[exp - 1]}"
        if len(format_spec) == 1 and format_spec.lower() in _SCALE_LETTERS:
            letter = format_spec.lower()
            return f"{_quantize_scaled(self, _SCALE_LETTERS.index(letter) + 1)}{letter}"
        return int.__format__(int(self), format_spec)

    @classmethod
    def _validate(cls, value: Any) -> BinarySize:
        if isinstance(value, bool) or not isinstance(value, (int, str, Decimal, float)):
            raise InvalidArgument(
                f"binary size {value!r} must be an integer or a size string",
                data={"value": repr(value)},
            )
        return cls.finite_from_str(value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        """Pydantic: accept a non-negative int or a size string; dump to JSON as an int."""
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            json_schema_input_schema=core_schema.union_schema(
                [core_schema.int_schema(ge=0), core_schema.str_schema()]
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(
                int, return_schema=core_schema.int_schema(), when_used="json"
            ),
        )


def _integral(value: object, *, what: str) -> int:
    """Exactly convert an int-like value, rejecting fractions, NaN and infinity.

    A value of 10**30 or more (:data:`QUANTITY_MAX_DIGITS`) raises ``InvalidArgument``
    before any huge ``int`` is built.
    """
    if isinstance(value, int):
        if abs(value).bit_length() > 128:  # > 3.4e38: certainly out of range
            raise InvalidArgument(_out_of_range(what, value), data={"value": _short(value)})
        return int(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            raise InvalidArgument(f"{what} {value!r} is not a whole number", data={"value": value})
        return int(value)
    if isinstance(value, Decimal):
        if value.is_finite() and value.adjusted() >= QUANTITY_MAX_DIGITS:
            raise InvalidArgument(_out_of_range(what, value), data={"value": _short(value)})
        if not value.is_finite() or value != value.to_integral_value():
            raise InvalidArgument(
                f"{what} {_short(value)} is not a whole number", data={"value": _short(value)}
            )
        return int(value)
    raise InvalidArgument(
        f"{what} {value!r} has unsupported type {type(value).__name__}",
        data={"value": repr(value)},
    )


# --------------------------------------------------------------------------- slot names


class IntrinsicSlotNames(enum.Enum):
    """Slots every agent has, whatever its accelerators."""

    CPU = SlotName("cpu")
    MEMORY = SlotName("mem")


_SLOT_NAME_RE = re.compile(
    r"(?P<device>[a-z][a-z0-9_-]*)(?:\.(?P<major>[a-z0-9][a-z0-9_-]*))?"
    r"(?::(?P<minor>[A-Za-z0-9][A-Za-z0-9._-]*))?"
)


@dataclass(frozen=True, slots=True)
class SlotNameParts:
    """A slot name split as ``device[.major][:minor]`` (``cuda.device:1g.5gb-mig``)."""

    device_name: DeviceName
    major_type: str
    minor_type: str

    @property
    def is_accelerator(self) -> bool:
        """True for device slots (anything but the intrinsic ``cpu`` and ``mem``)."""
        return self.device_name not in ("cpu", "mem")


def validate_slot_name(name: str) -> SlotName:
    """Return ``name`` as a ``SlotName`` if it is ``device[.major][:minor]``, else raise."""
    if not isinstance(name, str) or _SLOT_NAME_RE.fullmatch(name) is None:
        raise InvalidArgument(
            f"slot name {name!r} is not of the form device[.major][:minor] "
            "(e.g. 'cpu', 'mem', 'cuda.shares')",
            data={"slot": repr(name)},
        )
    return SlotName(name)


def parse_slot_name(name: str) -> SlotNameParts:
    """Split a slot name into device name, major type and minor type."""
    match = _SLOT_NAME_RE.fullmatch(validate_slot_name(name))
    assert match is not None  # validated above
    return SlotNameParts(DeviceName(match["device"]), match["major"] or "", match["minor"] or "")


# --------------------------------------------------------------------------- ResourceSlot

Quantum: Final = Decimal("0.000")  # count slots keep three decimals, as upstream

# ResourceSlot arithmetic: exact to 64 significant digits (values within QUANTITY_MAX_DIGITS
# need at most 61), errors raised instead of NaN, and a result that would need rounding raises
# (Inexact) instead of silently differing from the exact one.
_EXACT = decimal.Context(
    prec=64, traps=[decimal.InvalidOperation, decimal.Overflow, decimal.Inexact]
)
# Rounding on purpose: count slots keep three decimals (Quantum), as upstream.
_ROUNDING = decimal.Context(prec=64, traps=[decimal.InvalidOperation, decimal.Overflow])


def _slot_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidArgument(
            f"slot name {key!r} must be a non-empty string", data={"slot": repr(key)}
        )
    return key


def _slot_value(key: str, value: object) -> Decimal:
    """Coerce one slot value to a non-NaN Decimal, naming the slot on failure."""
    result: Decimal | None = None
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value).bit_length() > 128:  # > 3.4e38: out of range, never converted
            raise InvalidArgument(
                f"slot {key!r}: " + _out_of_range("value", value),
                data={"slot": key, "value": _short(value)},
            )
        result = Decimal(int(value))
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except decimal.InvalidOperation:
            result = None
    if result is None or result.is_nan():
        raise InvalidArgument(
            f"slot {key!r}: value {_short(value)} is not a number",
            data={"slot": key, "value": _short(value)},
        )
    if result.is_finite() and not _decimal_in_range(result):
        raise InvalidArgument(
            f"slot {key!r}: " + _out_of_range("value", value),
            data={"slot": key, "value": _short(value)},
        )
    return result


def _exact_short_size(value: int) -> str:
    """The short size form that reads back as exactly ``value`` (``"1.5g"``, ``"8888"``)."""
    sign, magnitude = ("-", -value) if value < 0 else ("", value)
    for exp in range(_scale_of(magnitude), 0, -1):
        if (magnitude * 100) % 1024**exp == 0:  # exact to two decimals at this unit
            return f"{sign}{_quantize_scaled(magnitude, exp)}{_SCALE_LETTERS[exp - 1]}"
    return f"{sign}{magnitude}"


def _plain(value: Decimal) -> str:
    """Decimal text without an exponent; infinities as ``Infinity`` / ``-Infinity``."""
    if value.is_infinite():
        return "Infinity" if value > 0 else "-Infinity"
    return f"{value:f}"


class ResourceSlot(MutableMapping[str, Decimal]):
    """Slot name -> Decimal quantity, with slot-wise arithmetic and a partial order.

    Missing slots read as 0 in ``+``, ``-``, ``==`` and the comparisons; ``a <= b`` holds when
    every slot of ``a`` is at most that of ``b``. Operands are never mutated.
    """

    __slots__ = ("_data",)

    _data: dict[str, Decimal]

    def __init__(
        self,
        data: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        /,
        **kwargs: Any,
    ) -> None:
        self._data = {}
        if data is not None:
            self.update(data)
        self.update(kwargs)

    # mapping protocol -------------------------------------------------------------------
    def __getitem__(self, key: str) -> Decimal:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        name = _slot_key(key)
        self._data[name] = _slot_value(name, value)

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    def copy(self) -> ResourceSlot:
        """A shallow copy."""
        return type(self)(self._data)

    def __getstate__(self) -> dict[str, Decimal]:
        return self._data

    def __setstate__(self, state: dict[str, Decimal]) -> None:
        self._data = {}
        self.update(state)  # validated like any other input

    # arithmetic -------------------------------------------------------------------------
    @classmethod
    def _coerce(cls, other: object) -> ResourceSlot | None:
        if isinstance(other, ResourceSlot):
            return other
        if isinstance(other, Mapping):
            return cls(other)
        return None

    def _combine(self, other: ResourceSlot, op: str) -> ResourceSlot:
        result = type(self)()
        for key in self._data.keys() | other._data.keys():
            a, b = self._data.get(key, Decimal(0)), other._data.get(key, Decimal(0))
            try:
                value = _EXACT.add(a, b) if op == "+" else _EXACT.subtract(a, b)
            except decimal.Inexact as exc:
                raise InvalidArgument(
                    f"slot {key!r}: {_plain(a)} {op} {_plain(b)} cannot be computed exactly",
                    data={"slot": key},
                ) from exc
            except decimal.DecimalException as exc:
                raise InvalidArgument(
                    f"slot {key!r}: {_plain(a)} {op} {_plain(b)} is undefined",
                    data={"slot": key},
                ) from exc
            if value.is_finite() and not _decimal_in_range(value):
                raise InvalidArgument(
                    f"slot {key!r}: {_plain(a)} {op} {_plain(b)} is out of range "
                    f"(magnitude 10**{QUANTITY_MAX_DIGITS} or more)",
                    data={"slot": key},
                )
            result._data[key] = value
        return result

    def __add__(self, other: object) -> ResourceSlot:
        rhs = self._coerce(other)
        if rhs is None:
            return NotImplemented
        return self._combine(rhs, "+")

    def __radd__(self, other: object) -> ResourceSlot:
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self.copy()  # lets sum(slots) start from 0
        return self.__add__(other)

    def __sub__(self, other: object) -> ResourceSlot:
        rhs = self._coerce(other)
        if rhs is None:
            return NotImplemented
        return self._combine(rhs, "-")

    def __rsub__(self, other: object) -> ResourceSlot:
        lhs = self._coerce(other)
        if lhs is None:
            return NotImplemented
        return lhs._combine(self, "-")

    def __neg__(self) -> ResourceSlot:
        return type(self)({k: -v for k, v in self._data.items()})

    # comparisons ------------------------------------------------------------------------
    def _pairs(self, other: ResourceSlot) -> Iterator[tuple[Decimal, Decimal]]:
        zero = Decimal(0)
        for key in self._data.keys() | other._data.keys():
            yield self._data.get(key, zero), other._data.get(key, zero)

    def __eq__(self, other: object) -> bool:
        try:
            rhs = self._coerce(other)
        except InvalidArgument:
            return False
        if rhs is None:
            return NotImplemented
        return all(a == b for a, b in self._pairs(rhs))

    def __le__(self, other: object) -> bool:
        rhs = self._coerce(other)
        if rhs is None:
            return NotImplemented
        return all(a <= b for a, b in self._pairs(rhs))

    def __ge__(self, other: object) -> bool:
        rhs = self._coerce(other)
        if rhs is None:
            return NotImplemented
        return all(a >= b for a, b in self._pairs(rhs))

    def __lt__(self, other: object) -> bool:
        rhs = self._coerce(other)
        if rhs is None:
            return NotImplemented
        return self <= rhs and self != rhs

    def __gt__(self, other: object) -> bool:
        rhs = self._coerce(other)
        if rhs is None:
            return NotImplemented
        return self >= rhs and self != rhs

    # normalisation and conversion -------------------------------------------------------
    def normalize_slots(self, known_slots: Iterable[str], *, ignore_unknown: bool) -> ResourceSlot:
        """Keep only ``known_slots``, filling the missing ones with 0.

        Unknown slots are dropped when ``ignore_unknown`` is set, else ``InvalidArgument``
        names them.
        """
        known = list(known_slots)
        unknown = sorted(self._data.keys() - set(known))
        if unknown and not ignore_unknown:
            raise InvalidArgument(
                f"unknown slot(s): {', '.join(map(repr, unknown))}", data={"slots": unknown}
            )
        return type(self)({k: self._data.get(k, Decimal(0)) for k in known})

    @staticmethod
    def guess_slot_type(name: str) -> SlotTypes:
        """Upstream's fallback when no slot types are known: ``*mem*`` is bytes, else count."""
        return SlotTypes.BYTES if "mem" in name else SlotTypes.COUNT

    @classmethod
    def from_user_input(
        cls, obj: Mapping[str, Any], slot_types: Mapping[str, SlotTypes | str] | None = None
    ) -> ResourceSlot:
        """Normalise user values: sizes like ``"4g"`` for byte slots, counts to 3 decimals.

        With ``slot_types`` every unknown slot is an error and missing ones are filled with 0.
        """
        result = cls()
        for key, value in obj.items():
            if value is None:
                continue
            name = _slot_key(key)
            result._data[name] = cls._normalize_value(name, value, cls._type_of(name, slot_types))
        if slot_types is not None:
            for key in slot_types:
                result._data.setdefault(key, Decimal(0))
        return result

    @classmethod
    def _type_of(cls, name: str, slot_types: Mapping[str, SlotTypes | str] | None) -> SlotTypes:
        if slot_types is None:
            return cls.guess_slot_type(name)
        if name not in slot_types:
            raise InvalidArgument(f"unknown slot {name!r}", data={"slot": name})
        return SlotTypes(slot_types[name])

    @staticmethod
    def _normalize_value(name: str, value: Any, slot_type: SlotTypes) -> Decimal:
        if slot_type is SlotTypes.BYTES and isinstance(value, str):
            try:
                return Decimal(BinarySize.from_str(value))
            except InvalidArgument as exc:
                raise InvalidArgument(
                    f"slot {name!r}: {exc}", data={"slot": name, "value": value}
                ) from exc
        number = _slot_value(name, value)
        if slot_type is SlotTypes.BYTES:
            if number.is_finite() and number != number.to_integral_value():
                raise InvalidArgument(
                    f"slot {name!r}: {value!r} is a fractional number of bytes",
                    data={"slot": name, "value": repr(value)},
                )
            return number
        if number.is_finite():
            try:
                number = number.quantize(Quantum, context=_ROUNDING).normalize(_EXACT)
            except decimal.DecimalException as exc:  # not expected within the range
                raise InvalidArgument(
                    f"slot {name!r}: value {_short(value)} cannot be rounded to {Quantum}",
                    data={"slot": name, "value": _short(value)},
                ) from exc
        return number

    def to_humanized(
        self, slot_types: Mapping[str, SlotTypes | str] | None = None
    ) -> dict[str, str]:
        """Human-readable values: byte slots in the short size form (``"4g"``), others plain.

        A byte value uses the largest unit that shows it exactly (two decimals at most), else
        plain bytes (``8888``, not ``"8.68k"``), so ``from_user_input`` reads every
        non-negative value back unchanged.
        """
        result = {}
        for key, value in self._data.items():
            slot_type = self._type_of(key, slot_types)
            if (
                slot_type is SlotTypes.BYTES
                and value.is_finite()
                and value == value.to_integral_value()
            ):
                result[key] = _exact_short_size(int(value))
            elif value.is_finite():
                result[key] = _plain(value.normalize(_EXACT))
            else:
                result[key] = _plain(value)
        return result

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ResourceSlot:
        """Read the JSON form (decimal strings or numbers); ``None`` values are skipped."""
        return cls({k: v for k, v in obj.items() if v is not None})

    def to_json(self) -> dict[str, str]:
        """The JSON form: slot name -> decimal string without exponent (``"Infinity"``)."""
        return {k: _plain(v) for k, v in self._data.items()}

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        """Pydantic: validate from a mapping of numbers/strings; dump to the JSON form."""

        def validate(value: Any) -> ResourceSlot:
            if isinstance(value, ResourceSlot):
                return value
            if not isinstance(value, Mapping):
                raise InvalidArgument(
                    f"resource slots {value!r} must be a mapping", data={"value": repr(value)}
                )
            return cls.from_json(value)

        return core_schema.no_info_plain_validator_function(
            validate,
            json_schema_input_schema=core_schema.dict_schema(
                core_schema.str_schema(),
                core_schema.union_schema([core_schema.str_schema(), core_schema.float_schema()]),
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: v.to_json(), when_used="json"
            ),
        )


# --------------------------------------------------------------------------- HostPortPair

_HOST_RE = re.compile(r"[^\s/\[\]@?#:]+")


class _HostPort(NamedTuple):
    host: str
    port: int


class HostPortPair(_HostPort):
    """A validated ``(host, port)`` pair; ``str()`` brackets IPv6 hosts (``[::1]:8080``)."""

    __slots__ = ()

    def __new__(cls, host: str, port: int | str) -> Self:
        """Validate ``host`` (name, IPv4 or IPv6, brackets optional) and ``port`` (0-65535)."""
        return super().__new__(cls, _check_host(host), _check_port(port, host))

    @classmethod
    def parse(cls, text: str, *, default_port: int | None = None) -> HostPortPair:
        """Parse ``host:port``, ``[ipv6]:port``, or a bare host when ``default_port`` is set."""
        if not isinstance(text, str):
            raise InvalidArgument(f"address {text!r} must be a string", data={"value": repr(text)})
        raw = text.strip()
        host: str
        port: int | str | None
        if raw.startswith("["):
            host, sep, rest = raw[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise InvalidArgument(
                    f"address {text!r}: expected '[ipv6]:port'", data={"value": text}
                )
            port = rest[1:] if rest else None
            host = f"[{host}]"  # brackets promise an IPv6 literal; the constructor checks it
        elif raw.count(":") == 1:
            host, _, port = raw.partition(":")
        elif ":" in raw:
            try:
                ipaddress.IPv6Address(raw)
            except ValueError:
                raise InvalidArgument(
                    f"address {text!r} is not host:port", data={"value": text}
                ) from None
            if default_port is None:
                raise InvalidArgument(
                    f"address {text!r}: an IPv6 address with a port needs brackets, "
                    f"e.g. '[{raw}]:8080'",
                    data={"value": text},
                )
            host, port = raw, None
        else:
            host, port = raw, None
        if port is None:
            if default_port is None:
                raise InvalidArgument(f"address {text!r} has no port", data={"value": text})
            port = default_port
        return cls(host, port)

    @property
    def is_ipv6(self) -> bool:
        """True when the host is an IPv6 literal."""
        return ":" in self.host

    def as_sockaddr(self) -> tuple[str, int]:
        """The ``(host, port)`` tuple socket APIs take."""
        return self.host, self.port

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"HostPortPair(host={self.host!r}, port={self.port})"

    def __getnewargs__(self) -> tuple[str, int]:
        return self.host, self.port

    @classmethod
    def _validate(cls, value: Any) -> HostPortPair:
        if isinstance(value, HostPortPair):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, Mapping):
            if "host" not in value or "port" not in value:
                raise InvalidArgument(
                    f"address {dict(value)!r} needs 'host' and 'port'",
                    data={"value": repr(value)},
                )
            return cls(value["host"], value["port"])
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(value[0], value[1])
        raise InvalidArgument(
            f"address {value!r} must be 'host:port', {{host, port}} or [host, port]",
            data={"value": repr(value)},
        )

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        """Pydantic: accept ``"host:port"``, ``{host, port}`` or ``[host, port]``.

        Dumps to JSON as ``{"host", "port"}``, the shape upstream config files use.
        """
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            json_schema_input_schema=core_schema.union_schema(
                [
                    core_schema.str_schema(),
                    core_schema.typed_dict_schema(
                        {
                            "host": core_schema.typed_dict_field(core_schema.str_schema()),
                            "port": core_schema.typed_dict_field(
                                core_schema.int_schema(ge=0, le=65535)
                            ),
                        }
                    ),
                ]
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: {"host": v.host, "port": v.port}, when_used="json"
            ),
        )


def _check_host(host: object) -> str:
    if not isinstance(host, str):
        raise InvalidArgument(f"host {host!r} must be a string", data={"host": repr(host)})
    name = host.strip()
    if not name.isprintable():  # NUL, other control characters, line separators
        raise InvalidArgument(
            f"host {host!r} contains a control or non-printable character", data={"host": host}
        )
    bracketed = name.startswith("[") and name.endswith("]")
    if bracketed:
        name = name[1:-1]
    if bracketed or ":" in name:
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            raise InvalidArgument(
                f"host {host!r} is not a valid IPv6 address", data={"host": host}
            ) from None
        return name
    if _HOST_RE.fullmatch(name) is None:
        raise InvalidArgument(
            f"host {host!r} is not a host name or IP address", data={"host": host}
        )
    return name


def _check_port(port: object, host: object) -> int:
    number: int | None = None
    if isinstance(port, int) and not isinstance(port, bool):
        number = int(port)
    elif isinstance(port, str) and port.strip().isdecimal():
        number = int(port.strip())
    if number is None or not 0 <= number <= 65535:
        raise InvalidArgument(
            f"port {port!r} of host {host!r} is not an integer in 0-65535",
            data={"port": repr(port), "host": repr(host)},
        )
    return number
