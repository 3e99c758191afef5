"""``backend.ai-common events``: publish, tail and inspect events on Redis (DESIGN.md §3).

``publish`` writes one anycast entry to the ``events`` stream (or one broadcast on
``events_all``) in upstream's wire format; a known event name has its payload validated by its
event class first. ``tail`` follows anycast events with plain ``XREAD`` from the newest entry on
(a read-only view: no consumer group, no server-side state, so a tail killed with SIGKILL or
SIGHUP leaves nothing that could hold back the stream's trimming), or, with ``--group``, as one
more consumer of an existing group; ``--broadcast`` follows broadcasts as a pub/sub subscriber.
``stats`` reads the groups, consumers, pending counts, lag and dead letters from the server.

Guarantees:
- a published event is tailed with its name, source, delivery, payload and metadata
  [tests/cli/test_events_cmd.py::test_publish_then_tail_anycast]
  [tests/cli/test_events_cmd.py::test_publish_then_tail_broadcast];
- a payload that does not validate against the event class is refused, naming the field
  [tests/cli/test_events_cmd.py::test_publish_validates_known_events];
- ``tail`` without ``--group`` creates no consumer group, even when killed with SIGKILL, so
  the stream still trims [tests/cli/test_events_cmd.py::test_killed_tail_leaves_nothing];
- ``tail --group G`` joins only an existing group and never creates one
  [tests/cli/test_events_cmd.py::test_tail_group_must_exist];
- ``stats`` reports every group with its consumers, pending entries, lag and dead letters
  [tests/cli/test_events_cmd.py::test_stats_reports_groups_and_dead_letters].
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncGenerator, Coroutine, Iterable, Mapping
from typing import Any

import click

from ..clients.valkey import ValkeyClient, ValkeyStreamClient, ValkeyTarget
from ..contexts import ContextBundle, bind_request_id
from ..events import DeliveryPattern, EventCodec, default_registry
from ..exception import InvalidArgument, ObjectNotFound
from ..json import dump_json_str, load_json
from ..message_queue import (
    ANYCAST_STREAM,
    BROADCAST_STREAM,
    DEAD_LETTER_STREAM,
    REPLAY_STREAM_PREFIX,
    AnycastMessage,
    BroadcastMessage,
    QueueConfig,
)
from ..message_queue.redis import RedisMessageQueue
from .context import CLIContext, pass_cli

__all__ = ("DEFAULT_SOURCE", "collect_stats", "describe_message", "events")

DEFAULT_SOURCE = "backend.ai-common-cli"
"""The ``source`` written by ``events publish`` unless ``--source`` is given."""


@click.group()
def events() -> None:
    """Publish, follow and inspect events (needs --redis)."""


# -- publish ----------------------------------------------------------------------------


def build_fields(name: str, payload: str, source: str, delivery: DeliveryPattern) -> dict[str, str]:
    """The wire fields of one event; a known event name validates the payload first."""
    try:
        data = load_json(payload, source="--payload")
    except ValueError as exc:
        raise InvalidArgument(
            f"--payload is not JSON: {exc}", data={"option": "--payload"}
        ) from exc
    if not isinstance(data, dict):
        raise InvalidArgument(
            f"--payload must be a JSON object, got {type(data).__name__}",
            data={"option": "--payload"},
        )
    codec = EventCodec()
    event_cls = default_registry.get(name, delivery)
    text = dump_json_str(data)
    if event_cls is not None:
        if event_cls.delivery_pattern is not delivery:
            hint = "add --broadcast" if delivery is DeliveryPattern.ANYCAST else "drop --broadcast"
            raise InvalidArgument(
                f"event {name!r} is a {event_cls.delivery_pattern} event; {hint}",
                data={"event_name": name},
            )
        text = codec.decode_event(event_cls, text).model_dump_json()
    return {
        "name": name,
        "source": source,
        "payload": text,
        "metadata": codec.encode_metadata(ContextBundle.capture()),
    }


@events.command("publish")
@click.argument("name")
@click.option("--payload", default="{}", metavar="JSON", help="the event's JSON object")
@click.option("--broadcast", is_flag=True, help="broadcast (events_all) instead of anycast")
@click.option("--source", default=DEFAULT_SOURCE, show_default=True, help="producer id")
@pass_cli
def publish(cli: CLIContext, name: str, payload: str, broadcast: bool, source: str) -> None:
    """Publish event NAME with --payload JSON (validated when NAME is a known event)."""
    target = cli.redis_target("events publish")
    delivery = DeliveryPattern.BROADCAST if broadcast else DeliveryPattern.ANYCAST
    with bind_request_id() as request_id:
        fields = build_fields(name, payload, source, delivery)
    if name not in default_registry:
        cli.note(f"note: {name!r} is not a known event name; published as given")

    async def send() -> str | None:
        async with RedisMessageQueue(target, QueueConfig(source=source)) as queue:
            if broadcast:
                await queue.broadcast(fields)
                return None
            return await queue.send(fields)

    msg_id = cli.run(send())
    cli.emit({"id": msg_id, "name": name, "delivery": str(delivery), "request_id": request_id})
    where = f"as {msg_id}" if msg_id else "on events_all"
    cli.plain(f"published {delivery} {name} {where} (request id {request_id})")


# -- tail -------------------------------------------------------------------------------


def _parsed(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return load_json(text)
    except ValueError:
        return text


def describe_message(
    fields: Mapping[str, str],
    delivery: DeliveryPattern,
    msg_id: str | None,
    delivery_count: int | None = None,
) -> dict[str, Any]:
    """One tailed event as a JSON-able object."""
    row: dict[str, Any] = {
        "id": msg_id,
        "name": fields.get("name"),
        "source": fields.get("source"),
        "delivery": str(delivery),
        "payload": _parsed(fields.get("payload")),
        "metadata": _parsed(fields.get("metadata")),
    }
    if delivery_count is not None:
        row["delivery_count"] = delivery_count
    return row


def _print_event(cli: CLIContext, row: dict[str, Any]) -> None:
    cli.emit(row)
    meta = row["metadata"]
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if v is not None}
    where = f" id {row['id']}" if row["id"] else ""
    cli.plain(f"{row['delivery']:<9} {row['name']}  from {row['source']}{where}")
    cli.plain(f"  payload  {dump_json_str(row['payload'])}")
    cli.plain(f"  metadata {dump_json_str(meta)}")


def _decoded(fields: Mapping[bytes, bytes] | Mapping[str, str]) -> dict[str, str]:
    return {
        (k.decode(errors="replace") if isinstance(k, bytes) else k): (
            v.decode(errors="replace") if isinstance(v, bytes) else v
        )
        for k, v in fields.items()
    }


async def _run_until_stopped(cli: CLIContext, read: Coroutine[Any, Any, None]) -> None:
    """Run ``read`` until it returns or SIGINT/SIGTERM arrives; its errors propagate."""
    stop = asyncio.Event()
    cli.stop_on_signals(stop)
    try:
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(read, name="tail-reader")
            stopper = tg.create_task(stop.wait(), name="tail-stop")
            reader.add_done_callback(lambda _: stopper.cancel())
            stopper.add_done_callback(lambda _: reader.cancel())
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:  # report the reader's own error, not a group of one
            raise group.exceptions[0] from None
        raise


async def _tail_stream(cli: CLIContext, target: ValkeyTarget, count: int | None) -> int:
    """The private view: plain ``XREAD`` from the stream's newest entry on; no server state."""
    seen = 0
    async with ValkeyClient(target) as client:
        streams = ValkeyStreamClient(client)
        # Resolved before the announcement, so everything published after it is seen.
        last = await streams.last_id(ANYCAST_STREAM)
        cli.note(
            f"tailing anycast events on {ANYCAST_STREAM} from {last} (read-only, no consumer "
            "group; Ctrl-C to stop)"
        )

        async def read() -> None:
            nonlocal seen, last
            while True:
                batches = await streams.read({ANYCAST_STREAM: last}, count=64, block_ms=500)
                for _key, entries in batches:
                    for entry in entries:
                        last = entry.id
                        if entry.fields is None:
                            continue
                        row = describe_message(
                            _decoded(entry.fields), DeliveryPattern.ANYCAST, entry.id
                        )
                        _print_event(cli, row)
                        seen += 1
                        if count is not None and seen >= count:
                            return

        await _run_until_stopped(cli, read())
    return seen


