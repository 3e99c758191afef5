"""Where a daemon's config file is: explicit path, ``BACKEND_CONFIG_FILE``, then the usual dirs.

Search order for daemon ``manager`` (the first existing file wins; in each directory
``.toml`` before ``.yaml`` before ``.yml``):

1. the explicit path (a command-line option), which must exist;
2. the file named by the environment variable ``BACKEND_CONFIG_FILE``, which must exist;
3. ``./manager.toml`` (the current directory);
4. ``$XDG_CONFIG_HOME/backend.ai/manager.toml``, by default ``~/.config/backend.ai/manager.toml``;
5. ``/etc/backend.ai/manager.toml``.

Guarantees:
- the order above is followed, each later place used only when the earlier ones have no file
  [tests/configs/test_discovery.py::test_search_order];
- an explicit path or ``BACKEND_CONFIG_FILE`` naming a missing file raises
  :class:`ConfigFileNotFound` naming it, never falls through to another file
  [tests/configs/test_discovery.py::test_missing_explicit_path_is_an_error]
  [tests/configs/test_discovery.py::test_missing_env_path_is_an_error].
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .exceptions import ConfigFileError, ConfigFileNotFound, ConfigurationError
from .sources import CONFIG_FILE_ENV

__all__ = ("CONFIG_SUFFIXES", "SYSTEM_CONFIG_DIR", "config_search_paths", "find_config_file")

CONFIG_SUFFIXES = (".toml", ".yaml", ".yml")
"""File suffixes tried in each directory, in order."""

SYSTEM_CONFIG_DIR = Path("/etc/backend.ai")
"""The system-wide config directory, searched last."""


def _user_config_dir(environ: Mapping[str, str]) -> Path:
    xdg = environ.get("XDG_CONFIG_HOME")
    if xdg:
        return Path(xdg) / "backend.ai"
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".config" / "backend.ai"


def config_search_paths(
    daemon_name: str,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    system_dir: str | os.PathLike[str] = SYSTEM_CONFIG_DIR,
) -> list[Path]:
    """The candidate files searched after the explicit path and ``BACKEND_CONFIG_FILE``."""
    if not daemon_name or os.sep in daemon_name or daemon_name.startswith("."):
        raise ConfigurationError(
            f"daemon name {daemon_name!r} cannot name a config file",
            data={"daemon_name": daemon_name},
        )
    environ = os.environ if environ is None else environ
    dirs = [Path.cwd() if cwd is None else Path(cwd), _user_config_dir(environ), Path(system_dir)]
    return [d / f"{daemon_name}{suffix}" for d in dirs for suffix in CONFIG_SUFFIXES]


def _existing(path: Path, named_by: str) -> Path:
    if not path.exists():
        raise ConfigFileNotFound(
            f"config file {path} ({named_by}) does not exist",
            data={"file": str(path), "named_by": named_by},
        )
    if not path.is_file():
        raise ConfigFileError(
            f"config file {path} ({named_by}) is not a regular file",
            data={"file": str(path), "named_by": named_by, "reason": "not a regular file"},
        )
    return path


def find_config_file(
    daemon_name: str,
    explicit_path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    system_dir: str | os.PathLike[str] = SYSTEM_CONFIG_DIR,
) -> Path | None:
    """The config file to load for ``daemon_name``, or ``None`` when there is none.

    An explicit path or ``BACKEND_CONFIG_FILE`` must name an existing file (else
    ``ConfigFileNotFound``); an empty ``BACKEND_CONFIG_FILE`` counts as unset.
    """
    environ = os.environ if environ is None else environ
    if explicit_path is not None:
        return _existing(Path(explicit_path), "given explicitly")
    from_env = environ.get(CONFIG_FILE_ENV)
    if from_env:
        return _existing(Path(from_env), f"named by {CONFIG_FILE_ENV}")
    for candidate in config_search_paths(
        daemon_name, environ=environ, cwd=cwd, system_dir=system_dir
    ):
        if candidate.is_file():
            return candidate
    return None
