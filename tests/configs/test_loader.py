"""Tests of the layered loader: precedence, provenance, errors, unknown keys, redaction."""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field, SecretStr, field_validator, model_validator

from ai.backend.common.configs import (
    REDACTED,
    AbstractConfigLayer,
    ConfigFileNotFound,
    ConfigLoader,
    ConfigUnknownKeyError,
    ConfigurationError,
    ConfigValidationError,
    EnvLayer,
    KeyPath,
    MappingLayer,
    TomlFileLayer,
    ValueSource,
    YamlFileLayer,
    load_config,
)
from ai.backend.common.dto import BaseConfigModel
from ai.backend.common.exception import BackendAIError

from ._models import ClusterConfig, LaxConfig, ManagerConfig, OpenConfig, RequiredConfig


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_only() -> None:
    loaded = ConfigLoader(ManagerConfig, []).load()
    assert loaded.config == ManagerConfig()
    assert {e.source for e in loaded.describe()} == {ValueSource("default")}


def test_precedence_defaults_file_env_override(tmp_path: Path) -> None:
    toml = write(
        tmp_path / "m.toml", '[db]\nport = 1001\nhost = "toml-host"\nmax-connections = 1\n'
    )
    yaml = write(tmp_path / "m.yaml", "db:\n  port: 1002\n  host: yaml-host\n")
    environ = {"BACKEND_DB__PORT": "1003"}
    layers: list[AbstractConfigLayer] = [
        TomlFileLayer(toml),
        YamlFileLayer(yaml),
        EnvLayer(environ=environ),
        MappingLayer({"db": {"port": 1004}}),
    ]
    for count, port in [(0, 5432), (1, 1001), (2, 1002), (3, 1003), (4, 1004)]:
        config = ConfigLoader(ManagerConfig, layers[:count]).load().config
        assert config.db.port == port
    config = ConfigLoader(ManagerConfig, layers).load().config
    assert config.db.host == "yaml-host"  # yaml over toml; env and override do not set it
    assert config.db.max_connections == 1  # only the toml file sets it
    assert config.logging.level == "info"  # default


def test_provenance_per_leaf(tmp_path: Path) -> None:
    toml = write(tmp_path / "manager.toml", '[db]\nhost = "db.local"\nmax_connections = 3\n')
    loaded = load_config(
        ManagerConfig,
        config_file=toml,
        environ={"BACKEND_DB__PORT": "5433"},
        overrides={"debug": True},
    )
    assert loaded.source_of("db.host") == ValueSource("toml", str(toml), "db.host")
    # The source keeps the key as the file spells it; the path uses the canonical alias.
    assert loaded.source_of(("db", "max-connections")) == ValueSource(
        "toml", str(toml), "db.max_connections"
    )
    # Either spelling of the path finds the value.
    assert loaded.source_of("db.max_connections") == loaded.source_of("db.max-connections")
    assert loaded.source_of("db.port") == ValueSource("env", "BACKEND_DB__PORT", "db.port")
    assert loaded.source_of("debug") == ValueSource("override", None, "debug")
    assert loaded.source_of("logging.level") == ValueSource("default")
    by_key = {e.key: e for e in loaded.describe()}
    assert by_key["db.host"].value == "db.local"
    assert by_key["db.port"].source.location == "BACKEND_DB__PORT"
    assert by_key["hosts"].value == ["127.0.0.1"]
    assert by_key["hosts"].source == ValueSource("default")


def test_bad_toml_value_names_file_key_and_reason(tmp_path: Path) -> None:
    path = write(tmp_path / "manager.toml", '[db]\nhost = "db"\nport = "not-a-port"\n')
    with pytest.raises(ConfigValidationError) as info:
        load_config(ManagerConfig, config_file=path, env_prefix=None)
    err = info.value
    assert isinstance(err, ConfigurationError)
    assert isinstance(err, BackendAIError)
    message = str(err)
    assert str(path) in message
    assert "db.port" in message
    assert "valid integer" in message
    assert "'not-a-port'" in message
    assert err.data["errors"] == [
        {
            "loc": "db.port",
            "key": "db.port",
            "source": str(path),
            "layer": "toml",
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
            "value": "'not-a-port'",
        }
    ]
    assert str(err.error_code()) == "config_parse_invalid-parameters"
    json.dumps(err.problem())
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is ConfigValidationError
    assert copy.data == err.data