async def _tail_queue(
    cli: CLIContext, target: ValkeyTarget, *, group: str | None, count: int | None
) -> int:
    """Broadcasts (``group`` None) over pub/sub, or anycast events as one more consumer of an
    existing ``group`` (which takes, and acks, its share of that group's messages)."""
    consumer = f"cli-{socket.gethostname()}-{os.getpid()}"
    config = QueueConfig(
        source=consumer,
        group=group,
        consumer_id=consumer,
        block_seconds=0.5,
        max_in_flight=64,
    )
    seen = 0
    async with ValkeyClient(target) as client:
        if group is not None:
            names = [_text(g["name"]) for g in await _xinfo_groups(client, ANYCAST_STREAM)]
            if group not in names:
                raise ObjectNotFound(
                    f"events tail --group: no consumer group {group!r} on stream "
                    f"{ANYCAST_STREAM!r} (existing: {', '.join(names) or 'none'}); tail joins "
                    "an existing group and never creates one",
                    data={"option": "--group", "group": group},
                )
        async with RedisMessageQueue(client, config) as queue:

            async def read() -> None:
                nonlocal seen
                source: AsyncGenerator[AnycastMessage | BroadcastMessage, None]
                source = queue.consume() if group is not None else queue.subscribe()
                async with contextlib.aclosing(source) as messages:
                    async for msg in messages:
                        if isinstance(msg, AnycastMessage):
                            row = describe_message(
                                msg.fields, DeliveryPattern.ANYCAST, msg.msg_id, msg.delivery_count
                            )
                            await queue.ack(msg.msg_id)
                        else:
                            row = describe_message(
                                msg.fields, DeliveryPattern.BROADCAST, msg.msg_id
                            )
                        _print_event(cli, row)
                        seen += 1
                        if count is not None and seen >= count:
                            return

            async def announce() -> None:
                if group is None:
                    # No event tells when the server confirmed the subscription.
                    while True:
                        if queue.statistics().subscriptions >= 1:
                            break
                        await asyncio.sleep(0.01)
                    what = "broadcasts on events_all"
                else:
                    what = f"anycast events as {consumer} in group {group}"
                cli.note(f"tailing {what} (Ctrl-C to stop)")

            async def read_and_announce() -> None:
                async with asyncio.TaskGroup() as tg:
                    herald = tg.create_task(announce(), name="tail-announce")
                    await read()
                    herald.cancel()

            await _run_until_stopped(cli, read_and_announce())
    return seen


