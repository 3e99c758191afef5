"""``backend.ai-common config``: check, show and sample configuration files, and print the
configuration reference generated from the schemas (``reference``, see :mod:`.reference`).

Guarantees:
- ``config show`` never prints a secret: secret fields are redacted by the loader, and the
  password of any URL in a value (``redis://:pw@host``, ``?sentinel_password=pw``) is masked
  while the rest of the URL stays readable
  [tests/cli/test_config_cmd.py::test_show_masks_url_passwords];
- ``config sample`` prints TOML; under ``--json`` that text is the ``text`` of one JSON object,
  so every line of ``--json`` output stays JSON
  [tests/cli/test_config_cmd.py::test_json_sample_is_one_object].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..configs import load_config, sample_config
from .context import CLIContext, pass_cli
from .settings import resolve_schema
from .targets import mask_url_secrets

__all__ = ("config",)

_schema_option = click.option(
    "--schema",
    metavar="MODULE:CLASS",
    help="pydantic model to validate against (default: this command's own settings)",
)


@click.group()
def config() -> None:
    """Check, show and sample configuration files; print the configuration reference."""


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
        [[e.key, _masked(e.value), str(e.source)] for e in entries],
    )


def _masked(value: Any) -> Any:
    """``value`` with the password of every URL in its strings masked (any schema's URLs)."""
    if isinstance(value, str):
        return mask_url_secrets(value)
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    return value


@config.command("sample")
@_schema_option
@pass_cli
def sample(cli: CLIContext, schema: str | None) -> None:
    """Print a commented sample TOML file generated from the schema.

    With --json the same TOML text comes as one object: {"schema", "format": "toml", "text"}.
    """
    model = resolve_schema(schema)
    text = sample_config(model)
    if cli.json:
        cli.emit({"schema": model.__name__, "format": "toml", "text": text})
    else:
        click.echo(text, nl=False)


@config.command("reference")
@click.option(
    "--update",
    "update",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    metavar="FILE",
    help="rewrite the generated part of FILE (e.g. README.md) instead of printing",
)
@pass_cli
def reference(cli: CLIContext, update: Path | None) -> None:
    """Print the configuration reference (markdown) generated from the config schemas."""
    from .reference import SECTIONS, render_reference, rows_of, update_file

    if update is not None:
        changed = update_file(update)
        cli.emit({"file": str(update), "changed": changed})
        cli.say(f"{update}: {'updated' if changed else 'already up to date'}")
        return
    if cli.json:
        for section in SECTIONS:
            for row in rows_of(section.cls):
                cli.emit({"section": section.cls.__name__, **row.__dict__})
        return
    click.echo(render_reference(), nl=False)
