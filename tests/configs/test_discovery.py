"""Tests of config file discovery: explicit path, BACKEND_CONFIG_FILE, cwd, user dir, /etc."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai.backend.common.configs import (
    CONFIG_FILE_ENV,
    ConfigFileError,
    ConfigFileNotFound,
    ConfigurationError,
    config_search_paths,
    find_config_file,
)


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A working directory, a HOME and a system dir, all empty, in tmp_path."""
    cwd = tmp_path / "cwd"
    home = tmp_path / "home"
    system = tmp_path / "etc-backend.ai"
    for d in (cwd, home / ".config" / "backend.ai", system):
        d.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv(CONFIG_FILE_ENV, raising=False)
    return {"cwd": cwd, "user": home / ".config" / "backend.ai", "system": system}


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("", encoding="utf-8")
    return path


def test_search_order(
    places: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = places["system"]
    explicit = touch(tmp_path / "explicit.toml")
    from_env = touch(tmp_path / "from-env.yaml")
    in_cwd = touch(places["cwd"] / "manager.toml")
    in_user = touch(places["user"] / "manager.toml")
    in_system = touch(system / "manager.toml")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(from_env))

    assert find_config_file("manager", explicit, system_dir=system) == explicit
    assert find_config_file("manager", system_dir=system) == from_env
    monkeypatch.delenv(CONFIG_FILE_ENV)
    assert find_config_file("manager", system_dir=system) == Path.cwd() / "manager.toml"
    in_cwd.unlink()
    assert find_config_file("manager", system_dir=system) == in_user
    in_user.unlink()
    assert find_config_file("manager", system_dir=system) == in_system
    in_system.unlink()
    assert find_config_file("manager", system_dir=system) is None


def test_suffix_order_within_a_directory(places: dict[str, Path]) -> None:
    cwd = places["cwd"]
    yml = touch(cwd / "agent.yml")
    assert find_config_file("agent", system_dir=places["system"]) == Path.cwd() / yml.name
    touch(cwd / "agent.yaml")
    assert find_config_file("agent", system_dir=places["system"]) == Path.cwd() / "agent.yaml"
    touch(cwd / "agent.toml")
    assert find_config_file("agent", system_dir=places["system"]) == Path.cwd() / "agent.toml"


def test_a_later_dir_is_used_only_without_earlier_files(places: dict[str, Path]) -> None:
    touch(places["system"] / "storage-proxy.yaml")
    touch(places["user"] / "storage-proxy.yml")
    found = find_config_file("storage-proxy", system_dir=places["system"])
    assert found == places["user"] / "storage-proxy.yml"


def test_xdg_config_home_is_honoured(
    places: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xdg = tmp_path / "xdg"
    in_xdg = touch(xdg / "backend.ai" / "manager.toml")
    touch(places["user"] / "manager.toml")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert find_config_file("manager", system_dir=places["system"]) == in_xdg


def test_missing_explicit_path_is_an_error(places: dict[str, Path], tmp_path: Path) -> None:
    touch(places["cwd"] / "manager.toml")  # must not be used instead
    missing = tmp_path / "typo.toml"
    with pytest.raises(ConfigFileNotFound) as info:
        find_config_file("manager", missing, system_dir=places["system"])
    assert str(missing) in str(info.value)
    assert info.value.data["file"] == str(missing)


def test_missing_env_path_is_an_error(
    places: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(places["cwd"] / "manager.toml")  # must not be used instead
    missing = tmp_path / "nowhere.toml"
    monkeypatch.setenv(CONFIG_FILE_ENV, str(missing))
    with pytest.raises(ConfigFileNotFound) as info:
        find_config_file("manager", system_dir=places["system"])
    assert str(missing) in str(info.value)
    assert CONFIG_FILE_ENV in str(info.value)


def test_empty_env_var_counts_as_unset(
    places: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    in_cwd = touch(places["cwd"] / "manager.toml")
    monkeypatch.setenv(CONFIG_FILE_ENV, "")
    assert find_config_file("manager", system_dir=places["system"]) == Path.cwd() / in_cwd.name


def test_explicit_directory_is_an_error(places: dict[str, Path]) -> None:
    with pytest.raises(ConfigFileError) as info:
        find_config_file("manager", places["cwd"])
    assert "not a regular file" in str(info.value)


def test_environ_argument_replaces_process_environment(tmp_path: Path) -> None:
    home = tmp_path / "h"
    in_user = touch(home / ".config" / "backend.ai" / "web.toml")
    environ = {"HOME": str(home)}
    found = find_config_file("web", environ=environ, cwd=tmp_path, system_dir=tmp_path / "s")
    assert found == in_user
    assert config_search_paths("web", environ=environ, cwd=tmp_path, system_dir="/e") == [
        tmp_path / "web.toml",
        tmp_path / "web.yaml",
        tmp_path / "web.yml",
        home / ".config/backend.ai/web.toml",
        home / ".config/backend.ai/web.yaml",
        home / ".config/backend.ai/web.yml",
        Path("/e/web.toml"),
        Path("/e/web.yaml"),
        Path("/e/web.yml"),
    ]


@pytest.mark.parametrize("name", ["", "../manager", ".hidden"])
def test_bad_daemon_name(name: str) -> None:
    with pytest.raises(ConfigurationError):
        config_search_paths(name)
