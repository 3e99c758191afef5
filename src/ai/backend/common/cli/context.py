"""Global options and output helpers shared by every command."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..json import dump_json_str

__all__ = ("CLIContext", "pass_cli")


@dataclass
class CLIContext:
    """What the global options selected, plus the two consoles (results and diagnostics)."""

    redis: str | None = None
    etcd: str | None = None
    namespace: str = "local"
    json: bool = False
    debug: bool = False
    config: str | None = None
    out: Console = field(default_factory=lambda: Console(highlight=False, soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))

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
            table.add_row(*(str(v) for v in row))
        self.out.print(table)

    def say(self, text: str) -> None:
        """Print a human line (suppressed in ``--json`` mode)."""
        if not self.json:
            self.out.print(text)


pass_cli = click.make_pass_decorator(CLIContext)
