"""The layers a configuration is merged from: files, environment variables, plain mappings.

A layer is an :class:`AbstractConfigLayer`: a ``name`` (the kind of source, shown in
provenance), a ``location`` (file path, address) and a synchronous ``load()`` returning a
nested mapping. ``source_of(path)`` says where the value at a key path came from; the default
names the layer's location and the key path, :class:`EnvLayer` names the variable.

Environment mapping: with prefix ``BACKEND_`` and separator ``__``, the variable
``BACKEND_DB__MAX_CONNECTIONS=20`` sets ``db.max_connections`` (the part after the prefix is
lower-cased and split on the separator; the loader then matches each part against field names
and aliases ignoring case and treating ``-`` and ``_`` alike, so it also sets a kebab-case key
``db.max-connections``). Values stay text and the model coerces them (``"20"`` -> ``20``,
``"true"`` -> ``True``); text for a field that expects a list, mapping or model is parsed as
JSON. ``BACKEND_CONFIG_FILE`` is excluded (it names the file, see
:func:`~ai.backend.common.configs.find_config_file`). A variable whose first part names no
top-level field is not an error (the environment is shared with other programs): the loader
lists it in :attr:`~ai.backend.common.configs.LoadedConfig.ignored` and never keeps it, even for a
model that allows extra keys; inside a known section an unknown name is an error.

An etcd layer (added by the etcd module later) subclasses :class:`AbstractConfigLayer` or
uses :class:`MappingLayer`: it fetches its snapshot asynchronously and ``load()`` returns it.

Guarantees:
- a malformed TOML or YAML file raises :class:`ConfigFileError` naming the file, line and
  column [tests/configs/test_sources.py::test_malformed_toml_names_file_and_line]
  [tests/configs/test_sources.py::test_malformed_yaml_names_file_and_line];
- a YAML mapping that repeats a key is an error, not a silent overwrite
  [tests/configs/test_sources.py::test_yaml_duplicate_key_is_an_error];
- a YAML file that expands (aliases and merge keys counted in full) to more than
  :data:`MAX_FILE_VALUES` values raises :class:`ConfigFileError` naming the file and the line
  while it is parsed, before anything walks the expanded tree; an alias to a node that
  contains it is an error naming its line
  [tests/configs/test_sources.py::test_yaml_alias_bomb_fails_fast]
  [tests/configs/test_sources.py::test_yaml_recursive_alias_is_an_error];
- lists and tables nested deeper than :data:`MAX_FILE_DEPTH` levels (TOML or YAML) raise
  :class:`ConfigFileError`, never ``RecursionError``
  [tests/configs/test_sources.py::test_deep_nesting_is_an_error];
- two environment variables that set a value and a key inside it are an error naming both
  [tests/configs/test_sources.py::test_env_conflict_names_both_variables];
- a stray ``BACKEND_*`` variable is listed as ignored, a typo inside a known section is an
  error naming the variable [tests/configs/test_loader.py::test_env_unknown_keys].

Limits:
- ``load()`` must not block on the network; network-backed layers prefetch.
- Values carry no line numbers: provenance names the file and the key path only.
- A file holds at most :data:`MAX_FILE_VALUES` (100,000) values and nests at most
  :data:`MAX_FILE_DEPTH` (64) levels; real configs hold hundreds. YAML is parsed by PyYAML's
  pure-Python loader (the size check needs its composer): about 1.5 s for 33,000 values.
"""

from __future__ import annotations

import abc
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .exceptions import ConfigFileError, ConfigFileNotFound, ConfigurationError
from .provenance import KeyPath, ValueSource, format_key_path

__all__ = (
    "CONFIG_FILE_ENV",
    "MAX_FILE_DEPTH",
    "MAX_FILE_VALUES",
    "AbstractConfigLayer",
    "EnvLayer",
    "MappingLayer",
    "TomlFileLayer",
    "YamlFileLayer",
    "file_layer",
)

CONFIG_FILE_ENV = "BACKEND_CONFIG_FILE"
"""The environment variable that names the config file (never read as a config value)."""

MAX_FILE_VALUES = 100_000
"""Most values (scalars, lists and tables, counted after YAML aliases expand) a file may hold."""

MAX_FILE_DEPTH = 64
"""Deepest nesting of lists and tables a file may hold (YAML aliases expanded)."""


class AbstractConfigLayer(abc.ABC):
    """One source of configuration values, read whole by :meth:`load`."""

    name: str
    """The kind of source (``"toml"``, ``"yaml"``, ``"env"``, ``"override"``, ``"etcd"``...)."""

    location: str | None = None
    """The file path or address of the source, if it has one."""

    shared_namespace: ClassVar[bool] = False
    """An unknown top-level key is ignored (and listed) instead of an error (environment)."""

    text_values: ClassVar[bool] = False
    """Values arrive as text; text for a list/mapping/model field is parsed as JSON."""

    loose_keys: ClassVar[bool] = False
    """Keys match field names and aliases ignoring case, ``-`` and ``_`` alike."""

    @abc.abstractmethod
    def load(self) -> Mapping[str, Any]:
        """Read the source into a nested mapping; failures raise ``ConfigurationError``.

        Called again on every reload; must not block on the network.
        """

    def source_of(self, path: KeyPath) -> ValueSource:
        """Where the value at ``path`` (as :meth:`load` returned it) came from."""
        return ValueSource(self.name, self.location, format_key_path(path))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location or self.name!r})"


