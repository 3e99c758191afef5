"""The ContextVars themselves and the ``bind_*`` context managers that set them."""

from __future__ import annotations

import re
import secrets
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Generic, TypeVar

from ..data.user import UserData
from ..exception import InvalidArgument

__all__ = (
    "bind_client_ip",
    "bind_request_id",
    "bind_traceparent",
    "bind_triggered_user",
    "bind_user",
    "current_client_ip",
    "current_request_id",
    "current_traceparent",
    "current_triggered_user",
    "current_user",
    "new_request_id",
)

T = TypeVar("T")

_request_id: ContextVar[str | None] = ContextVar("backendai_request_id", default=None)
_user: ContextVar[UserData | None] = ContextVar("backendai_user", default=None)
_triggered_user: ContextVar[UserData | None] = ContextVar("backendai_triggered_user", default=None)
_client_ip: ContextVar[str | None] = ContextVar("backendai_client_ip", default=None)
_traceparent: ContextVar[str | None] = ContextVar("backendai_traceparent", default=None)

# W3C trace context: version "-" trace-id "-" parent-id "-" flags, lowercase hex.
_TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_MAX_REQUEST_ID_LEN = 256


def _is_traceparent(value: str) -> bool:
    # W3C Trace Context: version ff is invalid, and so are all-zero trace and parent ids.
    if not _TRACEPARENT_RE.fullmatch(value):
        return False
    version, trace_id, parent_id, _ = value.split("-")
    return version != "ff" and trace_id != "0" * 32 and parent_id != "0" * 16


def _is_request_id(value: str) -> bool:
    # What bind_request_id accepts: 1-256 printable characters (no newline, no NUL).
    return 0 < len(value) <= _MAX_REQUEST_ID_LEN and value.isprintable()


def new_request_id() -> str:
    """A fresh request id (``req-`` plus 16 random hex digits)."""
    return f"req-{secrets.token_hex(8)}"


class _bind(Generic[T]):
    """Set ``var`` to ``value`` on enter and reset it on exit (a class: about 3x cheaper than a
    generator-based context manager, and this runs several times per request)."""

    __slots__ = ("_token", "_value", "_var")

    def __init__(self, var: ContextVar[T], value: T) -> None:
        self._var = var
        self._value = value

    def __enter__(self) -> T:
        self._token = self._var.set(self._value)
        return self._value

    def __exit__(self, *exc_info: object) -> None:
        self._var.reset(self._token)


def current_request_id() -> str | None:
    """The request id of the running task, if any."""
    return _request_id.get()


def bind_request_id(request_id: str | None = None) -> AbstractContextManager[str]:
    """Set the request id for the block (a new one when ``None``); entering yields the id."""
    rid = new_request_id() if request_id is None else request_id
    if not _is_request_id(rid):
        raise InvalidArgument(
            f"request id must be 1-{_MAX_REQUEST_ID_LEN} printable characters, got {rid!r}",
            data={"field": "request_id"},
        )
    binding: _bind[str] = _bind(_request_id, rid)  # type: ignore[arg-type]  # rid is never None
    return binding


def current_user() -> UserData | None:
    """The user on whose behalf the running task acts, if any."""
    return _user.get()


def bind_user(user: UserData | None) -> AbstractContextManager[UserData | None]:
    """Set the current user for the block."""
    return _bind(_user, user)


def current_triggered_user() -> UserData | None:
    """The user whose action started this chain of work (may differ from the current user)."""
    return _triggered_user.get()


def bind_triggered_user(user: UserData | None) -> AbstractContextManager[UserData | None]:
    """Set the triggering user for the block."""
    return _bind(_triggered_user, user)


def current_client_ip() -> str | None:
    """The client IP address of the request being served, if any."""
    return _client_ip.get()


def bind_client_ip(ip: str | None) -> AbstractContextManager[str | None]:
    """Set the client IP for the block."""
    return _bind(_client_ip, ip)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the running task, if any."""
    return _traceparent.get()


def bind_traceparent(traceparent: str | None) -> AbstractContextManager[str | None]:
    """Set the W3C ``traceparent`` for the block; a malformed value raises ``InvalidArgument``."""
    if traceparent is not None and not _is_traceparent(traceparent):
        raise InvalidArgument(
            f"traceparent {traceparent!r} is not a W3C trace context",
            data={"field": "traceparent"},
        )
    return _bind(_traceparent, traceparent)
