"""Capture every context value as one bundle and re-apply it elsewhere."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..data.user import UserData
from ..exception import InvalidArgument
from .vars import (
    _bind,
    _is_request_id,
    _is_traceparent,
    _request_id,
    bind_client_ip,
    bind_request_id,
    bind_traceparent,
    bind_triggered_user,
    bind_user,
    current_client_ip,
    current_request_id,
    current_traceparent,
    current_triggered_user,
    current_user,
)

__all__ = ("ContextBundle",)


@dataclass(frozen=True, slots=True)
class ContextBundle:
    """All context values of a task, as one immutable value."""

    request_id: str | None = None
    user: UserData | None = None
    triggered_user: UserData | None = None
    client_ip: str | None = None
    traceparent: str | None = None

    @classmethod
    def capture(cls) -> ContextBundle:
        """Snapshot the values bound in the running task."""
        return cls(
            request_id=current_request_id(),
            user=current_user(),
            triggered_user=current_triggered_user(),
            client_ip=current_client_ip(),
            traceparent=current_traceparent(),
        )

    @contextmanager
    def applied(self) -> Iterator[ContextBundle]:
        """Bind every value of this bundle for the block (``None`` values clear the var)."""
        with ExitStack() as stack:
            if self.request_id is None:
                stack.enter_context(_bind(_request_id, None))
            else:
                stack.enter_context(bind_request_id(self.request_id))
            stack.enter_context(bind_user(self.user))
            stack.enter_context(bind_triggered_user(self.triggered_user))
            stack.enter_context(bind_client_ip(self.client_ip))
            stack.enter_context(bind_traceparent(self.traceparent))
            yield self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; key order matches upstream event metadata, plus ``client_ip``."""
        return {
            "request_id": self.request_id,
            "user": None if self.user is None else self.user.model_dump(mode="json"),
            "triggered_user": (
                None if self.triggered_user is None else self.triggered_user.model_dump(mode="json")
            ),
            "traceparent": self.traceparent,
            "client_ip": self.client_ip,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContextBundle:
        """Rebuild a bundle from ``to_dict`` output.

        Unknown keys are ignored and missing ones are ``None``. A malformed ``traceparent`` is
        dropped (as W3C trace context asks of receivers), and so is a ``request_id`` that
        :func:`~ai.backend.common.contexts.bind_request_id` would refuse (empty, over 256
        characters, or not printable): a peer's bad value must not make its message fail in
        every handler, so the bundle returned can always be :meth:`applied`. A field of the
        wrong type (not a string or null) or a malformed user raises ``InvalidArgument``.
        """
        try:
            user = data.get("user")
            triggered = data.get("triggered_user")
            return cls(
                request_id=_valid_request_id(_opt_str(data, "request_id")),
                user=None if user is None else UserData.model_validate(user),
                triggered_user=None if triggered is None else UserData.model_validate(triggered),
                client_ip=_opt_str(data, "client_ip"),
                traceparent=_valid_traceparent(_opt_str(data, "traceparent")),
            )
        except ValidationError as exc:
            raise InvalidArgument(f"invalid user in context metadata: {exc}") from exc


def _valid_request_id(value: str | None) -> str | None:
    # The handler runs without a request id rather than not at all (applied() would refuse it).
    return value if value is not None and _is_request_id(value) else None


def _valid_traceparent(value: str | None) -> str | None:
    # W3C trace context: a receiver ignores a malformed traceparent and starts a new trace, so a
    # bad value from a peer must not make its message undeliverable.
    return value if value is not None and _is_traceparent(value) else None


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InvalidArgument(
        f"context metadata field {key!r} must be a string or null, got {type(value).__name__}",
        data={"field": key},
    )
