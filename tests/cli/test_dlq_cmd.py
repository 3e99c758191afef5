"""``dlq list/replay/purge`` as subprocesses after forcing dead letters on a real Redis."""

from __future__ import annotations

import contextlib

from ai.backend.common.clients.valkey import ValkeyTarget
from ai.backend.common.message_queue import QueueConfig
from ai.backend.common.message_queue.redis import RedisMessageQueue

from ._cli import arun_cli, json_lines, run_cli


async def test_list_replay_purge(redis_url: str) -> None:
    target = ValkeyTarget.from_url(redis_url)
    config = QueueConfig(
        source="t", group="agent", consumer_id="agent-1", max_deliveries=1, retry_delay=0.01,
        reclaim_interval=0.1, block_seconds=0.1,
    )  # fmt: skip
    async with RedisMessageQueue(target, config) as queue:
        for n in range(2):
            await queue.send({"name": "demo_job", "source": "t", "payload": f'{{"n":{n}}}'})
        async with contextlib.aclosing(queue.consume()) as messages:
            for _ in range(2):
                msg = await anext(messages)
                await queue.nack(msg.msg_id, f"handler failed on {msg.fields['payload']}")

        listed = await arun_cli("--json", "--redis", redis_url, "dlq", "list")
        assert listed.returncode == 0, listed.stderr
        letters = json_lines(listed.stdout)
        assert [d["payload"] for d in letters] == [{"n": 0}, {"n": 1}]
        assert {d["group"] for d in letters} == {"agent"}
        assert letters[0]["name"] == "demo_job"
        assert letters[0]["attempts"] == 1
        assert letters[0]["error"] == 'handler failed on {"n":0}'
        human = await arun_cli("--redis", redis_url, "dlq", "list", "--group", "agent")
        assert letters[0]["dlq_id"] in human.stdout

        replayed = await arun_cli(
            "--json", "--redis", redis_url, "dlq", "replay", letters[0]["dlq_id"]
        )
        assert replayed.returncode == 0, replayed.stderr
        (row,) = json_lines(replayed.stdout)
        async with contextlib.aclosing(queue.consume()) as messages:
            again = await anext(messages)
            await queue.ack(again.msg_id)
        assert again.fields["payload"] == '{"n":0}'
        assert again.msg_id.endswith(row["replayed_as"])

        purged = await arun_cli("--json", "--redis", redis_url, "dlq", "purge")
        assert purged.returncode == 0, purged.stderr
        assert json_lines(purged.stdout) == [{"purged": 1}]
        assert (await queue.list_dead_letters()) == []


def test_replay_needs_ids_or_all(redis_url: str) -> None:
    proc = run_cli("--redis", redis_url, "dlq", "replay")
    assert proc.returncode == 1
    assert "--all" in proc.stderr
    assert proc.stderr.count("\n") == 1
    both = run_cli("--redis", redis_url, "dlq", "replay", "1-0", "--all")
    assert both.returncode == 1
    assert "not both" in both.stderr
    empty = run_cli("--json", "--redis", redis_url, "dlq", "replay", "--all")
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout == ""


async def test_replay_unknown_id_fails(redis_url: str) -> None:
    alone = await arun_cli("--redis", redis_url, "dlq", "replay", "1-0")
    assert alone.returncode == 1, alone
    assert alone.stderr.count("\n") == 1, alone.stderr
    assert "no dead letter 1-0" in alone.stderr
    assert "replayed 0" not in alone.stdout
    target = ValkeyTarget.from_url(redis_url)
    config = QueueConfig(source="t", group="agent", consumer_id="agent-1", max_deliveries=1)
    async with RedisMessageQueue(target, config) as queue:
        await queue.send({"name": "demo_job", "source": "t", "payload": "{}"})
        async with contextlib.aclosing(queue.consume()) as messages:
            msg = await anext(messages)
            await queue.dead_letter(msg.msg_id, "forced")
        (letter,) = await queue.list_dead_letters()
        mixed = await arun_cli("--redis", redis_url, "dlq", "replay", letter.dlq_id, "1-0")
        assert mixed.returncode == 1, mixed
        assert mixed.stderr.count("\n") == 1, mixed.stderr
        assert "no dead letter 1-0" in mixed.stderr
        assert "nothing replayed" in mixed.stderr
        assert [d.dlq_id for d in await queue.list_dead_letters()] == [letter.dlq_id]
    bad = await arun_cli("--redis", redis_url, "dlq", "replay", "latest")
    assert bad.returncode == 1, bad
    assert "'latest' is not a dead-letter id" in bad.stderr
