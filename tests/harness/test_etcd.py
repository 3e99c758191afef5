"""The etcd fixtures give working members and clusters, and killing a member does what it should."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aetcd
import pytest

from tests._harness import (
    EtcdCluster,
    EtcdServer,
    ExternalServerError,
    HarnessError,
    etcd_server_from_env,
    free_port,
)
from tests._harness import etcd as harness_etcd


@asynccontextmanager
async def _client(member: EtcdServer) -> AsyncIterator[aetcd.Client]:
    client = aetcd.Client(host=member.host, port=member.port, timeout=5)
    try:
        yield client
    finally:
        await client.close()


async def _get(member: EtcdServer, key: bytes) -> bytes | None:
    async with _client(member) as client:
        reply = await client.get(key)
        return None if reply is None else bytes(reply.value)


async def test_etcd_server_put_get(etcd_server: EtcdServer, etcd_endpoint: str) -> None:
    assert etcd_endpoint == etcd_server.endpoint == f"127.0.0.1:{etcd_server.port}"
    assert etcd_server.url == f"http://127.0.0.1:{etcd_server.port}"
    assert etcd_server.port != 2379
    assert etcd_server.peer_port not in (2380, etcd_server.port)
    async with _client(etcd_server) as client:
        await client.put(b"harness/key", b"value")
        reply = await client.get(b"harness/key")
        assert reply is not None
        assert reply.value == b"value"
        lease = await client.lease(30)
        await client.put(b"harness/leased", b"1", lease=lease)
        assert (await client.get(b"harness/leased")) is not None
        await lease.revoke()


async def test_etcd_endpoint_deletes_every_key(
    etcd_server: EtcdServer, request: pytest.FixtureRequest
) -> None:
    async with _client(etcd_server) as client:
        await client.put(b"left-over", b"1")
    request.getfixturevalue("etcd_endpoint")  # lazily, as the conformance fixtures do
    assert await _get(etcd_server, b"left-over") is None


def test_etcd_endpoint_restarts_a_killed_session_server(
    etcd_server: EtcdServer, request: pytest.FixtureRequest
) -> None:
    pid = etcd_server.pid
    etcd_server.kill()
    assert not etcd_server.is_running()
    assert not etcd_server.healthy()
    request.getfixturevalue("etcd_endpoint")
    assert etcd_server.is_running()
    assert etcd_server.pid != pid
    assert etcd_server.healthy()


async def test_stop_then_start_keeps_the_data(etcd_server: EtcdServer, etcd_endpoint: str) -> None:
    async with _client(etcd_server) as client:
        await client.put(b"durable", b"yes")
    assert etcd_server.process is not None
    etcd_server.stop()
    assert not etcd_server.is_running()
    assert etcd_server.process.returncode is not None
    etcd_server.start()
    assert await _get(etcd_server, b"durable") == b"yes"


async def test_cluster_put_on_one_member_reads_on_another(etcd_cluster: EtcdCluster) -> None:
    assert len(etcd_cluster.members) == 3
    assert len(set(etcd_cluster.endpoints)) == 3
    ports = {m.port for m in etcd_cluster.members} | {m.peer_port for m in etcd_cluster.members}
    assert len(ports) == 6
    first, second, third = etcd_cluster.members
    async with _client(first) as client:
        await client.put(b"cluster/key", b"replicated")
    assert await _get(second, b"cluster/key") == b"replicated"
    assert await _get(third, b"cluster/key") == b"replicated"
    assert etcd_cluster.leader() in etcd_cluster.members


@pytest.mark.slow
async def test_cluster_elects_a_new_leader_when_the_leader_dies(
    etcd_cluster: EtcdCluster,
) -> None:
    old_leader = etcd_cluster.leader()
    etcd_cluster.kill(old_leader)
    assert not old_leader.is_running()
    new_leader = await asyncio.to_thread(etcd_cluster.leader)
    assert new_leader is not old_leader
    assert new_leader.is_running()
    survivors = etcd_cluster.running()
    assert len(survivors) == 2
    async with _client(survivors[0]) as client:
        await client.put(b"after-election", b"ok")
    assert await _get(survivors[1], b"after-election") == b"ok"


@pytest.mark.slow
def test_a_member_without_quorum_is_stopped_by_pid(etcd_cluster: EtcdCluster) -> None:
    first, second, third = etcd_cluster.members
    etcd_cluster.kill(first)
    etcd_cluster.kill(second)
    etcd_cluster.stop(third, grace=1.0)  # SIGTERM, then SIGKILL if it is ignored
    assert etcd_cluster.running() == []


def test_backend_etcd_addr_resolves_to_an_external_server(etcd_server: EtcdServer) -> None:
    env = {"BACKEND_ETCD_ADDR": etcd_server.endpoint}
    server = etcd_server_from_env(env)
    assert server is not None
    assert server.external
    assert server.endpoint == etcd_server.endpoint
    assert server.is_running()
    for control in (server.kill, server.stop, server.start):
        with pytest.raises(ExternalServerError, match="BACKEND_ETCD_ADDR"):
            control()
    with pytest.raises(ExternalServerError):
        _ = server.peer_port
    assert etcd_server_from_env({}) is None


def test_session_fixture_honours_backend_etcd_addr(
    inner_pytester: pytest.Pytester, etcd_server: EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKEND_ETCD_ADDR", etcd_server.endpoint)
    monkeypatch.setenv("BACKEND_TEST_ALLOW_FLUSH", "1")
    inner_pytester.makepyfile(
        f"""
        def test_external(etcd_server, etcd_endpoint):
            assert etcd_server.external
            assert etcd_endpoint == "{etcd_server.endpoint}"
        """
    )
    inner_pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert etcd_server.is_running()


def test_a_member_that_cannot_start_fails_the_cluster_fast_with_its_log() -> None:
    members = harness_etcd._describe_members(["ok", "broken"])
    assert members[1].process is not None
    members[1].process.argv.append("--no-such-flag")
    try:
        for member in members:
            member.spawn()
        with pytest.raises(HarnessError) as excinfo:
            harness_etcd._wait_healthy(members, timeout=30)
    finally:
        for member in members:
            member.destroy(grace=0)
    message = str(excinfo.value)
    assert "etcd-broken: exited during start-up" in message
    assert "no-such-flag" in message  # etcd's own complaint, from its log


def test_start_never_adopts_a_foreign_member(
    etcd_server: EtcdServer, etcd_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stranger's etcd on the client port we picked is noticed (its member name is not
    ours), and the start retries on new ports instead of handing it out."""
    etcd_server.call("/v3/kv/put", {"key": "b3duZXI=", "value": "Zm9yZWlnbg=="})  # owner=foreign
    ports = iter([etcd_server.port])
    monkeypatch.setattr(harness_etcd, "free_port", lambda: next(ports, free_port()))
    ours = harness_etcd.start_etcd_server()
    try:
        assert ours.port != etcd_server.port
        assert ours.answering_member_name() == ours.member_name
        assert ours.member_name.startswith("single-")
    finally:
        ours.destroy(grace=1.0)
    reply = etcd_server.call("/v3/kv/range", {"key": "b3duZXI="})
    assert reply["kvs"][0]["value"] == "Zm9yZWlnbg=="


def test_identity_check_names_the_foreign_member(etcd_server: EtcdServer) -> None:
    impostor = harness_etcd.EtcdServer(
        etcd_server.host,
        etcd_server.port,
        name="ours",
        member_name="ours-0123456789ab",
        process=etcd_server.process,
    )
    with pytest.raises(HarnessError, match="not by our 'ours-0123456789ab'"):
        impostor.check_identity()
    etcd_server.check_identity()  # the real owner passes
