"""``events publish/tail/stats`` as subprocesses against a real Redis."""

from __future__ import annotations

import contextlib
import socket

import redis

from ai.backend.common.clients.valkey import ValkeyClient, ValkeyStreamClient, ValkeyTarget
from ai.backend.common.message_queue import QueueConfig
from ai.backend.common.message_queue.redis import RedisMessageQueue

from ._cli import arun_cli, background, json_lines, run_cli


def _groups(redis_url: str) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    try:
        if not client.exists("events"):
            return []
        return [g["name"].decode() for g in client.xinfo_groups("events")]
    finally:
        client.close()


def test_missing_redis_is_one_line() -> None:
    proc = run_cli("events", "stats")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "needs Redis" in proc.stderr
    assert "--redis" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_redis_is_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = run_cli("--redis", f"redis://127.0.0.1:{port}/0", "events", "stats")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_publish_then_tail_anycast(redis_url: str) -> None:
    with background("--json", "--redis", redis_url, "events", "tail", "--count", "2") as tail:
        tail.wait_for_line("tailing anycast events")
        first = run_cli(
            "--json", "--redis", redis_url, "events", "publish", "demo_ping",
            "--payload", '{"n": 1}', "--source", "test-producer",
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        sent = json_lines(first.stdout)[0]
        kernel = '{"kernel_id": "f46860a2-a604-e5af-f4db-1c1eaa66b464",'
        kernel += ' "session_id": "f46860a2-a604-e5af-f4db-1c1eaa66b464"}'
        second = run_cli(
            "--redis", redis_url, "events", "publish", "kernel_started", "--payload", kernel
        )
        assert second.returncode == 0, second.stderr
        assert tail.finish() == 0, tail.stderr
    rows = json_lines("\n".join(tail.stdout))
    assert [r["name"] for r in rows] == ["demo_ping", "kernel_started"]
    assert rows[0]["id"] == sent["id"]
    assert rows[0]["source"] == "test-producer"
    assert rows[0]["delivery"] == "anycast"
    assert rows[0]["payload"] == {"n": 1}
    assert rows[0]["metadata"]["request_id"] == sent["request_id"]
    assert rows[1]["source"] == "backend.ai-common-cli"
    assert rows[1]["payload"]["kernel_id"] == "f46860a2-a604-e5af-f4db-1c1eaa66b464"
    assert _groups(redis_url) == [], "tail created a consumer group"


async def test_killed_tail_leaves_nothing(redis_url: str) -> None:
    """SIGKILL (or SIGHUP) gives no chance to clean up: the private view must need none."""
    with background("--json", "--redis", redis_url, "events", "tail") as tail:
        tail.wait_for_line("tailing anycast events")
        proc = run_cli("--redis", redis_url, "events", "publish", "demo_ping")
        assert proc.returncode == 0, proc.stderr
        tail.wait_for_line('"demo_ping"', stream="stdout")
        tail.proc.kill()
        tail.finish()
    assert _groups(redis_url) == [], "the killed tail left a consumer group on events"
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.keys("events:replay:*") == []
        with client.pipeline(transaction=False) as pipe:
            for _ in range(2000):
                pipe.xadd("events", {"name": "x", "source": "s", "payload": "{}"})
            pipe.execute()
        before = client.xlen("events")
    finally:
        client.close()
    async with ValkeyClient(ValkeyTarget.from_url(redis_url)) as valkey:
        removed = await ValkeyStreamClient(valkey).trim_retained("events", maxlen=100)
        after = await ValkeyStreamClient(valkey).length("events")
    assert removed > 0, "nothing was trimmed: something still holds the stream back"
    assert after == before - removed
    assert after < 500


def test_tail_group_must_exist(redis_url: str) -> None:
    proc = run_cli("--redis", redis_url, "events", "tail", "--group", "no-such-group")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "no consumer group 'no-such-group'" in proc.stderr
    assert _groups(redis_url) == [], "tail --group created the group"


def test_tail_joins_an_existing_group(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.xgroup_create("events", "ops", id="$", mkstream=True)
        args = ("--json", "--redis", redis_url, "events", "tail", "--group", "ops", "--count", "1")
        with background(*args) as tail:
            tail.wait_for_line("in group ops")
            proc = run_cli("--redis", redis_url, "events", "publish", "demo_ping")
            assert proc.returncode == 0, proc.stderr
            assert tail.finish() == 0, tail.stderr
        (row,) = json_lines("\n".join(tail.stdout))
        assert row["name"] == "demo_ping"
        assert row["delivery_count"] == 1
        (info,) = client.xinfo_groups("events")
        assert info["name"] == b"ops"
        assert info["pending"] == 0, "tail did not ack what it took"
    finally:
        client.close()


def test_publish_then_tail_broadcast(redis_url: str) -> None:
    args = ("--json", "--redis", redis_url, "events", "tail", "--broadcast", "--count", "1")
    with background(*args) as tail:
        tail.wait_for_line("tailing broadcasts")
        proc = run_cli(
            "--redis", redis_url, "events", "publish", "demo_hello", "--broadcast",
            "--payload", '{"to": "everyone"}',
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert tail.finish() == 0, tail.stderr
    (row,) = json_lines("\n".join(tail.stdout))
    assert row["name"] == "demo_hello"
    assert row["delivery"] == "broadcast"
    assert row["payload"] == {"to": "everyone"}
    assert row["metadata"]["request_id"].startswith("req-")


def test_publish_validates_known_events(redis_url: str) -> None:
    proc = run_cli(
        "--redis", redis_url, "events", "publish", "kernel_started", "--payload", '{"kernel_id": 1}'
    )
    assert proc.returncode == 1
    assert "kernel_id" in proc.stderr
    assert "session_id" in proc.stderr
    bad = run_cli("--redis", redis_url, "events", "publish", "x", "--payload", "[1]")
    assert bad.returncode == 1
    assert "--payload must be a JSON object" in bad.stderr
    wrong = run_cli("--redis", redis_url, "events", "publish", "bgtask_done", "--payload", "{}")
    assert wrong.returncode == 1
    assert "add --broadcast" in wrong.stderr
    assert _groups(redis_url) == []


async def test_stats_reports_groups_and_dead_letters(redis_url: str) -> None:
    target = ValkeyTarget.from_url(redis_url)
    config = QueueConfig(source="t", group="agent", consumer_id="agent-1", batch_size=1)
    async with RedisMessageQueue(target, config) as queue:
        for n in range(3):
            await queue.send({"name": "demo", "source": "t", "payload": f'{{"n":{n}}}'})
        async with contextlib.aclosing(queue.consume()) as messages:
            first = await anext(messages)
            await queue.dead_letter(first.msg_id, "forced for the test")
            await anext(messages)  # left pending
        proc = await arun_cli("--json", "--redis", redis_url, "events", "stats")
        human = await arun_cli("--redis", redis_url, "events", "stats")
    assert proc.returncode == 0, proc.stderr
    rows = json_lines(proc.stdout)
    summary = rows[0]
    assert summary["summary"] is True
    assert summary["length"] == 3
    assert summary["dead_letters"] == 1
    (agent,) = [r for r in rows[1:] if r["group"] == "agent"]
    assert agent["consumers"] == 1
    assert agent["pending"] == 1
    assert agent["lag"] == 1
    assert agent["dead_letters"] == 1
    assert [c["name"] for c in agent["consumer_list"]] == ["agent-1"]
    assert human.returncode == 0, human.stderr
    assert "agent-1" in human.stdout
