"""The registry that resolves event names to event classes.

Guarantees:
- a second class declaring a taken name for the same delivery pattern fails at class
  creation with :class:`~.exceptions.DuplicateEventName` naming both classes
  [tests/events/test_event.py::test_duplicate_name_fails_at_definition];
- a name resolves to the class of the requested delivery pattern first, then to the class of
  the other pattern (upstream declares a few names, ``session_started`` ..., for both)
  [tests/events/test_event.py::test_resolve_prefers_delivery_pattern].
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .exceptions import DuplicateEventName, UnknownEvent
from .types import DeliveryPattern

if TYPE_CHECKING:
    from .event import AbstractEvent

__all__ = ("EventRegistry", "default_registry")


class EventRegistry:
    """Event classes by (delivery pattern, name); event classes register themselves."""

    __slots__ = ("_by_key", "_by_name")

    def __init__(self) -> None:
        self._by_key: dict[tuple[DeliveryPattern, str], type[AbstractEvent]] = {}
        self._by_name: dict[str, list[type[AbstractEvent]]] = {}

    def register(self, event_cls: type[AbstractEvent]) -> None:
        """Add a concrete event class; a taken (delivery, name) raises ``DuplicateEventName``.

        Re-defining the same class (same module and qualified name, e.g. a module reload)
        replaces the old one instead of failing.
        """
        key = (event_cls.delivery_pattern, event_cls.event_name)
        existing = self._by_key.get(key)
        if existing is not None and existing is not event_cls:
            if _qualname(existing) != _qualname(event_cls):
                raise DuplicateEventName(
                    f"event name {event_cls.event_name!r} ({event_cls.delivery_pattern}) is "
                    f"declared by both {_qualname(existing)} and {_qualname(event_cls)}",
                    data={
                        "event_name": event_cls.event_name,
                        "classes": [_qualname(existing), _qualname(event_cls)],
                    },
                )
            self._by_name[event_cls.event_name].remove(existing)
        self._by_key[key] = event_cls
        self._by_name.setdefault(event_cls.event_name, []).append(event_cls)

    def get(self, name: str, delivery: DeliveryPattern | None = None) -> type[AbstractEvent] | None:
        """The class for ``name`` (``delivery`` preferred), or ``None``."""
        if delivery is not None:
            found = self._by_key.get((delivery, name))
            if found is not None:
                return found
        candidates = self._by_name.get(name)
        return candidates[0] if candidates else None

    def resolve(self, name: str, delivery: DeliveryPattern | None = None) -> type[AbstractEvent]:
        """Like :meth:`get` but an unknown name raises ``UnknownEvent``."""
        found = self.get(name, delivery)
        if found is None:
            raise UnknownEvent(f"no event class is named {name!r}", data={"event_name": name})
        return found

    def __iter__(self) -> Iterator[type[AbstractEvent]]:
        return iter(list(self._by_key.values()))

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


default_registry = EventRegistry()
"""The registry every event class joins unless it names another one (``registry=``)."""
