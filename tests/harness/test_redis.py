"""The redis fixtures give working private servers, and killing one does what it should."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests._harness import (
    ExternalServerError,
    HarnessError,
    ManagedProcess,
    RedisServer,
    free_port,
    redis_server_from_env,
)
from tests._harness import redis as harness_redis
from tests._harness.plugin import RedisServerFactory
from tests._harness.redis import parse_addr


def _client(server: RedisServer) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(
        host=server.host,
        port=server.port,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


async def test_redis_url_gives_an_empty_working_server(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=5, decode_responses=True)
    try:
        assert await client.ping()
        assert await client.dbsize() == 0
        await client.set("harness:key", "value")
        assert await client.get("harness:key") == "value"
    finally:
        await client.aclose()


def test_redis_url_flushes_the_session_server(
    redis_server: RedisServer, request: pytest.FixtureRequest
) -> None:
    redis_server.command("SET", "left-over", "1")
    url = request.getfixturevalue("redis_url")  # lazily, as the conformance fixtures do
    assert url == redis_server.url
    assert redis_server.command("DBSIZE") == 0


def test_redis_server_is_private_and_persists_nothing(redis_server: RedisServer) -> None:
    assert redis_server.host == "127.0.0.1"
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}"
    assert redis_server.port != 6379
    assert redis_server.is_running()
    assert redis_server.pid > 0
    with redis_server.client() as conn:
        assert conn.config_get("save") == {"save": ""}
        assert conn.config_get("appendonly") == {"appendonly": "no"}
        assert conn.config_get("bind") == {"bind": "127.0.0.1"}


async def test_kill_then_start_on_the_same_port(
    redis_server_factory: RedisServerFactory,
) -> None:
    server = redis_server_factory()
    port, pid = server.port, server.pid
    client = _client(server)
    try:
        await client.set("k", "v")
        server.kill()
        assert not server.is_running()
        with pytest.raises(redis.ConnectionError):
            await client.ping()
        server.start()
        assert server.port == port
        assert server.pid != pid
        assert await client.ping()
        assert await client.get("k") is None  # nothing was persisted
    finally:
        await client.aclose()


def test_stop_terminates_the_process(redis_server_factory: RedisServerFactory) -> None:
    server = redis_server_factory()
    assert server.process is not None
    server.stop()
    assert not server.is_running()
    assert server.process.returncode == 0  # SIGTERM was enough: a clean shutdown


def test_redis_url_restarts_a_killed_session_server(
    redis_server: RedisServer, request: pytest.FixtureRequest
) -> None:
    port = redis_server.port
    redis_server.kill()
    assert not redis_server.ping()
    request.getfixturevalue("redis_url")
    assert redis_server.is_running()
    assert redis_server.port == port
    assert redis_server.ping()


async def test_factory_replica_receives_writes(redis_server_factory: RedisServerFactory) -> None:
    primary = redis_server_factory()
    replica = redis_server_factory(replicaof=primary.address, replica_read_only="yes")
    assert primary.port != replica.port
    assert replica.role() == "slave"
    primary.command("SET", "replicated", "yes")
    assert primary.command("WAIT", 1, 5000) == 1
    assert replica.command("GET", "replicated") == "yes"


def test_factory_extra_config(redis_server_factory: RedisServerFactory) -> None:
    server = redis_server_factory(maxmemory="10mb", extra_config=["maxmemory-policy allkeys-lru"])
    with server.client() as conn:
        assert conn.config_get("maxmemory") == {"maxmemory": str(10 * 1024 * 1024)}
        assert conn.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}


def test_start_failure_reports_the_log_tail(redis_server_factory: RedisServerFactory) -> None:
    with pytest.raises(HarnessError) as excinfo:
        redis_server_factory(extra_config=["no-such-directive yes"])
    message = str(excinfo.value)
    assert "exited during start-up" in message
    assert "no-such-directive" in message  # redis-server's own complaint, from its log


def test_backend_redis_addr_resolves_to_an_external_server(
    redis_server_factory: RedisServerFactory,
) -> None:
    target = redis_server_factory()
    server = redis_server_from_env({"BACKEND_REDIS_ADDR": f"127.0.0.1:{target.port}"})
    assert server is not None
    assert server.external
    assert server.url == target.url
    assert server.is_running()
    for control in (server.kill, server.stop, server.start):
        with pytest.raises(ExternalServerError, match="BACKEND_REDIS_ADDR"):
            control()
    with pytest.raises(ExternalServerError):
        _ = server.pid
    assert redis_server_from_env({}) is None
    assert redis_server_from_env({"BACKEND_REDIS_ADDR": ""}) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:6380", ("127.0.0.1", 6380)), ("[::1]:7000", ("::1", 7000))],
)
def test_parse_addr(value: str, expected: tuple[str, int]) -> None:
    assert parse_addr(value, "VAR") == expected


@pytest.mark.parametrize("value", ["localhost", ":6379", "host:", "host:port", "host:70000"])
def test_parse_addr_rejects_malformed(value: str) -> None:
    with pytest.raises(HarnessError, match="VAR"):
        parse_addr(value, "VAR")


def test_session_fixtures_honour_backend_redis_addr(
    inner_pytester: pytest.Pytester,
    redis_server_factory: RedisServerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = redis_server_factory()
    monkeypatch.setenv("BACKEND_REDIS_ADDR", f"127.0.0.1:{target.port}")
    monkeypatch.setenv("BACKEND_TEST_ALLOW_FLUSH", "1")
    target.command("SET", "left-over", "1")
    inner_pytester.makepyfile(
        f"""
        import pytest
        from tests._harness import ExternalServerError

        def test_external(redis_server, redis_url):
            assert redis_server.external
            assert redis_url == "redis://127.0.0.1:{target.port}"
            assert redis_server.command("DBSIZE") == 0
            with pytest.raises(ExternalServerError):
                redis_server.kill()
        """
    )
    result = inner_pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert target.is_running()  # the inner session did not stop the server it was given


def test_a_taken_port_is_retried_with_another(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        monkeypatch.setattr(harness_redis, "free_port", lambda: next(ports, free_port()))
        server = harness_redis.start_redis_server(name="retried")
        try:
            assert server.port != taken
            assert server.ping()
            assert server.process is not None
            assert "Address already in use" in server.process.log_path.read_text()
        finally:
            server.destroy()


def test_start_never_adopts_a_foreign_server(
    redis_server_factory: RedisServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The port probe races other processes: if a stranger's Redis answers on the port we
    picked, the start must notice (our process failed to bind) instead of handing it out."""
    foreign = redis_server_factory(name="foreign")
    foreign.command("SET", "owner", "foreign-session")
    ports = iter([foreign.port])
    monkeypatch.setattr(harness_redis, "free_port", lambda: next(ports, free_port()))
    ours = harness_redis.start_redis_server(name="ours")
    try:
        assert ours.port != foreign.port
        assert ours.server_pid() == ours.pid != foreign.pid
        assert ours.command("GET", "owner") is None
    finally:
        ours.destroy()
    assert foreign.command("GET", "owner") == "foreign-session"


