"""``backend.ai-common dlq``: list, replay and purge dead-lettered anycast events.

Dead letters live in the ``events:dlq`` stream (ours; DESIGN.md section 4) with the group that
gave up, the error, the attempt count and the error history. ``replay`` delivers them again to
that group only (as new messages) and removes them from the dead-letter stream; ``purge``
deletes them.

Guarantees:
- a forced dead letter is listed with its group, error and attempts, replayed to its group, and
  purged [tests/cli/test_dlq_cmd.py::test_list_replay_purge];
- ``replay`` without ids or ``--all`` is refused with one line
  [tests/cli/test_dlq_cmd.py::test_replay_needs_ids_or_all];
- ``replay`` of an id that is not a dead letter replays nothing and exits 1 naming it; an id
  that is not a stream id is refused before any I/O
  [tests/cli/test_dlq_cmd.py::test_replay_unknown_id_fails].
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import click

from ..clients.valkey import ValkeyClient, ValkeyStreamClient, ValkeyTarget
from ..events import DeliveryPattern
from ..exception import InvalidArgument, ObjectNotFound
from ..message_queue import DEAD_LETTER_STREAM, DeadLetter, QueueConfig
from ..message_queue.redis import RedisMessageQueue
from .context import CLIContext, pass_cli
from .events_cmd import describe_message

__all__ = ("dlq",)

_LIST_CONFIG = QueueConfig(source="cli-dlq")


@click.group()
def dlq() -> None:
    """Dead-lettered anycast events: list, replay, purge (needs --redis)."""


def _row(letter: DeadLetter) -> dict[str, object]:
    event = describe_message(letter.fields, DeliveryPattern.ANYCAST, letter.original_id)
    return {
        "dlq_id": letter.dlq_id,
        "group": letter.group,
        "original_id": letter.original_id,
        "name": event["name"],
        "source": event["source"],
        "attempts": letter.attempts,
        "error": letter.error,
        "history": list(letter.history),
        "payload": event["payload"],
        "metadata": event["metadata"],
    }


@dlq.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--after", default=None, metavar="DLQ_ID", help="start after this dead letter")
@click.option("--group", default=None, help="only dead letters of this consumer group")
@pass_cli
def list_(cli: CLIContext, limit: int, after: str | None, group: str | None) -> None:
    """List dead letters, oldest first."""
    target = cli.redis_target("dlq list")

    async def fetch() -> list[DeadLetter]:
        async with RedisMessageQueue(target, _LIST_CONFIG) as queue:
            return await queue.list_dead_letters(limit=limit, after=after)

    letters = [d for d in cli.run(fetch()) if group is None or d.group == group]
    if cli.json:
        for letter in letters:
            cli.emit(_row(letter))
        return
    cli.table(
        f"{len(letters)} dead letter(s)",
        ["dlq id", "group", "event", "attempts", "error", "original id"],
        [
            [d.dlq_id, d.group, d.fields.get("name", "?"), d.attempts, d.error, d.original_id]
            for d in letters
        ],
    )


_STREAM_ID = re.compile(r"[0-9]+(-[0-9]+)?")


def _selection(ids: Sequence[str], all_: bool, command: str) -> list[str] | None:
    if ids and all_:
        raise InvalidArgument(f"`dlq {command}`: give dead-letter ids or --all, not both")
    if not ids and not all_:
        raise InvalidArgument(
            f"`dlq {command}` needs dead-letter ids (see `dlq list`) or --all",
            data={"option": "--all"},
        )
    for dlq_id in ids:
        if not _STREAM_ID.fullmatch(dlq_id):
            raise InvalidArgument(
                f"`dlq {command}`: {dlq_id!r} is not a dead-letter id (like 1712345678901-0)",
                data={"dlq_id": dlq_id},
            )
    return None if all_ else list(dict.fromkeys(ids))


async def _missing(target: ValkeyTarget, ids: Sequence[str]) -> list[str]:
    """The ids among ``ids`` that are not in the dead-letter stream."""
    async with ValkeyClient(target) as client:
        streams = ValkeyStreamClient(client)
        return [i for i in ids if not await streams.range(DEAD_LETTER_STREAM, i, i, count=1)]


@dlq.command("replay")
@click.argument("ids", nargs=-1, metavar="[DLQ_ID...]")
@click.option("--all", "all_", is_flag=True, help="replay every dead letter")
@pass_cli
def replay(cli: CLIContext, ids: tuple[str, ...], all_: bool) -> None:
    """Deliver dead letters again to the group that gave up on them (and only to it)."""
    target = cli.redis_target("dlq replay")
    selection = _selection(ids, all_, "replay")

    async def run() -> list[str]:
        if selection is not None:
            missing = await _missing(target, selection)
            if missing:
                raise ObjectNotFound(
                    f"`dlq replay`: no dead letter {', '.join(missing)} (see `dlq list`); "
                    "nothing replayed",
                    data={"dlq_ids": missing},
                )
        async with RedisMessageQueue(target, _LIST_CONFIG) as queue:
            return await queue.replay_dead_letters(selection)

    new_ids = cli.run(run())
    for new_id in new_ids:
        cli.emit({"replayed_as": new_id})
    cli.plain(f"replayed {len(new_ids)} dead letter(s): {', '.join(new_ids) or '-'}")
    if selection is not None and len(new_ids) < len(selection):
        # Another client replayed or purged some of them between the check and the replay.
        raise ObjectNotFound(
            f"`dlq replay`: replayed {len(new_ids)} of {len(selection)} dead letters; the "
            "others were gone meanwhile",
            data={"replayed": new_ids},
        )


@dlq.command("purge")
@click.argument("ids", nargs=-1, metavar="[DLQ_ID...]")
@pass_cli
def purge(cli: CLIContext, ids: tuple[str, ...]) -> None:
    """Delete the given dead letters, or all of them when no id is given."""
    target = cli.redis_target("dlq purge")

    async def run() -> int:
        async with RedisMessageQueue(target, _LIST_CONFIG) as queue:
            return await queue.purge_dead_letters(list(ids) if ids else None)

    deleted = cli.run(run())
    cli.emit({"purged": deleted})
    cli.plain(f"purged {deleted} dead letter(s)")
