"""Small pure helpers people reach for: durations, nested mappings, sizes, UUIDs, flags, batches.

Sizes are formatted and parsed by :class:`ai.backend.common.types.BinarySize`; the helpers
here only wrap it. Every parser raises :class:`~ai.backend.common.exception.InvalidArgument`
naming the bad input.

Guarantees:
- ``parse_duration(format_duration(d)) == d`` for every non-negative ``timedelta``
  [tests/test_utils.py::test_duration_round_trip];
- ``deep_merge`` returns a new dict and never mutates its inputs; every leaf of a later mapping
  wins; nested mappings merge, anything else (lists included) is replaced
  [tests/test_utils.py::test_deep_merge_later_leaves_win,
  tests/test_utils.py::test_deep_merge_does_not_mutate_inputs];
- ``deep_merge(a, b, c) == deep_merge(deep_merge(a, b), c)``, and it is associative when no key
  holds a mapping in one input and a non-mapping in another
  [tests/test_utils.py::test_deep_merge_fold_and_associativity];
- ``batched`` yields every item once, in order, in tuples of ``n`` (the last may be shorter)
  [tests/test_utils.py::test_batched_preserves_items].

Limits:
- ``parse_duration`` rounds to whole microseconds (``timedelta``'s resolution)
  [tests/test_utils.py::test_parse_duration_rounds_to_microseconds];
- ``deep_merge`` copies mappings (into plain dicts) but shares every other value with its
  inputs [tests/test_utils.py::test_deep_merge_shares_leaves].
"""

from __future__ import annotations

import decimal
import itertools
import re
import uuid
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any, Final, TypeVar

from .exception import InvalidArgument
from .types import BinarySize

__all__ = (
    "batched",
    "deep_merge",
    "format_duration",
    "humanize_bytes",
    "is_uuid",
    "nested_get",
    "new_id",
    "parse_bool",
    "parse_duration",
    "readable_size_to_bytes",
    "short_uuid",
    "uuid_from_str",
)

T = TypeVar("T")

# --------------------------------------------------------------------------- durations

