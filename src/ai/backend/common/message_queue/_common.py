"""Helpers shared by the backends: entry ids, field checks, key names (private)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .exceptions import InvalidMessage
from .types import REPLAY_ID_PREFIX, REPLAY_STREAM_PREFIX

__all__ = (
    "REQUIRED_FIELDS",
    "check_outgoing",
    "checked_id",
    "checked_msg_id",
    "entry_id",
    "format_id",
    "malformed_reason",
    "parse_id",
    "replay_stream",
    "split_msg_id",
)

REQUIRED_FIELDS = ("name", "payload")
"""Fields an anycast entry must have to be handed to the application (upstream writes them)."""


def parse_id(entry: str) -> tuple[int, int]:
    """``"<ms>-<seq>"`` as a comparable pair."""
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq or 0)


_STREAM_ID = re.compile(r"[0-9]{1,20}(?:-[0-9]{1,20})?")
_ID_MAX = 2**64 - 1


def checked_id(entry: str, what: str) -> tuple[int, int]:
    """:func:`parse_id` of a well-formed ``<ms>[-<seq>]`` id (ASCII digits, each part below
    2**64, as Redis accepts), raising ``InvalidMessage`` naming ``what`` otherwise."""
    if isinstance(entry, str) and _STREAM_ID.fullmatch(entry) is not None:
        ms, seq = parse_id(entry)
        if ms <= _ID_MAX and seq <= _ID_MAX:
            return ms, seq
    raise InvalidMessage(f"{what}: {entry!r} is not a stream id", data={"id": str(entry)})


def checked_msg_id(msg_id: str, what: str) -> tuple[bool, str]:
    """:func:`split_msg_id` of a well-formed ``AnycastMessage.msg_id`` (a stream id, maybe
    with the replay prefix), raising ``InvalidMessage`` naming ``what`` otherwise."""
    if not isinstance(msg_id, str):
        raise InvalidMessage(f"{what}: {msg_id!r} is not a message id", data={"id": str(msg_id)})
    replay, entry = split_msg_id(msg_id)
    try:
        checked_id(entry, what)
    except InvalidMessage as exc:
        raise InvalidMessage(
            f"{what}: {msg_id!r} is not a message id", data={"id": msg_id}
        ) from exc
    return replay, entry


def format_id(pair: tuple[int, int]) -> str:
    """The inverse of :func:`parse_id`."""
    return f"{pair[0]}-{pair[1]}"


def replay_stream(group: str) -> str:
    """Key of the replay stream of ``group``."""
    return REPLAY_STREAM_PREFIX + group


def split_msg_id(msg_id: str) -> tuple[bool, str]:
    """``(from_replay_stream, entry id)`` of an ``AnycastMessage.msg_id``."""
    if msg_id.startswith(REPLAY_ID_PREFIX):
        return True, msg_id[len(REPLAY_ID_PREFIX) :]
    return False, msg_id


def entry_id(replay: bool, entry: str) -> str:
    """The ``AnycastMessage.msg_id`` of an entry of the anycast or the replay stream."""
    return REPLAY_ID_PREFIX + entry if replay else entry


def malformed_reason(fields: Mapping[str, str]) -> str | None:
    """Why an entry cannot be handed to the application, or ``None`` if it can."""
    missing = [name for name in REQUIRED_FIELDS if name not in fields]
    if missing:
        return f"malformed entry: missing field(s) {', '.join(missing)}"
    return None


def check_outgoing(fields: Mapping[str, str], what: str) -> None:
    """Reject what no backend can store: no field at all, or a field that is not text."""
    if not fields:
        raise InvalidMessage(f"{what}: a message needs at least one field", data={"fields": {}})
    for key, value in fields.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidMessage(
                f"{what}: field {key!r} must map text to text, got {type(value).__name__}",
                data={"field": str(key)},
            )
