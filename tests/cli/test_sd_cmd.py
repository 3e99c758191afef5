"""``sd list/prometheus`` as subprocesses after registering services in a real etcd."""

from __future__ import annotations

import json

from ai.backend.common.clients.etcd import EtcdClient
from ai.backend.common.service_discovery import (
    EtcdServiceDiscovery,
    ServiceEndpoint,
    ServiceMetadata,
)

from ._cli import arun_cli, json_lines, run_cli


def _record(name: str, group: str, port: int) -> ServiceMetadata:
    return ServiceMetadata(
        display_name=name,
        service_group=group,
        version="26.1.0",
        endpoint=ServiceEndpoint(
            address="127.0.0.1",
            port=port,
            protocol="http",
            prometheus_address=f"127.0.0.1:{port}",
        ),
        labels={"zone": "a", "app.kubernetes.io/name": name},
    )


async def test_list_and_prometheus_from_etcd(etcd_endpoint: str) -> None:
    manager = _record("manager-1", "manager", 8081)
    agent = _record("agent-1", "agent", 6001)
    async with (
        EtcdClient(etcd_endpoint, "clitest") as etcd,
        EtcdServiceDiscovery(etcd, ttl=10) as discovery,
    ):
        await discovery.register(manager)
        await discovery.register(agent)
        base = ("--etcd", etcd_endpoint, "--namespace", "clitest")
        listed = await arun_cli("--json", *base, "sd", "list")
        assert listed.returncode == 0, listed.stderr
        rows = json_lines(listed.stdout)
        assert {r["id"] for r in rows} == {str(manager.id), str(agent.id)}
        assert all(r["healthy"] for r in rows)
        agents = await arun_cli("--json", *base, "sd", "list", "--group", "agent")
        assert [r["display_name"] for r in json_lines(agents.stdout)] == ["agent-1"]
        human = await arun_cli(*base, "sd", "list")
        assert "manager-1" in human.stdout
        assert "agent-1" in human.stdout

        body = await arun_cli(*base, "sd", "prometheus")
        assert body.returncode == 0, body.stderr
        targets = json.loads(body.stdout)
        by_name = {t["labels"]["display_name"]: t for t in targets}
        assert by_name["manager-1"]["targets"] == ["127.0.0.1:8081"]
        labels = by_name["agent-1"]["labels"]
        assert labels["service_id"] == str(agent.id)
        assert labels["service_group"] == "agent"
        assert labels["version"] == "26.1.0"
        assert labels["zone"] == "a"
        assert labels["app_kubernetes_io_name"] == "agent-1"
        one = await arun_cli("--json", *base, "sd", "prometheus", "--group", "manager")
        assert [t["targets"] for t in json_lines(one.stdout)] == [["127.0.0.1:8081"]]
        other_namespace = await arun_cli("--etcd", etcd_endpoint, "sd", "prometheus")
        assert json.loads(other_namespace.stdout) == []


def test_prometheus_empty_is_empty_array(etcd_endpoint: str) -> None:
    proc = run_cli("--etcd", etcd_endpoint, "sd", "prometheus")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_missing_backend_is_one_line() -> None:
    proc = run_cli("sd", "list")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "--etcd" in proc.stderr
    assert "Traceback" not in proc.stderr
