"""The layered loader: read every layer, merge in order, validate, remember each value's source.

Order: model defaults, then the layers in the order given (the standard stack is the TOML or
YAML file, then environment variables, then explicit overrides; an etcd layer goes wherever
its module puts it). See :mod:`.sources` for the layers and the environment mapping.

Guarantees:
- a later layer wins over an earlier one at every key
  [tests/configs/test_loader.py::test_precedence_defaults_file_env_override];
- every effective value names its source: file and key, environment variable, ``override``
  or ``default`` [tests/configs/test_loader.py::test_provenance_per_leaf];
- a value that fails validation raises :class:`ConfigValidationError` naming the file, the
  key path and the reason, and its ``data["errors"]`` lists every failing field with its
  source [tests/configs/test_loader.py::test_bad_toml_value_names_file_key_and_reason]
  [tests/configs/test_loader.py::test_bad_yaml_value_names_file_key_and_reason];
- a key the model does not declare raises :class:`ConfigUnknownKeyError` naming the file and
  the key, for snake_case and kebab-case spellings alike, unless the model sets
  ``extra="allow"`` (kept) or ``extra="ignore"`` (listed in ``LoadedConfig.ignored``)
  [tests/configs/test_loader.py::test_unknown_key_is_reported]
  [tests/configs/test_loader.py::test_extra_allow_keeps_and_ignore_lists];
- :meth:`LoadedConfig.dump` shows every value with its source and never a secret's value
  (``SecretStr``/``SecretBytes`` fields and fields marked ``json_schema_extra={"secret": True}``),
  also inside lists and mappings of models, which are listed one leaf at a time
  [tests/configs/test_loader.py::test_dump_redacts_secrets]
  [tests/configs/test_loader.py::test_dump_redacts_secrets_inside_lists_of_models];
- a validation error never shows a secret: the input at a location whose annotation is or
  holds a secret (a section, a union member, the whole model) is shown as ``<redacted>`` in
  the message and in ``data["errors"][i]["value"]``, and a secret's text quoted by a
  validator's message is replaced too
  [tests/configs/test_loader.py::test_section_validator_error_does_not_echo_secret]
  [tests/configs/test_loader.py::test_root_validator_error_does_not_echo_secret]
  [tests/configs/test_loader.py::test_union_member_error_does_not_echo_secret]
  [tests/configs/test_loader.py::test_validator_quoting_a_secret_is_scrubbed];
- text in an environment variable that is not valid JSON (for a list, table or section) is
  reported by variable and position, never echoed
  [tests/configs/test_loader.py::test_bad_json_in_env_is_not_echoed].

Limits:
- a field typed as a union of several models is validated by pydantic but its keys are not
  checked by the loader (it cannot know which model applies).
- a validation error raised by a model validator over several fields is attributed to the
  nearest source the loader can find for its location.
- redaction in a validation error is by location, so it errs on the safe side: the input of
  a failing section (or union) that holds any secret is hidden whole, even when the failing
  part was not the secret; a secret shorter than 4 characters quoted by a validator's own
  message is not scrubbed from it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic_core import to_jsonable_python

from ..json import dump_json_str
from ._normalize import normalize_layer
from ._schema import (
    holds_secret,
    mapping_value_type,
    model_of,
    model_spec,
    sequence_item_type,
    union_member,
)
from .discovery import find_config_file
from .exceptions import ConfigUnknownKeyError, ConfigValidationError
from .provenance import KeyPath, Provenance, ValueSource, format_key_path, merge_layers
from .sources import AbstractConfigLayer, EnvLayer, MappingLayer, file_layer

__all__ = ("REDACTED", "ConfigEntry", "ConfigLoader", "LoadedConfig", "load_config")

M = TypeVar("M", bound=BaseModel)

REDACTED = "**********"
"""What :meth:`LoadedConfig.describe` shows instead of a secret value."""

DEFAULT_SOURCE = ValueSource("default")


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One effective value: its key path, its JSON-ready value (redacted if secret), its source."""

    path: KeyPath
    value: Any
    source: ValueSource
    secret: bool

    @property
    def key(self) -> str:
        """The dotted key path (``db.port``)."""
        return format_key_path(self.path)


