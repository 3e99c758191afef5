"""The demo runs as a subprocess, exits 0 and reports every step as ok."""

from __future__ import annotations

import json

import redis

from ai.backend.common.cli.context import CLIContext
from ai.backend.common.cli.demo import (
    EXPECTED_BREAKER_PATH,
    DemoEnv,
    StepResult,
    is_loopback,
    run_demo,
    step_resilience,
    step_types,
)
from ai.backend.common.cli.demo_runtime import DemoRuntime

from ._cli import json_lines, run_cli

__all__ = ("run_cli",)


def test_demo_json_reports_every_step_ok() -> None:
    proc = run_cli("--json", "demo")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rows, "the demo printed no summary rows"
    expected = {
        "types", "errors", "contexts", "configs", "discovery", "events", "deadletter", "bgtask",
        "resilience", "auth", "rpc",
    }  # fmt: skip
    assert {row["capability"] for row in rows} >= expected
    assert all(row["ok"] is True for row in rows), rows
    seconds = float(proc.stderr.rsplit("done in ", 1)[1].split()[0])
    assert seconds < 30, proc.stderr


def test_demo_on_real_backends(redis_url: str, etcd_endpoint: str) -> None:
    url = f"{redis_url}/2"
    proc = run_cli("--json", "--redis", url, "--etcd", etcd_endpoint, "demo")
    assert proc.returncode == 0, proc.stderr
    rows = json_lines(proc.stdout)
    assert len(rows) == 11
    assert all(row["ok"] is True for row in rows), rows
    client = redis.Redis.from_url(url)
    try:
        assert client.exists("events"), "the demo published no anycast event on Redis"
        assert client.xinfo_groups("events") == [], "the demo left consumer groups behind"
        assert not client.exists("events:replay:demo-agent")
    finally:
        client.close()


def test_demo_human_output_has_summary_table() -> None:
    proc = run_cli("demo")
    assert proc.returncode == 0, proc.stderr
    assert "summary" in proc.stdout
    assert "simulated on a fake clock" in proc.stdout


def test_unknown_command_is_one_line_error_without_traceback() -> None:
    proc = run_cli("no-such-command")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "No such command 'no-such-command'" in proc.stderr
    assert "backend.ai-common --help" in proc.stderr


def _env() -> DemoEnv:
    cli = CLIContext(json=True)
    return DemoEnv(cli, DemoRuntime(cli))


async def test_failing_step_is_reported() -> None:
    async def step_boom(env: DemoEnv) -> StepResult:
        raise RuntimeError("disk\non fire")

    results = await run_demo(_env(), steps=[step_boom, step_types])
    assert [r.capability for r in results] == ["boom", "types"]
    assert results[0].ok is False
    assert results[0].outcome == "failed: RuntimeError: disk on fire"
    assert results[1].ok is True, "the walkthrough stopped at the failing step"


async def test_resilience_step_sees_half_open() -> None:
    result = await step_resilience(_env())
    assert result.ok, result
    assert EXPECTED_BREAKER_PATH == "closed -> open -> half_open -> closed"
    assert EXPECTED_BREAKER_PATH in result.outcome
    assert "simulated" in result.outcome


def test_non_loopback_host_needs_insecure_demo() -> None:
    assert all(map(is_loopback, ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "example.org", "")))
    for host in ("0.0.0.0", "demo.example.org"):
        proc = run_cli("demo", "--host", host)
        assert proc.returncode == 1, proc
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert "--insecure-demo" in proc.stderr
        assert "summary" not in proc.stdout
