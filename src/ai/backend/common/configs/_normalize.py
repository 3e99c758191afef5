"""Map one layer's raw keys onto the model's fields, finding unknown keys on the way."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from json import JSONDecodeError
from typing import Any

from pydantic import BaseModel

from ..exception import InvalidArgument
from ..json import load_json
from ._schema import (
    ModelSpec,
    mapping_value_type,
    model_of,
    model_spec,
    sequence_item_type,
    wants_container,
)
from .exceptions import ConfigurationError
from .provenance import KeyPath, ValueSource, format_key_path
from .sources import AbstractConfigLayer

__all__ = ("NormalizedLayer", "UnknownKey", "normalize_layer")


@dataclass(frozen=True, slots=True)
class UnknownKey:
    """A key a layer sets that its model does not declare."""

    source: ValueSource
    model: str
    known: tuple[str, ...]

    def describe(self) -> str:
        """``<file>, key <path>: not a field of <Model> (fields: a, b)``."""
        known = ", ".join(self.known) or "none"
        return f"{self.source}: not a field of {self.model} (its fields: {known})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**self.source.to_dict(), "source": str(self.source), "model": self.model}


@dataclass(slots=True)
class NormalizedLayer:
    """A layer's values with canonical keys, where each came from, and what did not fit."""

    layer: AbstractConfigLayer
    values: dict[str, Any] = field(default_factory=dict)
    raw_paths: dict[KeyPath, KeyPath] = field(default_factory=dict)
    unknown: list[UnknownKey] = field(default_factory=list)
    ignored: list[ValueSource] = field(default_factory=list)

    def source_of(self, path: KeyPath) -> ValueSource:
        """The source of the value at a canonical path."""
        return self.layer.source_of(self.raw_paths.get(path, path))


def normalize_layer(
    model: type[BaseModel], layer: AbstractConfigLayer, raw: Mapping[str, Any]
) -> NormalizedLayer:
    """Rename every key of ``raw`` to the key its field is validated by; collect unknown keys."""
    result = NormalizedLayer(layer)
    result.values = _Walker(layer, result).model(model_spec(model), raw, (), ())
    return result


class _Walker:
    def __init__(self, layer: AbstractConfigLayer, result: NormalizedLayer) -> None:
        self.layer = layer
        self.result = result

    def model(
        self, spec: ModelSpec, raw: Mapping[Any, Any], cpath: KeyPath, rpath: KeyPath
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        for key, value in raw.items():
            rp = (*rpath, str(key))
            found = spec.find(key, loose=self.layer.loose_keys) if isinstance(key, str) else None
            if found is None:
                self._unknown(spec, key, value, cpath, rp, out)
                continue
            if found.key in out:
                raise ConfigurationError(
                    f"{self.layer.source_of(rp)}: keys {spelled[found.key]!r} and {key!r} "
                    f"both set field {found.name!r} of {spec.model.__name__}",
                    data={"key": format_key_path(rp), "field": found.name},
                )
            spelled[found.key] = key
            out[found.key] = self.value(found.info.annotation, value, (*cpath, found.key), rp)
        return out

    def _unknown(
        self,
        spec: ModelSpec,
        key: Any,
        value: Any,
        cpath: KeyPath,
        rp: KeyPath,
        out: dict[str, Any],
    ) -> None:
        if self.layer.shared_namespace and not cpath:
            # Other programs' variables share the prefix: never an error, never kept.
            self.result.ignored.append(self.layer.source_of(rp))
        elif spec.extra == "allow" and isinstance(key, str):
            out[key] = self.untyped(value, (*cpath, key), rp)
        elif spec.extra == "ignore":
            self.result.ignored.append(self.layer.source_of(rp))
        else:
            known = tuple(f.key for f in spec.fields)
            self.result.unknown.append(
                UnknownKey(self.layer.source_of(rp), spec.model.__name__, known)
            )

    def value(self, annotation: Any, value: Any, cpath: KeyPath, rpath: KeyPath) -> Any:
        self.result.raw_paths[cpath] = rpath
        if self.layer.text_values and isinstance(value, str) and wants_container(annotation):
            source = self.layer.source_of(rpath)
            try:
                value = load_json(value, source=str(source))
            except InvalidArgument as exc:
                # Never echo the text: the variable may hold a secret (a password inside a
                # section given as JSON); the position of the error is enough to find it.
                raise _bad_json(source, exc) from exc
        sub = model_of(annotation)
        if sub is not None and isinstance(value, Mapping):
            return self.model(model_spec(sub), value, cpath, rpath)
        item = mapping_value_type(annotation)
        if item is not None and isinstance(value, Mapping):
            return {k: self.value(item, v, (*cpath, k), (*rpath, k)) for k, v in value.items()}
        item = sequence_item_type(annotation)
        if item is not None and isinstance(value, list):
            return [self.value(item, v, (*cpath, i), (*rpath, i)) for i, v in enumerate(value)]
        return self.untyped(value, cpath, rpath)

    def untyped(self, value: Any, cpath: KeyPath, rpath: KeyPath) -> Any:
        self.result.raw_paths[cpath] = rpath
        if isinstance(value, Mapping):
            return {k: self.untyped(v, (*cpath, k), (*rpath, k)) for k, v in value.items()}
        return value


def _bad_json(source: ValueSource, exc: InvalidArgument) -> ConfigurationError:
    """The error for text that is not JSON: its position and the parser's reason, no text."""
    cause = exc.__cause__
    data: dict[str, Any] = {**source.to_dict(), "source": str(source)}
    detail = "it is not valid JSON"
    if isinstance(cause, JSONDecodeError):
        data.update(line=cause.lineno, column=cause.colno)
        detail += f" ({cause.msg} at line {cause.lineno}, column {cause.colno})"
    return ConfigurationError(
        f"{source}: expected JSON for a list, table or section, but {detail}; "
        "the value is not shown as it may hold a secret",
        data=data,
    )