@events.command("tail")
@click.option("--group", default=None, help="join this existing consumer group (takes its share)")
@click.option("--broadcast", is_flag=True, help="follow broadcasts instead of anycast events")
@click.option("--count", type=click.IntRange(min=1), default=None, help="stop after N events")
@pass_cli
def tail(cli: CLIContext, group: str | None, broadcast: bool, count: int | None) -> None:
    """Print events as they arrive: name, source, delivery, payload, metadata.

    By default anycast events are read with plain XREAD from the newest entry on: a read-only
    view that creates nothing on the server and takes no message from any group. With
    --group, tail joins that existing group as one more consumer and takes (and acks) its
    share of the group's messages.
    """
    target = cli.redis_target("events tail")
    chosen = group if group is not None else cli.settings.events.group
    if broadcast:
        cli.run(_tail_queue(cli, target, group=None, count=count))
    elif chosen is None:
        cli.run(_tail_stream(cli, target, count))
    else:
        cli.run(_tail_queue(cli, target, group=chosen, count=count))


# -- stats ------------------------------------------------------------------------------


def _info(row: Any) -> dict[str, Any]:
    pairs: Iterable[tuple[Any, Any]]
    if isinstance(row, dict):
        pairs = row.items()
    else:
        pairs = ((row[i], row[i + 1]) for i in range(0, len(row), 2))
    return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in pairs}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _xinfo_groups(client: ValkeyClient, key: str) -> list[dict[str, Any]]:
    if not await client.execute("EXISTS", key):
        return []
    return [_info(row) for row in await client.execute("XINFO", "GROUPS", key)]


