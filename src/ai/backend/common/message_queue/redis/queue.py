"""RedisMessageQueue: the stream and pub/sub halves put together."""

from __future__ import annotations

from .pubsub import BroadcastMixin
from .streams import StreamsMixin

__all__ = ("RedisMessageQueue",)


class RedisMessageQueue(StreamsMixin, BroadcastMixin):
    """The Redis Streams message queue; see :class:`~ai.backend.common.message_queue.abc.
    AbstractMessageQueue` and the package docstring for what it adds and its limits.

    Pass a :class:`~ai.backend.common.clients.valkey.ValkeyTarget` (the queue opens and closes
    its own client) or an open :class:`~ai.backend.common.clients.valkey.ValkeyClient`
    (shared; the queue never closes it).
    """
