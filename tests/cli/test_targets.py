"""--redis / --etcd parsing: accepted forms become targets, bad parts are named."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai.backend.common.cli.context import CLIContext
from ai.backend.common.cli.targets import mask_url_secrets, parse_etcd_endpoints, parse_redis_url
from ai.backend.common.clients.valkey import ValkeyMode, ValkeyTarget
from ai.backend.common.exception import ConfigurationError
from ai.backend.common.types import HostPortPair

from ._cli import run_cli


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/4",
        "redis://localhost",
        "redis://:s3cret@10.0.0.1:7000/2",
        "rediss://user:pw@cache.example:6380/0",
        "redis://[::1]:6379/1",
        "redis+sentinel://h1:26379,h2:26380/mymaster/4",
        "redis+sentinel://:pw@h1,h2/mymaster",
    ],
)
def test_redis_urls_parse(url: str) -> None:
    target = parse_redis_url(url)
    assert target == ValkeyTarget.from_url(url)


def test_sentinel_form_fills_the_target_model() -> None:
    target = parse_redis_url("redis+sentinel://:pw@h1:26379,h2:26380/mymaster/4")
    assert target.mode is ValkeyMode.SENTINEL
    assert target.sentinels == (HostPortPair("h1", 26379), HostPortPair("h2", 26380))
    assert target.service_name == "mymaster"
    assert target.db == 4
    assert target.password == "pw"


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("localhost:6379", "not a URL"),
        ("http://localhost:6379/0", "scheme 'http'"),
        ("redis://host:port/0", "port 'port'"),
        ("redis://host:70000/0", "port '70000'"),
        ("redis://host:6379/four", "database 'four'"),
        ("redis://host:6379/4/extra", "more than /db"),
        ("redis://", "no host"),
        ("redis://a:1,b:2/0", "redis+sentinel://"),
        ("redis+sentinel://h1:26379", "no service name"),
        ("redis+sentinel:///mymaster", "no sentinel address"),
        ("redis+sentinel://h1:x/mymaster", "sentinel 'h1:x'"),
        ("redis+sentinel://h1/mymaster/db", "database 'db'"),
    ],
)
def test_bad_redis_urls_name_the_part(url: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_redis_url(url)
    assert named in str(info.value)
    assert "--redis" in str(info.value)


def test_etcd_endpoints() -> None:
    assert parse_etcd_endpoints("a:2379, b:2380") == ["a:2379", "b:2380"]
    assert parse_etcd_endpoints(["http://a:2379/"]) == ["a:2379"]
    for bad, named in (("a", "'a' is not host:port"), ("a:x", "port 'x'"), (",", "no endpoint")):
        with pytest.raises(ConfigurationError, match=named):
            parse_etcd_endpoints(bad)


def test_options_override_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('redis = "redis://file:6379/1"\nnamespace = "from-file"\netcd = ["f:1"]\n')
    from_file = CLIContext(config=str(path))
    assert from_file.settings.redis == "redis://file:6379/1"
    assert from_file.settings.namespace == "from-file"
    assert from_file.redis_target("x").host == "file"
    given = CLIContext(
        config=str(path), redis="redis://opt:6380/2", etcd="o:2", namespace="from-option"
    )
    assert given.redis_target("x").host == "opt"
    assert given.settings.namespace == "from-option"
    assert given.etcd_endpoints("x") == ["o:2"]


def test_bad_redis_option_is_one_line() -> None:
    proc = run_cli("--redis", "redis://localhost:notaport/0", "events", "stats")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "port 'notaport'" in proc.stderr


SECRET = "hunter2x"


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@host:port/0",
        f"redis://user:{SECRET}@host:6379/four",
        f"redis://:{SECRET}@a:1,b:2/0",
        f"redis://:{SECRET}@host:6379/4/extra",
        f"rediss://u:{SECRET}@:6379/0",
        f"redis+sentinel://:{SECRET}@h1:x/mymaster",
        f"redis+sentinel://:{SECRET}@h1:26379",
        f"http://:{SECRET}@localhost:6379/0",
        f":{SECRET}@localhost:6379",
        f"redis://:hun/{SECRET}@host:6379/0",
        f"redis://:p@{SECRET}@host:notaport/0",
        f"redis://:{SECRET}?x@host/0",
        f"redis+sentinel://h1/mymaster/x?sentinel_password={SECRET}",
    ],
)
def test_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_redis_url(url)
    message = str(info.value)
    assert SECRET not in message
    assert SECRET[2:-2] not in message
    assert "***" in message
    assert "--redis" in message


def test_mask_url_secrets_keeps_the_rest() -> None:
    assert mask_url_secrets("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert mask_url_secrets("see rediss://u:p@ss@h/0 here") == "see rediss://u:***@h/0 here"
    assert mask_url_secrets("redis://tok@h") == "redis://***@h"
    assert mask_url_secrets("redis://h:1/0") == "redis://h:1/0"
    masked = mask_url_secrets("redis+sentinel://h1/m?sentinel_password=pw&db=1")
    assert masked == "redis+sentinel://h1/m?sentinel_password=***&db=1"


def test_cli_never_prints_the_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for args in (
        ("--redis", f"redis://:{SECRET}@127.0.0.1:{port}/0", "events", "stats"),
        ("--redis", f"redis://:{SECRET}@127.0.0.1:{port}/zero", "dlq", "list"),
        ("--etcd", f"http://root:{SECRET}@127.0.0.1:{port}", "sd", "list"),
    ):
        proc = run_cli(*args)
        assert proc.returncode == 1, proc
        assert SECRET not in proc.stdout + proc.stderr, proc
        assert proc.stderr.count("\n") == 1, proc.stderr


FW_PORT = "\uff16\uff13\uff17\uff19"  # fullwidth 6379, which str.isdigit() accepts
FW_AT = "\uff20"  # fullwidth @, which NFKC turns into @
FW_4, FW_1 = "\uff14", "\uff11"

_PIECES = st.sampled_from(
    [
        "redis://", "rediss://", "redis+sentinel://", "http://", ":", "@", "pw", "/", "0", "4",
        "127.0.0.1", "[::1]", "[", "]", ",", "6379", "²", FW_PORT, "?", "db=", "x", "%", "#",
        "65536", " ", "mymaster", "::", "\n", FW_AT, "sentinel_password=", "&",
    ]
)  # fmt: skip


def _one_outcome(text: str) -> None:
    for parse in (parse_redis_url, parse_etcd_endpoints):
        try:
            parse(text)
        except ConfigurationError as exc:
            message = str(exc)
        else:
            continue
        assert "\n" not in message, message


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.lists(_PIECES, max_size=10).map("".join), st.text(max_size=30)))
def test_any_string_is_a_target_or_one_error(text: str) -> None:
    _one_outcome(text)


@pytest.mark.parametrize(
    "text",
    [
        " rediss://,[redis+sentinel://",
        "²pw²0mymaster:²",
        "rediss://[[[::1]#]rediss://rediss://",
        "rediss://][[#]rediss://rediss://",
        "redis+sentinel://0][[::1]0xrediss://²²",
        "redis://127.0.0.1][[127.0.0.1db=x65536",
        "redis://²²:65536²",
        "rediss://:@0]pw:::[]",
        "redis+sentinel://@²[:] ",
        "redis://[@][::1]@redis+sentinel://4rediss://",
        "rediss://]127.0.0.1[%  /mymaster6379",
        "redis://4[65536@[::1]x",
        "rediss://[x:]pw@6379 rediss://",
        "redis://[::1:6379/0",
        f"redis://h{FW_AT}x:1/0",
    ],
)
def test_fuzz_findings_are_one_error(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_redis_url(text)
    _one_outcome(text)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        (f"redis://127.0.0.1:{FW_PORT}/0", f"port '{FW_PORT}'"),
        ("redis://127.0.0.1:6379²/0", "port '6379²'"),
        (f"redis://127.0.0.1:6379/{FW_4}", f"database '{FW_4}'"),
        (f"redis://127.0.0.1:6379/0?db={FW_1}", f"database '{FW_1}'"),
        ("redis://[::1:6379/0", "'[' is never closed"),
        ("redis://::1:6379/0", "needs brackets"),
        ("redis://[::g]:6379/0", "'::g' is not an IPv6 address"),
        ("redis://h:6379/0?timeout=1", "query parameter 'timeout'"),
    ],
)
def test_only_ascii_digits_and_clear_parts(url: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_redis_url(url)
    assert named in str(info.value)
    with pytest.raises(ConfigurationError, match=f"port '{FW_PORT}'"):
        parse_etcd_endpoints(f"127.0.0.1:{FW_PORT}")


def test_bracket_typo_is_one_line_exit_1() -> None:
    proc = run_cli("--redis", "redis://[::1:6379/0", "events", "stats")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "internal error" not in proc.stderr
    assert "'[' is never closed" in proc.stderr
