"""JSON helpers on orjson: one encoder for the whole package (layer 1, pure).

``dump_json`` returns bytes and ``dump_json_str`` text; both understand UUIDs, datetimes,
dataclasses, enums, named tuples (as arrays), ``Decimal`` (as a string, so no precision is
lost) and pydantic models.
``load_json`` accepts bytes or text and raises :class:`~ai.backend.common.exception.InvalidArgument`
naming the source (a file name, a field) on malformed input.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from typing import Any

import orjson

from .exception import InvalidArgument

__all__ = ("dump_json", "dump_json_str", "load_json")


def _default(obj: Any) -> Any:
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, tuple):  # NamedTuples (orjson only takes exact tuples), as stdlib json
        return list(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dump_json(obj: Any, *, sort_keys: bool = False, indent: bool = False) -> bytes:
    """Encode ``obj`` as JSON bytes (compact unless ``indent``)."""
    option = orjson.OPT_NON_STR_KEYS
    if sort_keys:
        option |= orjson.OPT_SORT_KEYS
    if indent:
        option |= orjson.OPT_INDENT_2
    return orjson.dumps(obj, default=_default, option=option)


def dump_json_str(obj: Any, *, sort_keys: bool = False, indent: bool = False) -> str:
    """Encode ``obj`` as JSON text."""
    return dump_json(obj, sort_keys=sort_keys, indent=indent).decode()


def load_json(data: bytes | bytearray | memoryview | str, *, source: str = "input") -> Any:
    """Decode JSON; malformed input raises ``InvalidArgument`` naming ``source``."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"{source}: malformed JSON: {exc}", data={"source": source}) from exc
