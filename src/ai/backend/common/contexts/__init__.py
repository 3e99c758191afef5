"""Per-task context: request id, current and triggering user, client IP, trace parent (layer 2).

Each value lives in a ``ContextVar``; ``with bind_*(...)`` sets it and resets it on exit, so a
value never leaks past its block. :class:`ContextBundle` captures all of them at once and
re-applies them elsewhere: events, background tasks and RPC calls carry a bundle across process
boundaries (``to_dict`` / ``from_dict``) and restore it around the handler.

Guarantees:
- leaving a ``bind_*`` block restores the previous value, also on error
  [tests/contexts/test_contexts.py::test_bind_restores_on_error];
- a bundle round-trips through ``to_dict``/``from_dict`` unchanged
  [tests/contexts/test_contexts.py::test_bundle_round_trip];
- tasks created inside a block see its values; changes in a task do not leak back
  [tests/contexts/test_contexts.py::test_values_follow_tasks_not_back].
- ``from_dict`` drops a malformed ``traceparent`` and a request id that ``bind_request_id``
  would refuse, so a bundle rebuilt from a peer's metadata can always be applied
  [tests/contexts/test_contexts.py::test_bundle_from_dict_drops_malformed_traceparent]
  [tests/contexts/test_contexts.py::test_bundle_from_dict_drops_invalid_request_id].
"""

from .bundle import ContextBundle
from .vars import (
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
    new_request_id,
)

__all__ = (
    "ContextBundle",
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
