"""Tests of the commented TOML sample generated from a config model."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import Field

from ai.backend.common.configs import (
    SECRET_PLACEHOLDER,
    ConfigLoader,
    ConfigValidationError,
    TomlFileLayer,
    sample_config,
)
from ai.backend.common.dto import BaseConfigModel

from ._models import ClusterConfig, DBConfig, ManagerConfig, RequiredConfig


def load_sample(model: type[BaseConfigModel], tmp_path: Path) -> BaseConfigModel:
    path = tmp_path / "sample.toml"
    path.write_text(sample_config(model), encoding="utf-8")
    return ConfigLoader(model, [TomlFileLayer(path)]).load().config


def test_sample_round_trips(tmp_path: Path) -> None:
    text = sample_config(ManagerConfig)
    data = tomllib.loads(text)
    assert data["db"]["max-connections"] == 10
    assert data["hosts"] == ["127.0.0.1"]
    assert "replica" not in data  # an optional section defaulting to None is commented out
    assert load_sample(ManagerConfig, tmp_path) == ManagerConfig()


def test_sample_hides_secrets() -> None:
    text = sample_config(ManagerConfig)
    assert "default-pw" not in text
    assert "default-token" not in text
    assert f'# password = "{SECRET_PLACEHOLDER}"' in text
    assert f'# api-token = "{SECRET_PLACEHOLDER}"' in text


def test_sample_comments_describe_fields() -> None:
    text = sample_config(ManagerConfig)
    assert "# Manager settings." in text
    assert "# Debug mode.\n# Never in production.\n# type: bool\ndebug = false" in text
    assert "[db]\n# Database connection." in text
    assert "# TCP port.\n# type: int\nport = 5432" in text


def test_required_fields_use_examples_and_placeholders(tmp_path: Path) -> None:
    text = sample_config(RequiredConfig)
    assert 'node-name = "node-1"' in text
    assert f'secret-key = "{SECRET_PLACEHOLDER}"' in text
    config = load_sample(RequiredConfig, tmp_path)
    assert isinstance(config, RequiredConfig)
    assert config.node_name == "node-1"
    assert config.timeout == 1.5


class NeedsHost(BaseConfigModel):
    """A required field with no example."""

    host: str


def test_required_field_without_example_is_left_to_fill(tmp_path: Path) -> None:
    text = sample_config(NeedsHost)
    assert "# type: str (required: fill in a value)\n# host =" in text
    with pytest.raises(ConfigValidationError) as info:
        load_sample(NeedsHost, tmp_path)
    assert "key host (set by no source): Field required" in str(info.value)


def test_required_section_is_written_as_a_table() -> None:
    data = tomllib.loads(sample_config(ClusterConfig))
    assert data["node"] == {
        "node-name": "node-1",
        "secret-key": SECRET_PLACEHOLDER,
        "timeout": 1.5,
    }
    assert data["backends"] == []


class Awkward(BaseConfigModel):
    """Values that need TOML escaping."""

    text: str = 'quote " backslash \\ newline \n tab \t del \x7f unicode é 😀'
    ratio: float = float("inf")
    small: float = 1e-20
    labels: dict[str, str] = {"a.b": "x", "plain": "y"}
    nested: dict[str, list[int]] = {"k": [1, 2]}
    maybe: int | None = Field(None, examples=[3])
    db: DBConfig = DBConfig(port=6000)


def test_awkward_values_round_trip(tmp_path: Path) -> None:
    text = sample_config(Awkward)
    assert "# maybe = 3" in text
    assert load_sample(Awkward, tmp_path) == Awkward()
