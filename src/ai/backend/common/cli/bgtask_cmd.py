"""``backend.ai-common bgtask``: list, watch and cancel background tasks kept in Redis.

The commands read the task store every manager of the cluster shares (``bgtask:*`` keys, see
:mod:`ai.backend.common.bgtask`); ``watch`` follows a task's upstream bgtask events (broadcast
on ``events_all``) and falls back to reading the store when no event comes, so it ends even if
the final broadcast was missed; ``cancel`` records a cancel request the owner acts on, from any
node.

Guarantees:
- ``list`` shows a task started by a manager in another process, with its state and progress
  [tests/cli/test_bgtask_cmd.py::test_list_watch_cancel];
- ``watch`` ends with the task's final state (exit 0 for success, 1 otherwise)
  [tests/cli/test_bgtask_cmd.py::test_list_watch_cancel];
- ``cancel`` makes a running task end ``cancelled`` on its owner
  [tests/cli/test_bgtask_cmd.py::test_list_watch_cancel];
- an unknown task id is one line and exit 1 [tests/cli/test_bgtask_cmd.py::test_unknown_task].
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from contextlib import aclosing
from typing import Any

import click
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from ..bgtask import (
    TaskFollower,
    TaskId,
    TaskNotFound,
    TaskRecord,
    TaskState,
    subscribe_bgtask_events,
)
from ..bgtask.redis import RedisTaskStore
from ..clients.valkey import ValkeyClient, ValkeyTarget
from ..events import AbstractEvent, BgtaskUpdatedEvent, EventDispatcher, EventHub
from ..exception import InvalidArgument
from ..message_queue import QueueConfig
from ..message_queue.redis import RedisMessageQueue
from .context import CLIContext, pass_cli

__all__ = ("bgtask", "parse_task_id", "record_row")


@click.group()
def bgtask() -> None:
    """Background tasks: list, watch, cancel (needs --redis)."""


def parse_task_id(text: str) -> TaskId:
    """A task id from the command line; a malformed one raises ``InvalidArgument``."""
    try:
        return TaskId(uuid.UUID(text))
    except ValueError as exc:
        raise InvalidArgument(
            f"task id {text!r} is not a UUID", data={"argument": "TASK_ID"}
        ) from exc


def _percent(record: TaskRecord) -> str:
    if record.total <= 0:
        return f"{record.current:g}"
    return f"{record.current:g}/{record.total:g} ({100 * record.current / record.total:.0f} %)"


def record_row(record: TaskRecord) -> dict[str, Any]:
    """A task record as a JSON-able object."""
    return {
        "task_id": str(record.task_id),
        "name": record.name,
        "state": str(record.state),
        "current": record.current,
        "total": record.total,
        "message": record.message,
        "owner": record.owner,
        "tags": list(record.tags),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "finished_at": record.finished_at,
        "cancel_requested": record.cancel_requested,
        "error_code": record.error_code,
    }


@bgtask.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in TaskState]),
    help="only tasks in this state (repeatable)",
)
@click.option("--tag", default=None, help="only tasks with this tag")
@click.option("--owner", default=None, help="only tasks held by this node")
@pass_cli
def list_(cli: CLIContext, states: Sequence[str], tag: str | None, owner: str | None) -> None:
    """List background tasks, oldest first (final ones until they are purged)."""
    target = cli.redis_target("bgtask list")

    async def fetch() -> list[TaskRecord]:
        async with RedisTaskStore(target) as store:
            return await store.list_tasks(
                owner=owner, tag=tag, states=[TaskState(s) for s in states] or None
            )

    records = cli.run(fetch())
    if cli.json:
        for record in records:
            cli.emit(record_row(record))
        return
    now = time.time()
    cli.table(
        f"{len(records)} background task(s)",
        ["task id", "name", "state", "progress", "owner", "message", "updated"],
        [
            [
                r.task_id,
                r.name,
                r.state,
                _percent(r),
                r.owner,
                r.message or "",
                f"{max(0.0, now - r.updated_at):.0f} s ago",
            ]
            for r in records
        ],
    )


async def _watch(cli: CLIContext, target: ValkeyTarget, task_id: TaskId) -> TaskRecord:
    async with (
        ValkeyClient(target) as client,
        RedisTaskStore(client) as store,
        RedisMessageQueue(client, QueueConfig(source="cli-watch")) as queue,
    ):
        hub = EventHub()
        dispatcher = EventDispatcher(queue, max_concurrency=4, close_timeout=1.0)
        subscribe_bgtask_events(dispatcher, hub)
        follower = TaskFollower(store, hub, poll_interval=1.0)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[message]}"),
        )
        progress = Progress(*columns, console=cli.out, disable=cli.json, transient=False)
        try:
            async with dispatcher:
                with progress:
                    bar = progress.add_task(str(task_id)[:8], total=None, message="")
                    async with aclosing(follower.follow(task_id)) as stream:
                        async for event in stream:
                            _show(cli, progress, bar, event)
        finally:
            await hub.aclose()
        record = await store.get(task_id)
        if record is None:
            raise TaskNotFound(
                f"background task {task_id} not found", data={"task_id": str(task_id)}
            )
        return record


def _show(cli: CLIContext, progress: Progress, bar: Any, event: AbstractEvent) -> None:
    row: dict[str, Any] = {"event": event.event_name, **event.model_dump(mode="json")}
    cli.emit(row)
    message = row.get("message") or ""
    if isinstance(event, BgtaskUpdatedEvent):
        total = event.total_progress if event.total_progress > 0 else None
        progress.update(bar, completed=event.current_progress, total=total, message=message)
    else:
        task = progress.tasks[0]
        if event.event_name == "bgtask_done" and task.total is not None:
            progress.update(bar, completed=task.total)
        progress.update(bar, message=f"{event.event_name}: {message}")


@bgtask.command("watch")
@click.argument("task_id")
@pass_cli
def watch(cli: CLIContext, task_id: str) -> None:
    """Show a task's progress bar until it ends (exit 0 on success, 1 otherwise)."""
    tid = parse_task_id(task_id)
    target = cli.redis_target("bgtask watch")
    record = cli.run(_watch(cli, target, tid))
    cli.emit({"final": True, **record_row(record)})
    line = f"task {record.task_id} ended {record.state}"
    if record.message:
        line += f": {record.message}"
    if record.state in (TaskState.SUCCEEDED, TaskState.PARTIALLY_SUCCEEDED):
        cli.plain(line)
        return
    cli.note(line)
    raise click.exceptions.Exit(1)


@bgtask.command("cancel")
@click.argument("task_id")
@pass_cli
def cancel(cli: CLIContext, task_id: str) -> None:
    """Ask for a task to be cancelled; its owner stops it (a final task is left as it is)."""
    tid = parse_task_id(task_id)
    target = cli.redis_target("bgtask cancel")

    async def run() -> TaskRecord:
        async with RedisTaskStore(target) as store:
            return await store.request_cancel(tid)

    record = cli.run(run())
    cli.emit(record_row(record))
    if record.state.is_final:
        cli.plain(f"task {tid} had already ended {record.state}")
    else:
        cli.plain(f"cancellation of task {tid} requested ({record.state}, owner {record.owner})")
