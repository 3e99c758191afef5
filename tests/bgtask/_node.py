"""A bgtask node on Redis: run as a subprocess by the crash tests, imported for its handlers.

``python -m tests.bgtask._node <redis_url> <node_id> <lease_ttl> <scenario>`` opens a store, an
event queue and a manager, starts the scenario's tasks, prints one JSON line with their ids and
then runs until it is killed (the tests send SIGKILL or SIGSTOP/SIGCONT). The handlers print
what they observe as JSON lines on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import BaseModel

from ai.backend.common.bgtask import (
    BackgroundTaskConfig,
    BackgroundTaskManager,
    ProgressReporter,
    StaleFencingToken,
    TaskRegistry,
    TaskResult,
)
from ai.backend.common.bgtask.redis import RedisTaskStore
from ai.backend.common.clients.valkey import ValkeyTarget
from ai.backend.common.events import EventProducer
from ai.backend.common.message_queue import QueueConfig
from ai.backend.common.message_queue.redis import RedisMessageQueue

REGISTRY = TaskRegistry()
NODE = {"id": "?"}


class Steps(BaseModel):
    steps: int = 100


def emit(**fields: object) -> None:
    print(json.dumps({"node": NODE["id"], **fields}), flush=True)


@REGISTRY.task("count", Steps, resumable=True)
async def count(reporter: ProgressReporter, args: Steps) -> TaskResult | str:
    """Counts with a checkpoint per step; a resumed run finishes at once from the checkpoint."""
    if reporter.resumed:
        reporter.update(current=args.steps, total=args.steps, message="resumed")
        return TaskResult(
            message=f"resumed on {NODE['id']}",
            data={"from": reporter.last_checkpoint, "runs": reporter.run_count},
        )
    for step in range(1, args.steps + 1):
        reporter.update(current=step, total=args.steps, message=f"step {step}")
        await reporter.save_checkpoint({"step": step})
        await asyncio.sleep(0.05)
    return "counted"


@REGISTRY.task("fragile", Steps)
async def fragile(reporter: ProgressReporter, args: Steps) -> str:
    """Not resumable: reports progress until done."""
    for step in range(1, args.steps + 1):
        reporter.update(current=step, total=args.steps, message=f"step {step}")
        await asyncio.sleep(0.05)
    return "fragile done"


@REGISTRY.task("writer", Steps, resumable=True)
async def writer(reporter: ProgressReporter, args: Steps) -> None:
    """Writes a checkpoint naming its node every 10 ms; prints a write that was rejected.

    Each write is shielded, so a write sent just before the heartbeat noticed the lost lease
    still reports what the store answered.
    """
    written = 0
    while True:
        written += 1
        write = asyncio.ensure_future(
            reporter.save_checkpoint({"node": NODE["id"], "write": written})
        )
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await write
            if (error := write.exception()) is not None and isinstance(error, StaleFencingToken):
                emit(fenced=str(error), token=reporter.fencing_token)
            emit(cancelled=True)
            raise
        except StaleFencingToken as exc:
            emit(fenced=str(exc), token=reporter.fencing_token)
            raise
        await asyncio.sleep(0.01)


def node_config(lease: float, **overrides: object) -> BackgroundTaskConfig:
    """The timings every node of the crash tests uses."""
    base = BackgroundTaskConfig(
        lease_ttl=lease,
        progress_interval=0.05,
        cancel_grace=1.0,
        retention=60.0,
        sweep_interval=1.0,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


@dataclass
class Node:
    """One node's manager, store and event queue."""

    manager: BackgroundTaskManager
    store: RedisTaskStore
    queue: RedisMessageQueue


@contextlib.asynccontextmanager
async def open_node(
    redis_url: str, node_id: str, lease: float, **overrides: object
) -> AsyncIterator[Node]:
    """A running node on ``redis_url``; closed (with the shutdown policy) on exit."""
    NODE["id"] = node_id
    target = ValkeyTarget.from_url(redis_url, request_timeout=5.0)
    async with (
        RedisTaskStore(target) as store,
        RedisMessageQueue(target, QueueConfig(source=node_id)) as queue,
        BackgroundTaskManager(
            store,
            node_id=node_id,
            registry=REGISTRY,
            producer=EventProducer(queue, node_id),
            config=node_config(lease, **overrides),
        ) as manager,
    ):
        yield Node(manager, store, queue)


async def main(redis_url: str, node_id: str, lease: float, scenario: str) -> None:
    overrides: dict[str, object] = {}
    if scenario == "pause":
        overrides = {"heartbeat_interval": lease * 0.9, "adopt": False}
    async with open_node(redis_url, node_id, lease, **overrides) as node:
        if scenario == "kill":
            ids = {
                "count": str(await node.manager.start("count", {"steps": 100_000})),
                "fragile": str(await node.manager.start("fragile", {"steps": 100_000})),
            }
        elif scenario == "pause":
            ids = {"writer": str(await node.manager.start("writer"))}
        else:
            raise SystemExit(f"unknown scenario {scenario!r}")
        emit(ready=ids)
        await asyncio.Event().wait()


if __name__ == "__main__":
    url, node_name, lease_ttl, which = sys.argv[1:5]
    asyncio.run(main(url, node_name, float(lease_ttl), which))
