"""Entry point: global options, error reporting, and the command groups.

Guarantees:
- a ``BackendAIError`` (also one raised inside a task group) is one line on stderr with its
  error code and exit status 1, with no traceback unless ``--debug``
  [tests/cli/test_demo.py::test_unknown_command_is_one_line_error_without_traceback]
  [tests/cli/test_events_cmd.py::test_unreachable_redis_is_one_line];
- a malformed ``--redis`` URL names the bad part
  [tests/cli/test_targets.py::test_bad_redis_option_is_one_line];
- every error is exactly one line on stderr: a multi-line message (several config errors,
  unknown keys) shows its first item and how many more (``--debug`` shows them all), and a
  usage error keeps click's message and points at ``--help``
  [tests/cli/test_demo.py::test_unknown_command_is_one_line_error_without_traceback]
  [tests/cli/test_config_cmd.py::test_several_errors_are_one_line].
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from ..exception import BackendAIError
from .context import CLIContext
from .targets import mask_url_secrets

__all__ = ("COMMANDS", "cli", "main", "one_line")

COMMANDS = {
    "demo": "ai.backend.common.cli.demo:demo",
    "config": "ai.backend.common.cli.config_cmd:config",
    "events": "ai.backend.common.cli.events_cmd:events",
    "dlq": "ai.backend.common.cli.dlq_cmd:dlq",
    "bgtask": "ai.backend.common.cli.bgtask_cmd:bgtask",
    "sd": "ai.backend.common.cli.sd_cmd:sd",
    "auth": "ai.backend.common.cli.auth_cmd:auth",
}
"""Command groups by name, imported only when used (each pulls in its own layers)."""


class _LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (fast start-up)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in COMMANDS:
            return found
        module_name, _, attr = COMMANDS[cmd_name].partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        self.add_command(command, cmd_name)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--redis",
    metavar="URL",
    help="redis://[:pw@]host:port/db, or redis+sentinel://[:pw@]h1:p1,h2:p2/service/db",
)
@click.option("--etcd", metavar="HOST:PORT[,...]", help="etcd endpoints")
@click.option("--namespace", default=None, help="etcd key namespace (default: local)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("--debug", is_flag=True, help="show tracebacks")
@click.option("--config", "config_path", metavar="FILE", help="configuration file")
@click.pass_context
def cli(
    ctx: click.Context,
    redis: str | None,
    etcd: str | None,
    namespace: str | None,
    as_json: bool,
    debug: bool,
    config_path: str | None,
) -> None:
    """Operate and demonstrate backend.ai-common."""
    ctx.obj = CLIContext(
        redis=redis,
        etcd=etcd,
        namespace=namespace,
        json=as_json,
        debug=debug,
        config=config_path,
    )


def _backend_error(exc: BaseException) -> BackendAIError | None:
    """The error to report: ``exc`` itself, or the first ``BackendAIError`` inside a group."""
    if isinstance(exc, BackendAIError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _backend_error(inner)
            if found is not None:
                return found
    return None


def one_line(message: str) -> str:
    """``message`` as one line: a header ending in ``:`` keeps its first item, and the rest
    is counted (``(2 more; use --debug to see all)``); URL passwords are masked."""
    parts = [line.strip() for line in message.splitlines() if line.strip()]
    if not parts:
        return ""
    if len(parts) > 1 and parts[0].endswith(":"):
        text, rest = f"{parts[0]} {parts[1].removeprefix('- ')}", len(parts) - 2
    else:
        text, rest = parts[0], len(parts) - 1
    if rest:
        text += f" ({rest} more; use --debug to see all)"
    return mask_url_secrets(text)


def _usage_line(exc: click.ClickException) -> str:
    line = f"error: {one_line(exc.format_message())}"
    ctx = exc.ctx if isinstance(exc, click.UsageError) else None
    if ctx is not None:
        line += f" (see: {ctx.command_path} --help)"
    return line


def main(argv: list[str] | None = None) -> Any:
    """Run the command; a ``BackendAIError`` becomes one line on stderr and exit status 1."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        result = cli.main(args=argv, prog_name="backend.ai-common", standalone_mode=False)
        if isinstance(result, int) and not isinstance(result, bool):
            sys.exit(result)  # click returns the status of `Exit(n)` when not standalone
        return result
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        if debug:
            exc.show()  # click's full usage text
        else:
            click.echo(_usage_line(exc), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        error = _backend_error(exc)
        if error is not None:
            click.echo(f"error: {one_line(str(error))} [{error.error_code()}]", err=True)
            sys.exit(1)
        click.echo(
            f"internal error: {type(exc).__name__}: {one_line(str(exc))} "
            "(run with --debug for the traceback)",
            err=True,
        )
        sys.exit(2)
