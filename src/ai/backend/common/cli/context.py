"""Global options and output helpers shared by every command.

The effective settings are :class:`~.settings.CommonSettings` loaded with the layered loader
(defaults, the ``backend.ai-common`` config file, ``BACKEND_*`` variables) with the global
command-line options applied on top as overrides; they are loaded on first use, so commands
that need no backend (``config``, ``auth``) never read a config file.

Guarantees:
- a command that needs Redis or etcd without ``--redis`` / ``--etcd`` (or the config) fails
  with one line naming the missing option
  [tests/cli/test_events_cmd.py::test_missing_redis_is_one_line];
- command-line options override the config file
  [tests/cli/test_targets.py::test_options_override_config_file].
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..clients.valkey import ValkeyTarget
from ..configs import load_config
from ..exception import ConfigurationError
from ..json import dump_json_str
from .settings import DAEMON_NAME, CommonSettings
from .targets import parse_etcd_endpoints, parse_redis_url

__all__ = ("CLIContext", "pass_cli")

T = TypeVar("T")


@dataclass
class CLIContext:
    """What the global options selected, plus the two consoles (results and diagnostics)."""

    redis: str | None = None
    etcd: str | None = None
    namespace: str | None = None
    json: bool = False
    debug: bool = False
    config: str | None = None
    out: Console = field(default_factory=lambda: Console(highlight=False, soft_wrap=True))
    err: Console = field(
        default_factory=lambda: Console(stderr=True, highlight=False, soft_wrap=True)
    )
    _settings: CommonSettings | None = field(default=None, repr=False)

    # -- settings -------------------------------------------------------------------------

    @property
    def settings(self) -> CommonSettings:
        """The effective settings: config file and environment, overridden by the options."""
        if self._settings is None:
            overrides: dict[str, Any] = {}
            if self.redis is not None:
                parse_redis_url(self.redis)  # a bad URL is reported as the option's fault
                overrides["redis"] = self.redis
            if self.etcd is not None:
                overrides["etcd"] = parse_etcd_endpoints(self.etcd)
            if self.namespace is not None:
                overrides["namespace"] = self.namespace
            loaded = load_config(
                CommonSettings,
                daemon_name=DAEMON_NAME,
                config_file=self.config,
                overrides=overrides,
            )
            self._settings = loaded.config
        return self._settings

    @property
    def has_redis(self) -> bool:
        """Whether a Redis URL is configured (option, file or environment)."""
        return self.settings.redis is not None

    @property
    def has_etcd(self) -> bool:
        """Whether etcd endpoints are configured (option, file or environment)."""
        return bool(self.settings.etcd)

    def redis_target(self, command: str) -> ValkeyTarget:
        """The Redis target; raises one clear ``ConfigurationError`` when none is configured."""
        url = self.settings.redis
        if url is None:
            raise ConfigurationError(
                f"`{command}` needs Redis: give --redis redis://host:port/db (or set `redis` "
                f"in {DAEMON_NAME}.toml or BACKEND_REDIS)",
                data={"option": "--redis"},
            )
        return parse_redis_url(url, option="--redis" if self.redis is not None else "redis")

    def etcd_endpoints(self, command: str) -> list[str]:
        """The etcd endpoints; raises one clear ``ConfigurationError`` when none is configured."""
        endpoints = self.settings.etcd
        if not endpoints:
            raise ConfigurationError(
                f"`{command}` needs etcd: give --etcd host:port[,host:port...] (or set `etcd` "
                f"in {DAEMON_NAME}.toml)",
                data={"option": "--etcd"},
            )
        return parse_etcd_endpoints(endpoints, option="--etcd" if self.etcd else "etcd")

    # -- running --------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a command's coroutine on a new event loop."""
        return asyncio.run(coro)

    @staticmethod
    def stop_on_signals(stop: asyncio.Event) -> list[signal.Signals]:
        """Set ``stop`` on SIGINT/SIGTERM (clean shutdown); returns the signals hooked."""
        loop = asyncio.get_running_loop()
        hooked = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Unix
                continue
            hooked.append(sig)
        return hooked

    # -- output ---------------------------------------------------------------------------

    def emit(self, obj: dict[str, Any]) -> None:
        """Print one JSON object per line in ``--json`` mode (a no-op otherwise)."""
        if self.json:
            sys.stdout.write(dump_json_str(obj) + "\n")
            sys.stdout.flush()

    def table(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        """Print rows as a rich table, or as JSON objects keyed by column in ``--json`` mode."""
        if self.json:
            for row in rows:
                self.emit(dict(zip(columns, row, strict=True)))
            return
        table = Table(title=title)
        for col in columns:
            table.add_column(col)
        for row in rows:
            table.add_row(*(escape(str(v)) for v in row))
        self.out.print(table)

    def say(self, text: str) -> None:
        """Print a human line with rich markup (suppressed in ``--json`` mode)."""
        if not self.json:
            self.out.print(text)

    def plain(self, text: str) -> None:
        """Print a human line as is, no markup (suppressed in ``--json`` mode)."""
        if not self.json:
            self.out.print(text, markup=False)

    def note(self, text: str) -> None:
        """A diagnostic line on stderr (shown in every mode; scripts read stdout)."""
        self.err.print(text, markup=False)
        self.err.file.flush()


pass_cli = click.make_pass_decorator(CLIContext)