def test_bad_yaml_value_names_file_key_and_reason(tmp_path: Path) -> None:
    path = write(tmp_path / "manager.yaml", "db:\n  port: 70000\nlogging:\n  level: loud\n")
    with pytest.raises(ConfigValidationError) as info:
        load_config(ManagerConfig, config_file=path, env_prefix=None)
    message = str(info.value)
    assert f"{path}, key db.port: Input should be less than or equal to 65535" in message
    assert f"{path}, key logging.level: Input should be 'debug', 'info'" in message
    assert {(e["loc"], e["source"], e["layer"]) for e in info.value.data["errors"]} == {
        ("db.port", str(path), "yaml"),
        ("logging.level", str(path), "yaml"),
    }


def test_every_failing_field_listed_with_its_source(tmp_path: Path) -> None:
    path = write(tmp_path / "m.toml", "debug = 3\n")
    layers = [
        TomlFileLayer(path),
        EnvLayer(environ={"BACKEND_DB__PORT": "0"}),
        MappingLayer({"hosts": "not-a-list"}),
    ]
    with pytest.raises(ConfigValidationError) as info:
        ConfigLoader(ManagerConfig, layers).load()
    errors = {e["loc"]: e for e in info.value.data["errors"]}
    assert set(errors) == {"debug", "db.port", "hosts"}
    assert errors["debug"]["source"] == str(path)
    assert errors["db.port"]["source"] == "BACKEND_DB__PORT"
    assert errors["hosts"]["layer"] == "override"
    message = str(info.value)
    assert "3 errors" in message
    assert "environment variable BACKEND_DB__PORT (key db.port)" in message
    assert "override, key hosts" in message


def test_missing_required_field_is_named() -> None:
    with pytest.raises(ConfigValidationError) as info:
        ConfigLoader(RequiredConfig, [MappingLayer({"secret-key": "s"})]).load()
    assert "key node-name (set by no source): Field required" in str(info.value)
    assert info.value.data["errors"][0]["value"] is None


def test_missing_key_in_a_file_table_blames_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "m.toml", "[node]\ntimeout = 2.0\n[[backends]]\nweight = 2\n")
    with pytest.raises(ConfigValidationError) as info:
        ConfigLoader(ClusterConfig, [TomlFileLayer(path)]).load()
    message = str(info.value)
    assert f"{path}, key node.node-name: Field required" in message
    assert f"{path}, key backends[0].name: Field required" in message


def test_bad_secret_value_is_not_echoed() -> None:
    with pytest.raises(ConfigValidationError) as info:
        ConfigLoader(ManagerConfig, [MappingLayer({"api-token": 987654321})]).load()
    assert "987654321" not in str(info.value)
    assert "<redacted>" in str(info.value)
    assert info.value.data["errors"][0]["value"] == "<redacted>"


class _Login(BaseConfigModel):
    user: str = "app"
    password: SecretStr

    @model_validator(mode="after")
    def _no_root(self) -> _Login:
        if self.user == "root":
            raise ValueError("user root is not allowed")
        return self


class _Peer(BaseConfigModel):
    name: str
    token: str = Field(json_schema_extra={"secret": True})

    @field_validator("token")
    @classmethod
    def _strong(cls, value: str) -> str:
        if value.startswith("weak"):
            raise ValueError(f"token {value!r} is too weak")  # quotes its input
        return value


class _Pg(BaseConfigModel):
    kind: str = "pg"
    password: str = Field(min_length=20, json_schema_extra={"secret": True})


class _My(BaseConfigModel):
    kind: str = "mysql"
    password: SecretStr
    port: int


class _Guarded(BaseConfigModel):
    db: _Login
    peers: list[_Peer] = []
    groups: dict[str, list[_Peer]] = {}
    store: _Pg | _My | None = None
    tokens: list[SecretStr] = []

    @model_validator(mode="after")
    def _no_admin(self) -> _Guarded:
        if self.db.user == "admin":
            raise ValueError("admin is reserved")
        return self


def _assert_hidden(err: BackendAIError, *secrets: str) -> None:
    shown = [str(err), repr(err), json.dumps(err.data), json.dumps(err.problem())]
    for secret in secrets:
        for text in shown:
            assert secret not in text