_US_PER_UNIT: Final[Mapping[str, int]] = {
    "w": 7 * 86_400_000_000,
    "d": 86_400_000_000,
    "h": 3_600_000_000,
    "m": 60_000_000,
    "s": 1_000_000,
    "ms": 1_000,
    "us": 1,
    "µs": 1,
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN_SECONDS_RE = re.compile(rf"\s*(?P<num>{_NUMBER})\s*")
_PART_RE = re.compile(rf"\s*(?P<num>{_NUMBER})\s*(?P<unit>ms|us|µs|[wdhms])")
_DURATION_HINT: Final = "expected e.g. '1d2h30m', '90s', '1.5h', '500ms' or plain seconds '30'"


def parse_duration(value: str | int | float | timedelta, *, field: str = "duration") -> timedelta:
    """Parse ``"1d2h30m"``, ``"1.5h"``, ``"500ms"`` or plain seconds (``"30"``, ``30``).

    Units: ``w``, ``d``, ``h``, ``m`` (minutes), ``s``, ``ms``, ``us``/``µs``; each at most
    once, in any order, optionally separated by spaces. Negative durations are rejected.
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise InvalidArgument(f"{field} {value!r} is negative", data={field: str(value)})
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidArgument(
            f"{field} {value!r} must be a string or a number of seconds",
            data={field: repr(value)},
        )
    if isinstance(value, (int, float)):
        try:
            seconds = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
        except decimal.InvalidOperation:  # pragma: no cover - repr of a float is always valid
            seconds = Decimal("NaN")
        if not seconds.is_finite() or seconds < 0:
            raise InvalidArgument(
                f"{field} {value!r} is not a non-negative number of seconds",
                data={field: repr(value)},
            )
        return _micros_to_timedelta(seconds * 1_000_000, value, field)
    if (plain := _PLAIN_SECONDS_RE.fullmatch(value)) is not None:
        return _micros_to_timedelta(Decimal(plain["num"]) * 1_000_000, value, field)
    total, pos, seen = Decimal(0), 0, set()
    text = value.rstrip()
    while pos < len(text):
        part = _PART_RE.match(text, pos)
        if part is None:
            raise InvalidArgument(
                f"{field} {value!r} is not a duration ({_DURATION_HINT})", data={field: value}
            )
        unit = "us" if part["unit"] == "µs" else part["unit"]
        if unit in seen:
            raise InvalidArgument(
                f"{field} {value!r} repeats the unit {unit!r}", data={field: value}
            )
        seen.add(unit)
        total += Decimal(part["num"]) * _US_PER_UNIT[unit]
        pos = part.end()
    if not seen:
        raise InvalidArgument(
            f"{field} {value!r} is not a duration ({_DURATION_HINT})", data={field: value}
        )
    return _micros_to_timedelta(total, value, field)


def _micros_to_timedelta(micros: Decimal, original: object, field: str) -> timedelta:
    try:
        return timedelta(microseconds=int(micros.to_integral_value(decimal.ROUND_HALF_EVEN)))
    except OverflowError:
        raise InvalidArgument(
            f"{field} {original!r} is out of range", data={field: repr(original)}
        ) from None


def format_duration(value: timedelta) -> str:
    """Compact text that :func:`parse_duration` reads back: ``"1d2h30m"``, ``"1s500ms"``."""
    micros = value // timedelta(microseconds=1)
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    if micros == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        count, micros = divmod(micros, _US_PER_UNIT[unit])
        if count:
            parts.append(f"{count}{unit}")
    if micros:
        parts.append(f"{micros // 1000}ms" if micros % 1000 == 0 else f"{micros}us")
    return sign + "".join(parts)


# --------------------------------------------------------------------------- mappings

_MISSING: Final = object()


def nested_get(
    data: Any, path: str | Sequence[Hashable], default: Any = None, *, sep: str = "."
) -> Any:
    """Follow ``path`` (``"a.b.0"`` or ``["a", "b", 0]``) through mappings and sequences.

    Returns ``default`` as soon as a key or index is missing or a value cannot be indexed.
    """
    keys: Sequence[Hashable] = path.split(sep) if isinstance(path, str) else path
    current = data
    for key in keys:
        if isinstance(current, Mapping):
            current = current.get(key, _MISSING)
            if current is _MISSING:
                return default
        elif isinstance(current, Sequence) and not isinstance(current, (str, bytes, bytearray)):
            index = _as_index(key)
            if index is None or index >= len(current):
                return default
            current = current[index]
        else:
            return default
    return current


def _as_index(key: Hashable) -> int | None:
    if isinstance(key, int) and not isinstance(key, bool):
        return key if key >= 0 else None
    if isinstance(key, str) and key.isdecimal():
        return int(key)
    return None


def deep_merge(base: Mapping[Any, Any], *overlays: Mapping[Any, Any]) -> dict[Any, Any]:
    """Merge mappings left to right into a new dict; later leaves win, nested mappings merge.

    Lists and other non-mapping values are replaced, not concatenated. The inputs are never
    mutated.
    """
    result = _copy_tree(base)
    for overlay in overlays:
        _merge_into(result, overlay)
    return result


def _copy_tree(mapping: Mapping[Any, Any]) -> dict[Any, Any]:
    return {k: _copy_tree(v) if isinstance(v, Mapping) else v for k, v in mapping.items()}


def _merge_into(target: dict[Any, Any], overlay: Mapping[Any, Any]) -> None:
    for key, value in overlay.items():
        current = target.get(key, _MISSING)
        if isinstance(value, Mapping) and isinstance(current, dict):
            _merge_into(current, value)  # ``current`` is our own copy
        elif isinstance(value, Mapping):
            target[key] = _copy_tree(value)
        else:
            target[key] = value


# --------------------------------------------------------------------------- sizes


def humanize_bytes(value: int | Decimal, *, short: bool = False) -> str:
    """``"1.5 GiB"`` (or ``"1.5g"`` when ``short``); infinity gives ``"infinity"``/``"inf"``."""
    if isinstance(value, Decimal) and value.is_infinite():
        if value < 0:
            raise InvalidArgument(f"size {value!r} is negative infinity", data={"value": "-inf"})
        return "inf" if short else "infinity"
    size = BinarySize(value)
    return format(size, "s") if short else str(size)


def readable_size_to_bytes(expr: str | int) -> BinarySize:
    """Parse a finite size expression such as ``"512m"`` (upstream's name for it)."""
    return BinarySize.finite_from_str(expr)


# --------------------------------------------------------------------------- uuids


def is_uuid(value: object) -> bool:
    """True for a ``UUID`` or a string in any form ``uuid.UUID`` accepts."""
    if isinstance(value, uuid.UUID):
        return True
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def uuid_from_str(value: str | uuid.UUID, *, field: str = "id") -> uuid.UUID:
    """Parse a UUID; a malformed one raises ``InvalidArgument`` naming ``field``."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value.strip())
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument(
            f"{field} {value!r} is not a valid UUID", data={field: repr(value)}
        ) from None


def short_uuid(value: str | uuid.UUID, length: int = 8) -> str:
    """The first ``length`` hex digits, the short form logs show (``"3f2a9c1e"``)."""
    if not 1 <= length <= 32:
        raise InvalidArgument(f"length {length!r} must be in 1-32", data={"length": length})
    return uuid_from_str(value).hex[:length]


def new_id() -> uuid.UUID:
    """A new random (version 4) UUID."""
    return uuid.uuid4()


# --------------------------------------------------------------------------- flags, batches

_TRUE: Final = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE: Final = frozenset({"0", "false", "f", "no", "n", "off"})


def parse_bool(value: str | bool | int, *, field: str = "value") -> bool:
    """Read a flag as environments write it: yes/no, on/off, true/false, 1/0 (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise InvalidArgument(
        f"{field} {value!r} is not a boolean (yes/no, on/off, true/false, 1/0)",
        data={field: repr(value)},
    )


def batched(iterable: Iterable[T], n: int) -> Iterator[tuple[T, ...]]:
    """Yield tuples of ``n`` items in order; the last one may be shorter."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidArgument(f"batch size {n!r} must be a positive integer", data={"n": repr(n)})
    iterator = iter(iterable)
    while batch := tuple(itertools.islice(iterator, n)):
        yield batch
