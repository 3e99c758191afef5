"""Event classes used only by the events tests (registered in the default registry)."""

from __future__ import annotations

from ai.backend.common.events import AbstractAnycastEvent, AbstractBroadcastEvent, EventDomain

__all__ = ("Murmur", "Note", "Ping", "Shout")


class Ping(AbstractAnycastEvent, name="evtest_ping", domain=EventDomain.LOG):
    """An anycast test event."""

    seq: int
    text: str = ""


class Note(AbstractAnycastEvent, name="evtest_note", domain=EventDomain.LOG):
    """A second anycast test event."""

    seq: int


class Shout(AbstractBroadcastEvent, name="evtest_shout", domain=EventDomain.LOG):
    """A broadcast test event."""

    seq: int
    topic: str = "t"

    def domain_id(self) -> str | None:
        """The topic."""
        return self.topic


class Murmur(AbstractBroadcastEvent, name="evtest_murmur", domain=EventDomain.LOG):
    """A second broadcast test event (tests leave it without a handler)."""

    seq: int = 0