@dataclass(frozen=True, slots=True)
class LoadedConfig(Generic[M]):
    """A validated config, the source of each of its values, and the keys that were ignored."""

    config: M
    provenance: Provenance
    ignored: tuple[ValueSource, ...] = ()

    def source_of(self, path: str | Sequence[str | int]) -> ValueSource:
        """Where the effective value at ``path`` (``"db.port"`` or ``("db", "port")``) came from."""
        parts = tuple(path.split(".")) if isinstance(path, str) else tuple(path)
        # Keys are recorded as the model spells them; accept snake_case and kebab-case alike.
        for spelling in (parts, _respell(parts, "_", "-"), _respell(parts, "-", "_")):
            found = self.provenance.leaf_source(spelling)
            if found is not None:
                return found
        return DEFAULT_SOURCE

    def describe(self) -> list[ConfigEntry]:
        """Every effective leaf value with its source; secret values are :data:`REDACTED`."""
        return list(self._entries(self.config, (), False))

    def dump(self) -> str:
        """A text listing, one ``key = value  # source`` line per leaf, secrets redacted."""
        lines = []
        for entry in self.describe():
            lines.append(f"{entry.key} = {dump_json_str(entry.value)}  # {entry.source}")
        return "\n".join(lines) + "\n"

    def _entries(self, obj: BaseModel, path: KeyPath, secret: bool) -> Iterator[ConfigEntry]:
        for spec in model_spec(type(obj)).fields:
            value = getattr(obj, spec.name)
            yield from self._value_entries(value, (*path, spec.key), secret or spec.secret)
        for key, value in (obj.model_extra or {}).items():
            yield from self._value_entries(value, (*path, key), secret)

    def _value_entries(self, value: Any, path: KeyPath, secret: bool) -> Iterator[ConfigEntry]:
        if isinstance(value, BaseModel):
            yield from self._entries(value, path, secret)
        elif isinstance(value, Mapping) and value:
            for key, item in value.items():
                yield from self._value_entries(item, (*path, key), secret)
        elif isinstance(value, list | tuple) and any(map(_is_structured, value)):
            # Items that are models or mappings are listed one leaf at a time, so a
            # secret-marked field inside them is redacted like anywhere else.
            for index, item in enumerate(value):
                yield from self._value_entries(item, (*path, index), secret)
        else:
            secret = secret or isinstance(value, SecretStr | SecretBytes)
            shown = REDACTED if secret and value is not None else to_jsonable_python(value)
            yield ConfigEntry(path, shown, self.source_of(path), secret)


