"""``backend.ai-common config``: check, show and sample configuration files."""

from __future__ import annotations

import click

from ..configs import load_config, sample_config
from .context import CLIContext, pass_cli
from .settings import resolve_schema

__all__ = ("config",)

_schema_option = click.option(
    "--schema",
    metavar="MODULE:CLASS",
    help="pydantic model to validate against (default: this command's own settings)",
)


@click.group()
def config() -> None:
    """Check, show and sample configuration files."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@_schema_option
@pass_cli
def check(cli: CLIContext, file: str, schema: str | None) -> None:
    """Validate FILE; a bad value is reported with its file, key and reason (exit 1)."""
    model = resolve_schema(schema)
    loaded = load_config(model, config_file=file, env_prefix=None)
    cli.emit({"file": file, "schema": model.__name__, "valid": True})
    cli.say(f"{file}: valid {model.__name__} ({len(loaded.describe())} values)")


@config.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
@_schema_option
@click.option("--env/--no-env", default=True, show_default=True, help="apply BACKEND_* variables")
@pass_cli
def show(cli: CLIContext, file: str, schema: str | None, env: bool) -> None:
    """Print the effective values of FILE with their sources, secrets redacted."""
    model = resolve_schema(schema)
    loaded = load_config(model, config_file=file, env_prefix="BACKEND_" if env else None)
    entries = loaded.describe()
    cli.table(
        f"{model.__name__} from {file}",
        ["key", "value", "source"],
        [[e.key, e.value, str(e.source)] for e in entries],
    )


@config.command("sample")
@_schema_option
def sample(schema: str | None) -> None:
    """Print a commented sample TOML file generated from the schema."""
    click.echo(sample_config(resolve_schema(schema)), nl=False)