def test_start_fails_rather_than_adopt_a_foreign_server(
    redis_server_factory: RedisServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    foreign = redis_server_factory(name="foreign")
    monkeypatch.setattr(harness_redis, "free_port", lambda: foreign.port)
    with pytest.raises(HarnessError, match=f"port {foreign.port} is answered by a server"):
        harness_redis.start_redis_server(name="ours")
    assert foreign.server_pid() == foreign.pid


def test_restart_refuses_a_server_that_took_the_port(
    redis_server_factory: RedisServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = redis_server_factory(name="ours")
    ours.kill()
    monkeypatch.setattr(harness_redis, "free_port", lambda: ours.port)
    squatter = harness_redis.start_redis_server(name="squatter")
    try:
        with pytest.raises(harness_redis.ForeignServerError):
            ours.start()
    finally:
        squatter.destroy()


def test_identity_check_survives_our_process_exiting(
    redis_server_factory: RedisServerFactory, tmp_path: Path
) -> None:
    """Under load our server may die failing to bind just after the stranger answered PING:
    that is still a foreign server (retry on a new port), not an unexplained start failure."""
    foreign = redis_server_factory(name="foreign")
    gone = ManagedProcess("gone", ["true"], tmp_path)
    gone.start()
    gone.stop()
    server = RedisServer("127.0.0.1", foreign.port, process=gone)
    with pytest.raises(harness_redis.ForeignServerError, match=f"pid {gone.spawned_pid}"):
        server.check_identity()