class ConfigLoader(Generic[M]):
    """Loads ``model`` from ``layers`` (later layers win); call :meth:`load` to (re)read them."""

    def __init__(self, model: type[M], layers: Sequence[AbstractConfigLayer]) -> None:
        self.model = model
        self.layers = tuple(layers)

    @classmethod
    def standard(
        cls,
        model: type[M],
        *,
        daemon_name: str | None = None,
        config_file: str | os.PathLike[str] | None = None,
        env_prefix: str | None = "BACKEND_",
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> ConfigLoader[M]:
        """The usual stack: config file (explicit or discovered), environment, overrides.

        ``config_file`` must exist; without it the file is searched as
        :func:`~ai.backend.common.configs.find_config_file` does for ``daemon_name`` (none
        found means defaults, environment and overrides only). ``env_prefix=None`` skips the
        environment. Looks at the file system once, here; :meth:`load` re-reads the file.
        """
        layers: list[AbstractConfigLayer] = []
        path = None
        if config_file is not None or daemon_name is not None:
            path = find_config_file(daemon_name or "", config_file, environ=environ)
        if path is not None:
            layers.append(file_layer(path))
        if env_prefix is not None:
            layers.append(EnvLayer(env_prefix, environ=environ))
        if overrides:
            layers.append(MappingLayer(overrides, name="override"))
        return cls(model, layers)

    def load(self) -> LoadedConfig[M]:
        """Read, merge and validate every layer.

        Raises ``ConfigFileError`` (unreadable or malformed file), ``ConfigUnknownKeyError``
        (keys the model does not declare) or ``ConfigValidationError`` (values it rejects).
        """
        normalized = [normalize_layer(self.model, layer, layer.load()) for layer in self.layers]
        unknown = [u for n in normalized for u in n.unknown]
        if unknown:
            lines = "\n".join(f"  - {u.describe()}" for u in unknown)
            raise ConfigUnknownKeyError(
                f"unknown configuration key(s) for {self.model.__name__}:\n{lines}",
                data={"model": self.model.__name__, "unknown": [u.to_dict() for u in unknown]},
            )
        merged = merge_layers((n.values, n.source_of) for n in normalized)
        try:
            config = self.model.model_validate(merged.values)
        except ValidationError as exc:
            raise _validation_error(self.model, exc, merged.provenance) from exc
        ignored = tuple(s for n in normalized for s in n.ignored)
        return LoadedConfig(config, merged.provenance, ignored)


def load_config(
    model: type[M],
    *,
    daemon_name: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
    env_prefix: str | None = "BACKEND_",
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> LoadedConfig[M]:
    """Load ``model`` once from the standard stack (see :meth:`ConfigLoader.standard`)."""
    return ConfigLoader.standard(
        model,
        daemon_name=daemon_name,
        config_file=config_file,
        env_prefix=env_prefix,
        environ=environ,
        overrides=overrides,
    ).load()


def _is_structured(value: Any) -> bool:
    return isinstance(value, BaseModel | Mapping | list | tuple)


def _respell(parts: Sequence[str | int], old: str, new: str) -> tuple[str | int, ...]:
    return tuple(p.replace(old, new) if isinstance(p, str) else p for p in parts)


def _where(source: ValueSource | None, loc: KeyPath) -> str:
    key = format_key_path(loc)
    if source is None:
        return f"key {key} (set by no source)"
    if source.layer == "env" and source.location:
        return f"environment variable {source.location} (key {key})"
    return f"{source.location or source.layer}, key {key}"


def _is_secret(model: type[BaseModel], loc: KeyPath) -> bool:
    """Whether the input at ``loc`` may hold a secret: the annotation there holds one.

    Walks models, containers and union members (by the member's class name, as pydantic
    writes it); a part it cannot resolve stops the walk at the annotation above it, so a
    section, a union or a whole model that holds any secret counts as secret.
    """
    annotation: Any = model
    for part in loc:
        sub = model_of(annotation)
        if sub is not None:
            spec = model_spec(sub).find(str(part))
            if spec is None:
                return holds_secret(sub)
            if spec.secret:
                return True
            annotation = spec.info.annotation
            continue
        item = mapping_value_type(annotation)
        if item is None:
            item = sequence_item_type(annotation)
        if item is None:
            item = union_member(annotation, part)
        if item is None:
            break
        annotation = item
    return holds_secret(annotation)


def _secret_texts(model: type[BaseModel], loc: KeyPath, value: Any) -> Iterator[str]:
    """The text of every leaf of the input at ``loc`` that sits at a secret location."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _secret_texts(model, (*loc, key), item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _secret_texts(model, (*loc, index), item)
    elif value is not None and not isinstance(value, bool) and _is_secret(model, loc):
        if isinstance(value, SecretStr | SecretBytes):
            value = value.get_secret_value()
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        yield value if isinstance(value, str) else str(value)


def _scrub(message: str, texts: Iterator[str]) -> str:
    """``message`` with each of ``texts`` (4 characters or more) replaced by a marker.

    A validator may quote its input in its message; a secret's value must not show.
    """
    for text in sorted(set(texts), key=len, reverse=True):
        if len(text) >= _MIN_SCRUBBED:
            message = message.replace(text, _REDACTED_INPUT)
    return message


_MIN_SCRUBBED = 4
_REDACTED_INPUT = "<redacted>"


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _validation_error(
    model: type[BaseModel], exc: ValidationError, provenance: Provenance
) -> ConfigValidationError:
    errors: list[dict[str, Any]] = []
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        source = provenance.lookup(loc)
        reason = str(err["msg"])
        value: str | None = None
        if _is_secret(model, loc):
            reason = _scrub(reason, _secret_texts(model, loc, err.get("input")))
            if err["type"] != "missing":
                value = _REDACTED_INPUT
        elif err["type"] != "missing":
            value = _short_repr(err.get("input"))
        lines.append(f"{_where(source, loc)}: {reason}" + (f" (got {value})" if value else ""))
        errors.append(
            {
                "loc": format_key_path(loc),
                "key": source.key if source else None,
                "source": source.location if source else None,
                "layer": source.layer if source else None,
                "msg": reason,
                "type": str(err["type"]),
                "value": value,
            }
        )
    head = f"invalid configuration for {model.__name__}"
    if len(lines) == 1:
        message = f"{head}: {lines[0]}"
    else:
        message = f"{head} ({len(lines)} errors):\n" + "\n".join(f"  - {line}" for line in lines)
    return ConfigValidationError(message, data={"model": model.__name__, "errors": errors})
