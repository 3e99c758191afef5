"""Tests of the config layers: TOML/YAML files, environment variables, mappings."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai.backend.common.configs import (
    ConfigFileError,
    ConfigFileNotFound,
    ConfigurationError,
    EnvLayer,
    MappingLayer,
    TomlFileLayer,
    ValueSource,
    YamlFileLayer,
    file_layer,
)
from ai.backend.common.configs.sources import MAX_FILE_DEPTH, MAX_FILE_VALUES
from ai.backend.common.exception import BackendAIError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_layer_reads_nested_tables(tmp_path: Path) -> None:
    path = write(tmp_path / "m.toml", "[db]\nport = 5433\n[db.pool]\nsize = 3\n")
    layer = TomlFileLayer(path)
    assert layer.load() == {"db": {"port": 5433, "pool": {"size": 3}}}
    assert layer.source_of(("db", "port")) == ValueSource("toml", str(path), "db.port")


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", "[db]\nport = 1\nhost = = 2\n")
    with pytest.raises(ConfigFileError) as info:
        TomlFileLayer(path).load()
    err = info.value
    assert isinstance(err, ConfigurationError)
    assert str(path) in str(err)
    assert "line 3" in str(err)
    assert err.data["file"] == str(path)
    assert err.data["line"] == 3
    assert isinstance(err.data["column"], int)
    assert "TOML" in err.data["reason"]


def test_toml_error_without_position_still_names_file(tmp_path: Path) -> None:
    path = write(tmp_path / "cut.toml", "a = [1,")
    with pytest.raises(ConfigFileError) as info:
        TomlFileLayer(path).load()
    assert str(path) in str(info.value)
    assert info.value.data["file"] == str(path)


def test_yaml_layer_reads_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "m.yaml", "db:\n  port: 5433\nhosts: [a, b]\n")
    assert YamlFileLayer(path).load() == {"db": {"port": 5433}, "hosts": ["a", "b"]}


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", "db:\n  port: 1\n  hosts: [a, b\nlevel: info\n")
    with pytest.raises(ConfigFileError) as info:
        YamlFileLayer(path).load()
    err = info.value
    assert str(path) in str(err)
    assert err.data["file"] == str(path)
    assert isinstance(err.data["line"], int)
    assert err.data["line"] >= 3
    assert f"line {err.data['line']}" in str(err)


def test_yaml_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "dup.yaml", "db:\n  port: 1\n  port: 2\n")
    with pytest.raises(ConfigFileError) as info:
        YamlFileLayer(path).load()
    assert "duplicate key 'port'" in str(info.value)
    assert info.value.data["line"] == 3


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = "base: &b\n  port: 1\n  host: a\ndb:\n  <<: *b\n  port: 2\n"
    path = write(tmp_path / "merge.yaml", text)
    assert YamlFileLayer(path).load()["db"] == {"port": 2, "host": "a"}


def _alias_bomb(depth: int, *, merge: bool = False) -> str:
    """``depth`` levels of mappings that each refer twice to the level below."""
    lines = ["defs:", "  a0: &a0 {x: 1, y: 2}"]
    for i in range(1, depth + 1):
        if merge:
            lines.append(f"  a{i}: &a{i} {{<<: *a{i - 1}, z{i}: {{<<: *a{i - 1}}}}}")
        else:
            lines.append(f"  a{i}: &a{i} {{x: *a{i - 1}, y: *a{i - 1}}}")
    lines.append(f"etcd: [*a{depth}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("depth", "merge"),
    [(18, False), (60, False), (18, True), (60, True)],
    ids=["aliases-18", "aliases-60", "merge-keys-18", "merge-keys-60"],
)
def test_yaml_alias_bomb_fails_fast(tmp_path: Path, depth: int, merge: bool) -> None:
    # A few hundred bytes standing for 2**depth values: refused while composing, at the
    # first node past MAX_FILE_VALUES (depth 60 would never finish if it were expanded).
    path = write(tmp_path / "bomb.yaml", _alias_bomb(depth, merge=merge))
    assert path.stat().st_size < 3000
    with pytest.raises(ConfigFileError) as info:
        YamlFileLayer(path).load()
    err = info.value
    assert f"more than {MAX_FILE_VALUES} values" in str(err)
    assert err.data["file"] == str(path)
    assert isinstance(err.data["line"], int)
    assert f"{path} at line {err.data['line']}" in str(err)


def test_yaml_shared_aliases_within_the_limit_still_load(tmp_path: Path) -> None:
    path = write(tmp_path / "ok.yaml", _alias_bomb(8))
    data = YamlFileLayer(path).load()
    node = data["etcd"][0]
    for _ in range(8):
        node = node["x"]
    assert node == {"x": 1, "y": 2}


def test_yaml_recursive_alias_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "loop.yaml", "db: 1\nloop: &a\n  inner: *a\n")
    with pytest.raises(ConfigFileError) as info:
        YamlFileLayer(path).load()
    assert "alias *a refers to a node that contains it" in str(info.value)
    assert info.value.data["line"] == 3


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("flow.yaml", "a: " + "[" * 3000 + "]" * 3000 + "\n"),
        ("block.yaml", "".join(f"{'  ' * i}k{i}:\n" for i in range(100)) + "  " * 100 + "v\n"),
        (
            "aliased.yaml",
            "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 80)),
        ),
        ("flow.toml", "a = " + "[" * 3000 + "]" * 3000 + "\n"),
        ("tables.toml", "[" + ".".join(f"k{i}" for i in range(100)) + "]\nv = 1\n"),
    ],
)
def test_deep_nesting_is_an_error(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(ConfigFileError) as info:
        file_layer(path).load()
    assert f"nests deeper than {MAX_FILE_DEPTH} levels" in str(info.value)
    assert info.value.data["file"] == str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("- a\n- b\n", "top level"), ("db:\n  1: x\n", "not a string")],
)
def test_yaml_shape_errors_name_file(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path / "shape.yaml", text)
    with pytest.raises(ConfigFileError) as info:
        YamlFileLayer(path).load()
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_yaml_refuses_python_tags(tmp_path: Path) -> None:
    path = write(tmp_path / "evil.yaml", "x: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(ConfigFileError):
        YamlFileLayer(path).load()


def test_empty_yaml_is_empty_mapping(tmp_path: Path) -> None:
    assert YamlFileLayer(write(tmp_path / "e.yaml", "")).load() == {}


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigFileNotFound) as info:
        TomlFileLayer(path).load()
    assert isinstance(info.value, LookupError)
    assert str(path) in str(info.value)
    assert TomlFileLayer(path, required=False).load() == {}


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ConfigFileError) as info:
        TomlFileLayer(path).load()
    assert "UTF-8" in str(info.value)


def test_file_layer_picks_by_suffix(tmp_path: Path) -> None:
    assert isinstance(file_layer(tmp_path / "a.toml"), TomlFileLayer)
    assert isinstance(file_layer(tmp_path / "a.yaml"), YamlFileLayer)
    assert isinstance(file_layer(tmp_path / "a.YML"), YamlFileLayer)
    with pytest.raises(ConfigFileError) as info:
        file_layer(tmp_path / "a.ini")
    assert "a.ini" in str(info.value)


def test_env_mapping() -> None:
    environ = {
        "BACKEND_DB__PORT": "5433",
        "BACKEND_DB__MAX_CONNECTIONS": "7",
        "BACKEND_DEBUG": "true",
        "BACKEND_CONFIG_FILE": "/etc/x.toml",
        "OTHER_DB__PORT": "1",
        "backend_lower": "x",
    }
    layer = EnvLayer(environ=environ)
    assert layer.load() == {"db": {"port": "5433", "max_connections": "7"}, "debug": "true"}
    assert layer.source_of(("db", "port")) == ValueSource("env", "BACKEND_DB__PORT", "db.port")
    assert layer.source_of(("debug",)).location == "BACKEND_DEBUG"


def test_env_custom_prefix_and_separator() -> None:
    layer = EnvLayer("BAI_MGR_", separator=".", environ={"BAI_MGR_DB.PORT": "1"})
    assert layer.load() == {"db": {"port": "1"}}


def test_env_reads_process_environment_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = EnvLayer("TESTCFG_")
    monkeypatch.setenv("TESTCFG_A__B", "1")
    assert layer.load() == {"a": {"b": "1"}}
    monkeypatch.setenv("TESTCFG_A__B", "2")
    assert layer.load() == {"a": {"b": "2"}}


def test_env_conflict_names_both_variables() -> None:
    layer = EnvLayer(environ={"BACKEND_DB": "x", "BACKEND_DB__PORT": "1"})
    with pytest.raises(ConfigurationError) as info:
        layer.load()
    assert "BACKEND_DB " in str(info.value)
    assert "BACKEND_DB__PORT" in str(info.value)
    assert info.value.data["variables"] == ["BACKEND_DB", "BACKEND_DB__PORT"]


def test_env_same_key_twice_names_both_variables() -> None:
    layer = EnvLayer(environ={"BACKEND_Debug": "1", "BACKEND_DEBUG": "0"})
    with pytest.raises(ConfigurationError) as info:
        layer.load()
    assert set(info.value.data["variables"]) == {"BACKEND_Debug", "BACKEND_DEBUG"}


def test_env_empty_key_part_is_an_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        EnvLayer(environ={"BACKEND_DB____PORT": "1"}).load()
    assert "BACKEND_DB____PORT" in str(info.value)


def test_env_rejects_empty_prefix() -> None:
    with pytest.raises(ConfigurationError):
        EnvLayer("")


def test_mapping_layer() -> None:
    layer = MappingLayer({"debug": True})
    assert layer.name == "override"
    assert layer.load() == {"debug": True}
    assert layer.source_of(("debug",)) == ValueSource("override", None, "debug")
    with pytest.raises(BackendAIError):
        MappingLayer(["not", "a", "mapping"])  # type: ignore[arg-type]
