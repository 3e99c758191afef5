"""The ``backend.ai-common`` command's own configuration model.

Loaded with the layered loader (defaults, ``backend.ai-common.toml`` found by the usual search,
``BACKEND_*`` environment variables, then the command-line options as overrides). ``config
sample`` prints a commented file for it; ``config check``/``show`` validate any model given
with ``--schema``, this one by default.
"""

from __future__ import annotations

import importlib

from pydantic import BaseModel, Field, SecretStr

from ..configs import ConfigurationError
from ..dto import BaseConfigModel

__all__ = ("DAEMON_NAME", "AuthSettings", "CommonSettings", "EventSettings", "resolve_schema")

DAEMON_NAME = "backend.ai-common"


class EventSettings(BaseConfigModel):
    """How the command joins the event bus."""

    group: str | None = Field(
        None,
        description=(
            "Existing consumer group `events tail` joins (taking its share of that group's "
            "messages); none: a read-only XREAD view that creates no group."
        ),
    )
    max_deliveries: int = Field(
        5, ge=1, description="Deliveries before a message is dead-lettered."
    )


class AuthSettings(BaseConfigModel):
    """Keys used by ``auth`` commands when none are given on the command line."""

    access_key: str | None = Field(None, description="Access key for signing requests.")
    secret_key: SecretStr | None = Field(None, description="Secret key for signing requests.")


class CommonSettings(BaseConfigModel):
    """Settings of the backend.ai-common command (file: backend.ai-common.toml)."""

    redis: str | None = Field(
        None,
        description="redis://host:port/db, or redis+sentinel://[:pw@]h1:p1,h2:p2/service/db.",
        examples=["redis://127.0.0.1:6379/4"],
    )
    etcd: list[str] = Field(
        default_factory=list,
        description="etcd endpoints as host:port.",
        examples=[["127.0.0.1:2379"]],
    )
    namespace: str = Field("local", description="etcd key namespace (/sorna/<namespace>/).")
    events: EventSettings = Field(default_factory=EventSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)


def resolve_schema(spec: str | None) -> type[BaseModel]:
    """Import ``module:Class`` (a pydantic model); ``None`` gives :class:`CommonSettings`."""
    if spec is None:
        return CommonSettings
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(
            f"--schema must look like package.module:ModelClass, got {spec!r}",
            data={"schema": spec},
        )
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"--schema {spec!r}: {exc}", data={"schema": spec}) from exc
    if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
        raise ConfigurationError(
            f"--schema {spec!r} is not a pydantic model class", data={"schema": spec}
        )
    return obj