class MappingLayer(AbstractConfigLayer):
    """Values given in code: explicit overrides (``name="override"``) or prefetched snapshots."""

    def __init__(
        self, values: Mapping[str, Any], *, name: str = "override", location: str | None = None
    ) -> None:
        if not isinstance(values, Mapping):
            raise ConfigurationError(
                f"{name} values must be a mapping, got {type(values).__name__}",
                data={"layer": name},
            )
        self.name = name
        self.location = location
        self._values = values

    def load(self) -> Mapping[str, Any]:
        """The mapping given at construction."""
        return self._values


class _FileLayer(AbstractConfigLayer):
    def __init__(self, path: str | os.PathLike[str], *, required: bool = True) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.required = required

    def _read(self) -> str | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError as exc:
            if not self.required:
                return None
            raise ConfigFileNotFound(
                f"config file {self.location} does not exist",
                data={"file": self.location},
            ) from exc
        except OSError as exc:
            raise self._error(f"cannot be read: {exc.strerror or exc}") from exc
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._error(f"is not UTF-8 text (byte {exc.start})") from exc

    def _error(
        self, reason: str, line: int | None = None, column: int | None = None
    ) -> ConfigFileError:
        at = f" at line {line}, column {column}" if line is not None else ""
        return ConfigFileError(
            f"config file {self.location}{at} {reason}",
            data={"file": self.location, "line": line, "column": column, "reason": reason},
        )

    def _top_level(self, data: Any) -> Mapping[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            raise self._error(f"must hold a table/mapping at top level, not {type(data).__name__}")
        return data


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


class TomlFileLayer(_FileLayer):
    """A TOML file (stdlib ``tomllib``); a missing file is an error unless ``required=False``."""

    name = "toml"

    def load(self) -> Mapping[str, Any]:
        """Parse the file; malformed TOML raises ``ConfigFileError`` with line and column."""
        text = self._read()
        if text is None:
            return {}
        try:
            data = tomllib.loads(text)
        except RecursionError as exc:
            raise self._error(f"nests deeper than {MAX_FILE_DEPTH} levels") from exc
        except tomllib.TOMLDecodeError as exc:
            reason = str(exc)
            position = _TOML_POSITION.search(reason)
            if position is None:
                raise self._error(f"is not valid TOML: {reason}") from exc
            reason = reason[: position.start()]
            line, column = int(position.group(1)), int(position.group(2))
            raise self._error(f"is not valid TOML: {reason}", line, column) from exc
        if _depth(data) > MAX_FILE_DEPTH:
            raise self._error(f"nests deeper than {MAX_FILE_DEPTH} levels")
        return data


class _YamlTooBig(yaml.MarkedYAMLError):
    """A document that would expand beyond the limits (or forever) through aliases."""


def _depth(value: Any) -> int:
    """How deeply lists and tables nest in a parsed TOML document (iteratively: no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


class _UniqueKeySafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a repeated key is an error and size is bounded.

    Aliases share one node, so a few hundred bytes of nested aliases (the "billion laughs")
    stand for an exponential tree that every later step (key checks, normalisation, merge,
    validation) would walk whole. While composing, each node's expanded size and height are
    computed from its children (an alias counts what it refers to), and the document is
    refused at the first node beyond :data:`MAX_FILE_VALUES` or :data:`MAX_FILE_DEPTH`, or at
    an alias to a node that contains it.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._shapes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, height)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)  # an unknown one: the base class reports it
            if target is not None and id(target) not in self._shapes:
                raise _YamlTooBig(
                    None,
                    None,
                    f"alias *{event.anchor} refers to a node that contains it",
                    mark,
                )
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_FILE_DEPTH:
            raise _YamlTooBig(None, None, f"nests deeper than {MAX_FILE_DEPTH} levels", mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            self._measure(node)
        return node

    def _measure(self, node: yaml.Node) -> None:
        size, height = 1, 1
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            child_size, child_height = self._shapes[id(child)]
            size += child_size
            height = max(height, child_height + 1)
        if size > MAX_FILE_VALUES:
            raise _YamlTooBig(
                None,
                None,
                f"expands to more than {MAX_FILE_VALUES} values (aliases expanded)",
                node.start_mark,
            )
        if self._depth + height > MAX_FILE_DEPTH:
            raise _YamlTooBig(
                None,
                None,
                f"nests deeper than {MAX_FILE_DEPTH} levels (aliases expanded)",
                node.start_mark,
            )
        self._shapes[id(node)] = (size, height)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # an unhashable key; the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class YamlFileLayer(_FileLayer):
    """A YAML file (PyYAML safe loading, duplicate keys rejected)."""

    name = "yaml"

    def load(self) -> Mapping[str, Any]:
        """Parse the file; malformed YAML raises ``ConfigFileError`` with line and column."""
        text = self._read()
        if text is None:
            return {}
        try:
            data = yaml.load(text, Loader=_UniqueKeySafeLoader)  # a SafeLoader subclass
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            reason = " ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
            if not isinstance(exc, _YamlTooBig):
                reason = f"is not valid YAML: {reason}"
            if mark is None:
                raise self._error(reason) from exc
            raise self._error(reason, mark.line + 1, mark.column + 1) from exc
        except yaml.YAMLError as exc:
            raise self._error(f"is not valid YAML: {exc}") from exc
        except RecursionError as exc:  # the scanner and parser recurse too (flow collections)
            raise self._error(f"nests deeper than {MAX_FILE_DEPTH} levels") from exc
        data = self._top_level(data)
        self._check_keys(data, ())
        return data

    def _check_keys(self, data: Mapping[Any, Any], path: KeyPath) -> None:
        for key, value in data.items():
            if not isinstance(key, str):
                raise self._error(
                    f"has a key that is not a string: {key!r} under {format_key_path(path)}"
                )
            if isinstance(value, Mapping):
                self._check_keys(value, (*path, key))


def file_layer(path: str | os.PathLike[str], *, required: bool = True) -> AbstractConfigLayer:
    """A :class:`TomlFileLayer` or :class:`YamlFileLayer`, chosen by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".toml":
        return TomlFileLayer(path, required=required)
    if suffix in (".yaml", ".yml"):
        return YamlFileLayer(path, required=required)
    raise ConfigFileError(
        f"config file {os.fspath(path)} has an unknown type {suffix or '(no suffix)'!r}; "
        "use .toml, .yaml or .yml",
        data={"file": os.fspath(path), "reason": "unknown file type"},
    )


class EnvLayer(AbstractConfigLayer):
    """Environment variables ``<prefix><KEY>[<sep><KEY>...]`` (see the module docstring)."""

    name = "env"
    shared_namespace = True
    text_values = True
    loose_keys = True

    def __init__(
        self,
        prefix: str = "BACKEND_",
        *,
        separator: str = "__",
        environ: Mapping[str, str] | None = None,
        exclude: frozenset[str] = frozenset({CONFIG_FILE_ENV}),
    ) -> None:
        if not prefix or not separator:
            raise ConfigurationError(
                "environment prefix and separator must not be empty",
                data={"prefix": prefix, "separator": separator},
            )
        self.prefix = prefix
        self.separator = separator
        self.location = f"{prefix}*"
        self.exclude = exclude
        self._environ = environ
        self._names: dict[KeyPath, str] = {}

    def load(self) -> Mapping[str, Any]:
        """Collect the prefixed variables (``os.environ`` at call time unless ``environ``)."""
        environ = os.environ if self._environ is None else self._environ
        result: dict[str, Any] = {}
        names: dict[KeyPath, str] = {}
        for var, value in sorted(environ.items()):
            if not var.startswith(self.prefix) or var in self.exclude:
                continue
            parts = tuple(p.lower() for p in var[len(self.prefix) :].split(self.separator))
            if not all(parts):
                raise ConfigurationError(
                    f"environment variable {var} has an empty key part "
                    f"(prefix {self.prefix!r}, separator {self.separator!r})",
                    data={"variable": var},
                )
            self._insert(result, names, parts, value, var)
        self._names = names
        return result

    @staticmethod
    def _insert(
        result: dict[str, Any], names: dict[KeyPath, str], parts: KeyPath, value: str, var: str
    ) -> None:
        node = result
        for end, part in enumerate(parts[:-1], start=1):
            child = node.setdefault(str(part), {})
            if not isinstance(child, dict):
                raise ConfigurationError(
                    f"environment variables {names[parts[:end]]} and {var} conflict: "
                    f"the first sets {format_key_path(parts[:end])} to a value, "
                    "the second a key inside it",
                    data={"variables": [names[parts[:end]], var]},
                )
            node = child
        last = str(parts[-1])
        if last in node:
            other = next(n for p, n in names.items() if p[: len(parts)] == parts)
            what = "it" if isinstance(node[last], str) else "a key inside it"
            raise ConfigurationError(
                f"environment variables {other} and {var} conflict: both set "
                f"{format_key_path(parts)} (the first sets {what})",
                data={"variables": [other, var]},
            )
        node[last] = value
        names[parts] = var

    def source_of(self, path: KeyPath) -> ValueSource:
        """The variable that set ``path`` (or the nearest key above it)."""
        for end in range(len(path), 0, -1):
            var = self._names.get(path[:end])
            if var is not None:
                return ValueSource(self.name, var, format_key_path(path))
        return ValueSource(self.name, self.location, format_key_path(path))
