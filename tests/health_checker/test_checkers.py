"""The checkers against real dependencies: Redis (master and replica), etcd, HTTP, agent RPC."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from ai.backend.common.clients.agent import AgentRPCMetrics, AgentRPCPool, AgentRPCServer
from ai.backend.common.clients.etcd import EtcdClient
from ai.backend.common.clients.http import HTTPSessionPool
from ai.backend.common.clients.valkey import ValkeyClient, ValkeyTarget
from ai.backend.common.health_checker import (
    AgentRPCHealthChecker,
    EtcdHealthChecker,
    HealthProbe,
    HealthStatus,
    HTTPHealthChecker,
    ValkeyHealthChecker,
)
from tests._harness.redis import RedisServer


async def test_valkey_role_aware(redis_server_factory: Callable[..., RedisServer]) -> None:
    master = redis_server_factory()
    replica = redis_server_factory(replicaof=(master.host, master.port))
    async with (
        ValkeyClient(ValkeyTarget(host=master.host, port=master.port)) as on_master,
        ValkeyClient(ValkeyTarget(host=replica.host, port=replica.port)) as on_replica,
    ):
        probe = HealthProbe(
            [
                ValkeyHealthChecker(on_master, "redis-master"),
                ValkeyHealthChecker(on_replica, "redis-replica"),
                ValkeyHealthChecker(on_replica, "redis-any", require_master=False),
            ]
        )
        report = await probe.check()
    by_name = {d.name: d for d in report.dependencies}
    assert by_name["redis-master"].status is HealthStatus.HEALTHY
    assert by_name["redis-master"].detail == {"role": "master"}
    assert by_name["redis-replica"].status is HealthStatus.UNHEALTHY
    assert "expected 'master'" in (by_name["redis-replica"].last_error or "")
    assert by_name["redis-any"].status is HealthStatus.HEALTHY


async def test_real_dependencies(
    redis_server_factory: Callable[..., RedisServer], etcd_endpoint: str
) -> None:
    redis = redis_server_factory()

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/status", ok)
    http = TestServer(app, host="127.0.0.1")
    await http.start_server()

    async def ping(msg: str) -> str:
        return msg

    metrics = AgentRPCMetrics(CollectorRegistry())
    try:
        async with (
            ValkeyClient(
                ValkeyTarget(host=redis.host, port=redis.port, request_timeout=1.0)
            ) as valkey,
            EtcdClient(etcd_endpoint, "health-test") as etcd,
            HTTPSessionPool(policy_factory=None) as pool,
            AgentRPCServer("tcp://127.0.0.1:0", handlers={"ping": ping}) as agent,
            AgentRPCPool(metrics=metrics, policy_factory=None) as rpc,
        ):
            probe = HealthProbe(
                [
                    ValkeyHealthChecker(valkey, timeout=3.0),
                    EtcdHealthChecker(etcd, timeout=5.0),
                    HTTPHealthChecker(pool, str(http.make_url("/")), "/status", timeout=5.0),
                    AgentRPCHealthChecker(rpc.peer(agent.address), timeout=5.0),
                ]
            )
            report = await probe.check()
            assert report.status is HealthStatus.HEALTHY, report.to_json()
            redis.stop()
            report = await probe.check()
            statuses = {d.name: d.status for d in report.dependencies}
            assert statuses == {
                "redis": HealthStatus.UNHEALTHY,
                "etcd": HealthStatus.HEALTHY,
                "http": HealthStatus.HEALTHY,
                "agent": HealthStatus.HEALTHY,
            }
            assert report.status is HealthStatus.UNHEALTHY
            await agent.aclose()
            agent_status = [d for d in (await probe.check()).dependencies if d.name == "agent"]
            assert agent_status[0].status is HealthStatus.UNHEALTHY
    finally:
        await http.close()