async def collect_stats(target: ValkeyTarget) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The stream summary, and per consumer group of ``events`` its consumers, pending
    entries (replays included), lag, dead letters and last delivered id."""
    async with ValkeyClient(target) as client:
        streams = ValkeyStreamClient(client)
        dead: dict[str, int] = {}
        async with RedisMessageQueue(client, QueueConfig(source="cli-stats")) as queue:
            after: str | None = None
            while True:
                page = await queue.list_dead_letters(limit=1000, after=after)
                for letter in page:
                    dead[letter.group] = dead.get(letter.group, 0) + 1
                if len(page) < 1000:
                    break
                after = page[-1].dlq_id
        groups: list[dict[str, Any]] = []
        for info in await _xinfo_groups(client, ANYCAST_STREAM):
            name = _text(info["name"])
            consumers = [
                _info(c) for c in await client.execute("XINFO", "CONSUMERS", ANYCAST_STREAM, name)
            ]
            replay_pending = sum(
                int(g["pending"])
                for g in await _xinfo_groups(client, REPLAY_STREAM_PREFIX + name)
                if _text(g["name"]) == name
            )
            lag = info.get("lag")
            groups.append(
                {
                    "group": name,
                    "consumers": int(info["consumers"]),
                    "pending": int(info["pending"]) + replay_pending,
                    "lag": None if lag is None else int(lag),
                    "dead_letters": dead.get(name, 0),
                    "last_delivered": _text(info["last-delivered-id"]),
                    "consumer_list": [
                        {
                            "name": _text(c["name"]),
                            "pending": int(c["pending"]),
                            "idle_ms": int(c["idle"]),
                        }
                        for c in consumers
                    ],
                }
            )
        summary = {
            "stream": ANYCAST_STREAM,
            "length": await streams.length(ANYCAST_STREAM),
            "groups": len(groups),
            "dead_letters": sum(dead.values()),
            "dead_letter_stream_length": await streams.length(DEAD_LETTER_STREAM),
            "broadcast_stream_length": await streams.length(BROADCAST_STREAM),
        }
        return summary, groups


@events.command("stats")
@pass_cli
def stats(cli: CLIContext) -> None:
    """Show the consumer groups of the events stream: consumers, pending, lag, dead letters."""
    target = cli.redis_target("events stats")
    summary, groups = cli.run(collect_stats(target))
    if cli.json:
        cli.emit({"summary": True, **summary})
        for g in groups:
            cli.emit(g)
        return
    cli.table(
        f"stream {summary['stream']}: {summary['length']} entries, "
        f"{summary['dead_letters']} dead letters",
        ["group", "consumers", "pending", "lag", "dead letters", "last delivered"],
        [
            [
                g["group"],
                g["consumers"],
                g["pending"],
                _or_unknown(g["lag"]),
                g["dead_letters"],
                g["last_delivered"],
            ]
            for g in groups
        ],
    )
    rows = [
        [g["group"], c["name"], c["pending"], f"{c['idle_ms'] / 1000:.1f} s"]
        for g in groups
        for c in g["consumer_list"]
    ]
    if rows:
        cli.table("consumers", ["group", "consumer", "pending", "idle"], rows)


def _or_unknown(value: Any) -> Any:
    return "?" if value is None else value
