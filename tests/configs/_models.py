"""Config models shared by the configs tests."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, SecretStr

from ai.backend.common.dto import BaseConfigModel


class DBConfig(BaseConfigModel):
    """Database connection."""

    host: str = Field("localhost", description="Host name or address.")
    port: int = Field(5432, ge=1, le=65535, description="TCP port.")
    max_connections: int = Field(10, description="Pool size.")
    password: SecretStr = Field(SecretStr("default-pw"), description="Login password.")


class LogConfig(BaseConfigModel):
    """Logging."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    fields: dict[str, str] = Field(default_factory=dict, description="Extra log fields.")


class BackendConfig(BaseConfigModel):
    """One storage backend."""

    name: str
    weight: int = 1


class PluginConfig(BaseConfigModel):
    """One plugin."""

    enabled: bool = True
    priority: int = 0


class ManagerConfig(BaseConfigModel):
    """Manager settings."""

    db: DBConfig = DBConfig()
    logging: LogConfig = LogConfig()
    debug: bool = Field(False, description="Debug mode.\nNever in production.")
    hosts: list[str] = ["127.0.0.1"]
    api_token: str = Field("default-token", json_schema_extra={"secret": True})
    backends: list[BackendConfig] = []
    plugins: dict[str, PluginConfig] = {}
    replica: DBConfig | None = None


class RequiredConfig(BaseConfigModel):
    """A model with required fields."""

    node_name: str = Field(description="Name of this node.", examples=["node-1"])
    secret_key: SecretStr
    timeout: float = 1.5


class OpenConfig(BaseConfigModel):
    """A model that keeps keys it does not declare."""

    model_config = ConfigDict(extra="allow")

    known: int = 0


class LaxConfig(BaseConfigModel):
    """A model that ignores keys it does not declare (they are listed, not kept)."""

    model_config = ConfigDict(extra="ignore")

    known: int = 0


class ClusterConfig(BaseConfigModel):
    """A model whose sections have required fields."""

    node: RequiredConfig
    backends: list[BackendConfig] = []