def test_section_validator_error_does_not_echo_secret(tmp_path: Path) -> None:
    path = write(tmp_path / "m.toml", '[db]\nuser = "root"\npassword = "hunter2-db"\n')
    with pytest.raises(ConfigValidationError) as info:
        load_config(_Guarded, config_file=path, env_prefix=None)
    _assert_hidden(info.value, "hunter2-db")
    assert f"{path}, key db: Value error, user root is not allowed (got <redacted>)" in str(
        info.value
    )
    assert info.value.data["errors"][0]["value"] == "<redacted>"


def test_root_validator_error_does_not_echo_secret() -> None:
    overrides = {"db": {"user": "admin", "password": "hunter2-root"}}
    with pytest.raises(ConfigValidationError) as info:
        load_config(_Guarded, overrides=overrides, env_prefix=None)
    _assert_hidden(info.value, "hunter2-root")
    assert "admin is reserved" in str(info.value)


def test_union_member_error_does_not_echo_secret() -> None:
    overrides = {"db": {"password": "pw"}, "store": {"password": "hunter2-union", "port": "x"}}
    with pytest.raises(ConfigValidationError) as info:
        load_config(_Guarded, overrides=overrides, env_prefix=None)
    _assert_hidden(info.value, "hunter2-union")
    locs = {e["loc"] for e in info.value.data["errors"]}
    assert "store._Pg.password" in locs
    assert "store._My.port" in locs  # an error outside the secret still shows its value
    assert "(got 'x')" in str(info.value)


def test_validator_quoting_a_secret_is_scrubbed() -> None:
    overrides = {"db": {"password": "pw"}, "peers": [{"name": "a", "token": "weak-hunter2"}]}
    with pytest.raises(ConfigValidationError) as info:
        load_config(_Guarded, overrides=overrides, env_prefix=None)
    _assert_hidden(info.value, "weak-hunter2")
    assert "is too weak" in str(info.value)


def test_bad_json_in_env_is_not_echoed() -> None:
    environ = {"BACKEND_DB": '{"password": "hunter2-env" oops}'}
    with pytest.raises(ConfigurationError) as info:
        load_config(_Guarded, environ=environ)
    _assert_hidden(info.value, "hunter2-env", "oops")
    assert "BACKEND_DB" in str(info.value)
    assert "line 1, column 28" in str(info.value)
    assert (info.value.data["line"], info.value.data["column"]) == (1, 28)
    with pytest.raises(ConfigurationError) as info:
        load_config(_Guarded, environ={"BACKEND_TOKENS": '["hunter2-a", 5'})
    _assert_hidden(info.value, "hunter2-a")
    assert "BACKEND_TOKENS" in str(info.value)


def test_dump_redacts_secrets_inside_lists_of_models(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.toml",
        '[db]\npassword = "pw-1234"\n[[peers]]\nname = "a"\ntoken = "hunter2-peer"\n'
        '[[groups.g]]\nname = "b"\ntoken = "hunter2-group"\n',
    )
    loaded = load_config(_Guarded, config_file=path, environ={"BACKEND_TOKENS": '["hunter2-tok"]'})
    text = loaded.dump()
    for secret in ("pw-1234", "hunter2-peer", "hunter2-group", "hunter2-tok"):
        assert secret not in text
        assert secret not in repr(loaded.describe())
    by_key = {e.key: e for e in loaded.describe()}
    assert by_key["peers[0].name"].value == "a"
    assert by_key["peers[0].token"].value == REDACTED
    assert by_key["peers[0].token"].secret
    assert by_key["peers[0].token"].source.location == str(path)
    assert by_key["groups.g[0].token"].value == REDACTED
    assert by_key["tokens"].secret


def test_unknown_key_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path / "manager.toml",
        "[db]\nprot = 1\nmax-conections = 2\nmax_conections = 3\n[dbx]\n",
    )
    with pytest.raises(ConfigUnknownKeyError) as info:
        load_config(ManagerConfig, config_file=path, env_prefix=None)
    err = info.value
    assert isinstance(err, ConfigurationError)
    message = str(err)
    for key in ("db.prot", "db.max-conections", "db.max_conections", "dbx"):
        assert f"{path}, key {key}: not a field of" in message
    assert "max-connections" in message  # the known fields are listed
    assert [u["key"] for u in err.data["unknown"]] == [
        "db.prot",
        "db.max-conections",
        "db.max_conections",
        "dbx",
    ]
    assert {u["location"] for u in err.data["unknown"]} == {str(path)}


