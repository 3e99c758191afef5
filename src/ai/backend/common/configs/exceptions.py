"""The errors of :mod:`ai.backend.common.configs`; each names the file, key and reason.

::

    ConfigurationError (exception.py)   400  config_parse_invalid-parameters
    ├── ConfigFileError                 a file cannot be read or parsed (file, line, column)
    │   └── ConfigFileNotFound (LookupError)  an explicitly named file does not exist
    ├── ConfigUnknownKeyError           keys the model does not declare (file and key of each)
    └── ConfigValidationError           values the model rejects (file, key and reason of each)

``data`` of each error is JSON-ready: ``file``/``line``/``column``/``reason`` for file errors,
``unknown`` (a list of ``{"key", "source", ...}``) for unknown keys, ``errors`` (a list of
``{"loc", "key", "source", "layer", "msg", "type", "value"}``) for validation errors.
"""

from __future__ import annotations

from ..exception import ConfigurationError

__all__ = (
    "ConfigFileError",
    "ConfigFileNotFound",
    "ConfigUnknownKeyError",
    "ConfigValidationError",
    "ConfigurationError",
)


class ConfigFileError(ConfigurationError):
    """A config file cannot be read, or is not valid TOML/YAML, or its top level is no table."""

    error_title = "Invalid configuration file."


class ConfigFileNotFound(ConfigFileError, LookupError):
    """A config file named explicitly (argument or ``BACKEND_CONFIG_FILE``) does not exist."""

    error_title = "Configuration file not found."


class ConfigUnknownKeyError(ConfigurationError):
    """A source sets keys that the config model does not declare (and does not allow)."""

    error_title = "Unknown configuration keys."


class ConfigValidationError(ConfigurationError):
    """The merged configuration fails the model's validation; ``data["errors"]`` lists each."""

    error_title = "Invalid configuration value."
