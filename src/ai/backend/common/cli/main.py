"""Entry point: global options, error reporting, and the command groups."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..exception import BackendAIError
from .config_cmd import config
from .context import CLIContext
from .demo import demo

__all__ = ("cli", "main")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--redis", metavar="URL", help="redis://host:port/db or redis+sentinel://...")
@click.option("--etcd", metavar="HOST:PORT[,...]", help="etcd endpoints")
@click.option("--namespace", default="local", show_default=True, help="etcd key namespace")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option("--debug", is_flag=True, help="show tracebacks")
@click.option("--config", "config_path", metavar="FILE", help="configuration file")
@click.pass_context
def cli(
    ctx: click.Context,
    redis: str | None,
    etcd: str | None,
    namespace: str,
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


cli.add_command(demo)
cli.add_command(config)


def main(argv: list[str] | None = None) -> Any:
    """Run the command; a ``BackendAIError`` becomes one line on stderr and exit status 1."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        return cli.main(args=argv, prog_name="backend.ai-common", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except BackendAIError as exc:
        if debug:
            raise
        click.echo(f"error: {exc} [{exc.error_code()}]", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        click.echo(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            err=True,
        )
        sys.exit(2)