def test_unknown_key_inside_list_and_dict_of_models() -> None:
    overrides = {
        "backends": [{"name": "a", "wieght": 1}],
        "plugins": {"p1": {"enabeld": False}},
    }
    with pytest.raises(ConfigUnknownKeyError) as info:
        ConfigLoader(ManagerConfig, [MappingLayer(overrides)]).load()
    assert [u["key"] for u in info.value.data["unknown"]] == [
        "backends[0].wieght",
        "plugins.p1.enabeld",
    ]


def test_env_unknown_keys() -> None:
    # Inside a known section a typo is an error naming the variable...
    with pytest.raises(ConfigUnknownKeyError) as info:
        load_config(ManagerConfig, environ={"BACKEND_DB__PROT": "1"})
    assert "environment variable BACKEND_DB__PROT" in str(info.value)
    # ...but an unrelated top-level name is left to other programs, and listed.
    loaded = load_config(ManagerConfig, environ={"BACKEND_REDIS_ADDR": "127.0.0.1:6379"})
    assert loaded.ignored == (ValueSource("env", "BACKEND_REDIS_ADDR", "redis_addr"),)


def test_extra_allow_keeps_and_ignore_lists(tmp_path: Path) -> None:
    path = write(tmp_path / "x.toml", "known = 1\nsurprise = 2\n[nested]\nkey = 3\n")
    loaded = ConfigLoader(OpenConfig, [TomlFileLayer(path)]).load()
    assert loaded.config.model_extra == {"surprise": 2, "nested": {"key": 3}}
    assert loaded.source_of("nested.key") == ValueSource("toml", str(path), "nested.key")
    assert {e.key for e in loaded.describe()} == {"known", "surprise", "nested.key"}

    # A stray environment variable is not kept even by a model that allows extras.
    env = EnvLayer(environ={"BACKEND_KNOWN": "5", "BACKEND_REDIS_ADDR": "x"})
    from_env = ConfigLoader(OpenConfig, [env]).load()
    assert from_env.config.known == 5
    assert from_env.config.model_extra == {}
    assert [s.location for s in from_env.ignored] == ["BACKEND_REDIS_ADDR"]

    lax = ConfigLoader(LaxConfig, [TomlFileLayer(path)]).load()
    assert lax.config.known == 1
    assert lax.config.model_extra is None
    assert {s.key for s in lax.ignored} == {"surprise", "nested"}


def test_snake_and_kebab_keys_merge_to_one_field(tmp_path: Path) -> None:
    toml = write(tmp_path / "m.toml", "[db]\nmax-connections = 5\n")
    yaml = write(tmp_path / "m.yaml", "db:\n  max_connections: 6\n")
    config = ConfigLoader(ManagerConfig, [TomlFileLayer(toml)]).load().config
    assert config.db.max_connections == 5
    loaded = ConfigLoader(ManagerConfig, [TomlFileLayer(toml), YamlFileLayer(yaml)]).load()
    assert loaded.config.db.max_connections == 6
    assert loaded.source_of("db.max-connections").location == str(yaml)
    env = EnvLayer(environ={"BACKEND_DB__MAX_CONNECTIONS": "7"})
    config = ConfigLoader(ManagerConfig, [TomlFileLayer(toml), env]).load().config
    assert config.db.max_connections == 7


def test_same_field_twice_in_one_source_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "m.toml", "[db]\nmax-connections = 5\nmax_connections = 6\n")
    with pytest.raises(ConfigurationError) as info:
        ConfigLoader(ManagerConfig, [TomlFileLayer(path)]).load()
    assert str(path) in str(info.value)
    assert "'max-connections' and 'max_connections'" in str(info.value)


