"""Introspection of pydantic models for the loader: keys, nested types, secrets, extras."""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Secret, SecretBytes, SecretStr
from pydantic.fields import FieldInfo

__all__ = (
    "FieldSpec",
    "ModelSpec",
    "extra_policy",
    "holds_secret",
    "is_secret_field",
    "loose_key",
    "mapping_value_type",
    "mentions_secret",
    "model_of",
    "model_spec",
    "sequence_item_type",
    "union_member",
    "wants_container",
)

ExtraPolicy = Literal["allow", "ignore", "forbid"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a model: its Python name, the key the loader feeds pydantic, its info."""

    name: str
    key: str
    info: FieldInfo
    secret: bool


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """The fields of a model indexed by every spelling the loader accepts."""

    model: type[BaseModel]
    fields: tuple[FieldSpec, ...]
    exact: Mapping[str, FieldSpec]
    loose: Mapping[str, FieldSpec]
    extra: ExtraPolicy

    def find(self, key: str, *, loose: bool = False) -> FieldSpec | None:
        """The field a key names (name or alias; ``loose`` also ignores case and ``-``/``_``)."""
        found = self.exact.get(key)
        if found is None and loose:
            found = self.loose.get(loose_key(key))
        return found


def loose_key(key: str) -> str:
    """The case- and separator-insensitive form of a key (``Max-Conn`` -> ``max_conn``)."""
    return key.lower().replace("-", "_")


def _spellings(name: str, info: FieldInfo) -> tuple[str, list[str]]:
    names: list[str] = []
    va = info.validation_alias
    if isinstance(va, str):
        names.append(va)
    elif isinstance(va, AliasChoices):
        names.extend(c for c in va.choices if isinstance(c, str))
    if info.alias:
        names.append(info.alias)
    key = names[0] if names else name
    names.append(name)
    return key, names


@functools.cache
def model_spec(model: type[BaseModel]) -> ModelSpec:
    """Index the fields of ``model`` (cached per class)."""
    fields: list[FieldSpec] = []
    exact: dict[str, FieldSpec] = {}
    loose: dict[str, FieldSpec] = {}
    for name, info in model.model_fields.items():
        key, spellings = _spellings(name, info)
        spec = FieldSpec(name, key, info, is_secret_field(info))
        fields.append(spec)
        for spelling in spellings:
            exact.setdefault(spelling, spec)
            loose.setdefault(loose_key(spelling), spec)
    return ModelSpec(model, tuple(fields), exact, loose, extra_policy(model))


def extra_policy(model: type[BaseModel]) -> ExtraPolicy:
    """``allow``/``ignore`` only when the model sets it explicitly; anything else is ``forbid``.

    pydantic's own default is to ignore extra keys silently; the loader does not follow it,
    so a typo in a config file is always reported unless the model opted in.
    """
    extra = model.model_config.get("extra")
    return extra if extra in ("allow", "ignore") else "forbid"


def _strip(annotation: Any) -> Any:
    """Drop ``Annotated`` metadata and ``None`` from unions; keep other unions whole."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin is typing.Union or origin is types.UnionType:
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) == 1:
                annotation = args[0]
                continue
        return annotation


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class an annotation holds (``M``, ``M | None``), or ``None``."""
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


_MAPPING_ORIGINS = (dict, Mapping, typing.Mapping, typing.MutableMapping, typing.Dict)  # noqa: UP006
_SEQUENCE_ORIGINS = (list, tuple, set, frozenset, Sequence, typing.Sequence, typing.List)  # noqa: UP006


def mapping_value_type(annotation: Any) -> Any | None:
    """The value type of a ``dict[K, V]``-like annotation (``Any`` if bare), else ``None``."""
    annotation = _strip(annotation)
    origin = typing.get_origin(annotation) or annotation
    if origin in _MAPPING_ORIGINS or (isinstance(origin, type) and issubclass(origin, Mapping)):
        args = typing.get_args(annotation)
        return args[1] if len(args) == 2 else Any
    return None


def sequence_item_type(annotation: Any) -> Any | None:
    """The item type of ``list[V]``, ``tuple[V, ...]``, ``set[V]`` (bare: ``Any``), or ``None``."""
    annotation = _strip(annotation)
    origin = typing.get_origin(annotation) or annotation
    if origin not in _SEQUENCE_ORIGINS:
        return None
    args = typing.get_args(annotation)
    if origin is tuple:
        return args[0] if len(args) == 2 and args[1] is Ellipsis else None
    return args[0] if len(args) == 1 else Any


def wants_container(annotation: Any) -> bool:
    """Whether a field expects a model, mapping or sequence (so text is parsed as JSON)."""
    stripped = _strip(annotation)
    return (
        model_of(stripped) is not None
        or mapping_value_type(stripped) is not None
        or typing.get_origin(stripped) in _SEQUENCE_ORIGINS
        or stripped in _SEQUENCE_ORIGINS
    )


_SECRET_TYPES = (SecretStr, SecretBytes, Secret)


def _is_secret_type(annotation: Any) -> bool:
    candidate = typing.get_origin(annotation) or annotation
    return isinstance(candidate, type) and issubclass(candidate, _SECRET_TYPES)


def _is_secret_marker(info: Any) -> bool:
    extra = getattr(info, "json_schema_extra", None)
    return isinstance(extra, dict) and extra.get("secret") is True


def mentions_secret(annotation: Any) -> bool:
    """Whether an annotation is, or contains, ``SecretStr``/``SecretBytes``/``Secret[T]``.

    Contains means: as an argument of a container, union or ``Annotated`` (the latter also
    counts a ``Field(json_schema_extra={"secret": True})`` in its metadata); models are
    not looked into (see :func:`holds_secret`).
    """
    if _is_secret_type(annotation) or _is_secret_marker(annotation):
        return True
    return any(mentions_secret(arg) for arg in typing.get_args(annotation))


def holds_secret(annotation: Any) -> bool:
    """Whether a value of this annotation can hold a secret anywhere inside it.

    Like :func:`mentions_secret`, and also looking into models: a model holds a secret when
    one of its fields is secret (:func:`is_secret_field`) or holds one, nested models,
    containers and union members included.
    """
    return _holds_secret(annotation, frozenset())


def _holds_secret(annotation: Any, seen: frozenset[type[BaseModel]]) -> bool:
    if _is_secret_type(annotation) or _is_secret_marker(annotation):
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return False  # a recursive model: its fields are being checked already
        inner = seen | {annotation}
        return any(
            spec.secret or _holds_secret(spec.info.annotation, inner)
            for spec in model_spec(annotation).fields
        )
    return any(_holds_secret(arg, seen) for arg in typing.get_args(annotation))


def union_member(annotation: Any, tag: str | int) -> Any | None:
    """The member of a union annotation that pydantic names ``tag`` in an error location.

    pydantic names a model member by its class name; other members (and tags of
    discriminated unions) are not resolved and give ``None``.
    """
    annotation = _strip(annotation)
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    for member in typing.get_args(annotation):
        sub = model_of(member)
        if sub is not None and sub.__name__ == tag:
            return member
    return None


def is_secret_field(info: FieldInfo) -> bool:
    """A field is secret when typed ``SecretStr``/``SecretBytes`` or marked ``{"secret": True}``."""
    if _is_secret_marker(info):
        return True
    return mentions_secret(info.annotation)
