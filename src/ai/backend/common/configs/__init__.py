"""Layered configuration: defaults, files, environment, overrides, validated by a model (layer 2).

A config is a pydantic model (usually a :class:`~ai.backend.common.dto.BaseConfigModel`,
which takes ``snake_case`` and ``kebab-case`` keys). :class:`ConfigLoader` reads its layers
(:class:`AbstractConfigLayer`: :class:`TomlFileLayer`, :class:`YamlFileLayer`,
:class:`EnvLayer`, :class:`MappingLayer`; an etcd layer plugs in the same way), deep-merges
them in order over the model's defaults, validates the result and keeps, for every value,
the :class:`ValueSource` it came from. :func:`load_config` is the one-call form with the
usual stack; :func:`find_config_file` finds the daemon's file; :func:`sample_config` writes a
commented TOML sample; :class:`ConfigHolder` keeps the live config and swaps it on reload.

Guarantees:
- later layers win at every leaf, and each leaf's provenance names the layer that supplied it
  [tests/configs/test_provenance.py::test_later_layers_win_at_every_leaf]
  [tests/configs/test_provenance.py::test_provenance_names_supplier];
- a bad value in a file raises a ``ConfigurationError`` naming the file, the key path and the
  reason [tests/configs/test_loader.py::test_bad_toml_value_names_file_key_and_reason];
- an unknown key is reported with its file and key, never dropped silently
  [tests/configs/test_loader.py::test_unknown_key_is_reported];
- secrets are redacted in ``describe()``/``dump()``
  [tests/configs/test_loader.py::test_dump_redacts_secrets];
- a failed reload keeps the old config
  [tests/configs/test_holder.py::test_reload_keeps_old_config_on_bad_value].

See the module docstrings of :mod:`.sources`, :mod:`.loader`, :mod:`.discovery` and
:mod:`.sample` for the environment mapping, the search order and the limits.
"""

from .discovery import CONFIG_SUFFIXES, SYSTEM_CONFIG_DIR, config_search_paths, find_config_file
from .exceptions import (
    ConfigFileError,
    ConfigFileNotFound,
    ConfigUnknownKeyError,
    ConfigurationError,
    ConfigValidationError,
)
from .holder import ConfigHolder
from .loader import REDACTED, ConfigEntry, ConfigLoader, LoadedConfig, load_config
from .provenance import KeyPath, MergeResult, Provenance, ValueSource, format_key_path, merge_layers
from .sample import SECRET_PLACEHOLDER, sample_config
from .sources import (
    CONFIG_FILE_ENV,
    AbstractConfigLayer,
    EnvLayer,
    MappingLayer,
    TomlFileLayer,
    YamlFileLayer,
    file_layer,
)

__all__ = (
    "CONFIG_FILE_ENV",
    "CONFIG_SUFFIXES",
    "REDACTED",
    "SECRET_PLACEHOLDER",
    "SYSTEM_CONFIG_DIR",
    "AbstractConfigLayer",
    "ConfigEntry",
    "ConfigFileError",
    "ConfigFileNotFound",
    "ConfigHolder",
    "ConfigLoader",
    "ConfigUnknownKeyError",
    "ConfigValidationError",
    "ConfigurationError",
    "EnvLayer",
    "KeyPath",
    "LoadedConfig",
    "MappingLayer",
    "MergeResult",
    "Provenance",
    "TomlFileLayer",
    "ValueSource",
    "YamlFileLayer",
    "config_search_paths",
    "file_layer",
    "find_config_file",
    "format_key_path",
    "load_config",
    "merge_layers",
    "sample_config",
)