def test_dump_redacts_secrets(tmp_path: Path) -> None:
    path = write(tmp_path / "m.toml", '[db]\npassword = "s3cr3t-value"\n')
    loaded = load_config(
        ManagerConfig,
        config_file=path,
        environ={"BACKEND_API_TOKEN": "tok-value"},
        overrides={"replica": {"password": "replica-pw"}},
    )
    assert loaded.config.db.password.get_secret_value() == "s3cr3t-value"
    text = loaded.dump()
    for secret in ("s3cr3t-value", "tok-value", "replica-pw", "default-pw", "default-token"):
        assert secret not in text
    lines = {line.split(" = ")[0]: line for line in text.splitlines()}
    assert lines["db.password"] == f'db.password = "{REDACTED}"  # {path}, key db.password'
    assert (
        lines["api-token"] == f'api-token = "{REDACTED}"  # environment variable BACKEND_API_TOKEN'
    )
    assert (
        lines["replica.password"]
        == f'replica.password = "{REDACTED}"  # override, key replica.password'
    )
    assert lines["db.port"] == "db.port = 5432  # default"
    secret_keys = {e.key for e in loaded.describe() if e.secret}
    assert secret_keys == {"db.password", "api-token", "replica.password"}


def test_env_values_are_coerced_by_the_model() -> None:
    environ = {
        "BACKEND_DEBUG": "true",
        "BACKEND_DB__PORT": "5433",
        "BACKEND_LOGGING__LEVEL": "debug",
    }
    config = load_config(ManagerConfig, environ=environ).config
    assert config.debug is True
    assert config.db.port == 5433
    assert config.logging.level == "debug"


def test_env_json_for_containers() -> None:
    environ = {
        "BACKEND_HOSTS": '["a", "b"]',
        "BACKEND_LOGGING__FIELDS": '{"zone": "kr"}',
        "BACKEND_PLUGINS": '{"p": {"priority": 3}}',
    }
    loaded = load_config(ManagerConfig, environ=environ)
    assert loaded.config.hosts == ["a", "b"]
    assert loaded.config.logging.fields == {"zone": "kr"}
    assert loaded.config.plugins["p"].priority == 3
    assert loaded.source_of("logging.fields.zone").location == "BACKEND_LOGGING__FIELDS"
    with pytest.raises(ConfigurationError) as info:
        load_config(ManagerConfig, environ={"BACKEND_HOSTS": "a,b"})
    assert "BACKEND_HOSTS" in str(info.value)
    with pytest.raises(ConfigUnknownKeyError):
        load_config(ManagerConfig, environ={"BACKEND_PLUGINS": '{"p": {"priorty": 3}}'})


def test_standard_stack_discovers_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "manager.yaml", "debug: true\n")
    environ = {"HOME": str(tmp_path / "home")}
    assert load_config(ManagerConfig, daemon_name="manager", environ=environ).config.debug
    assert not load_config(ManagerConfig, daemon_name="agent", environ=environ).config.debug


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileNotFound) as info:
        load_config(ManagerConfig, config_file=tmp_path / "gone.toml")
    assert str(tmp_path / "gone.toml") in str(info.value)


class SnapshotLayer(AbstractConfigLayer):
    """An etcd-like layer: a prefetched snapshot whose keys map to store keys."""

    name = "etcd"

    def __init__(self, prefix: str) -> None:
        self.location = f"etcd:{prefix}"
        self.prefix = prefix
        self.snapshot: dict[str, Any] = {}

    def load(self) -> Mapping[str, Any]:
        return self.snapshot

    def source_of(self, path: KeyPath) -> ValueSource:
        return ValueSource(self.name, self.location, self.prefix + "/".join(map(str, path)))


def test_custom_layer_plugs_in_and_is_reread(tmp_path: Path) -> None:
    etcd = SnapshotLayer("/config/manager/")
    etcd.snapshot = {"db": {"port": 2379}}
    loader = ConfigLoader(ManagerConfig, [etcd])
    loaded = loader.load()
    assert loaded.config.db.port == 2379
    assert loaded.source_of("db.port") == ValueSource(
        "etcd", "etcd:/config/manager/", "/config/manager/db/port"
    )
    etcd.snapshot = {"db": {"port": "bad"}}
    with pytest.raises(ConfigValidationError) as info:
        loader.load()
    assert "etcd:/config/manager/, key db.port" in str(info.value)
    assert info.value.data["errors"][0]["key"] == "/config/manager/db/port"
