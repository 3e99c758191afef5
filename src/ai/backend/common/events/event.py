"""The base class of every event: a frozen pydantic model with class-level settings.

An event class declares its wire name, domain and delivery pattern as class keywords::

    class BgtaskDoneEvent(AbstractEvent, name="bgtask_done", domain=EventDomain.BGTASK,
                          delivery=DeliveryPattern.BROADCAST):
        task_id: uuid.UUID
        message: str | None = None

``domain`` and ``delivery`` are inherited, so a family base declares them once; a class is
*concrete* (registered, publishable) when it declares ``name``. The model's fields are the
message body, rendered with pydantic's JSON serializer (upstream's wire form).

Guarantees:
- a bad declaration (name not snake_case, no domain or delivery, a concrete parent) fails
  when the class is created [tests/events/test_event.py::test_bad_definitions_fail];
- decoding ignores unknown fields [tests/events/test_event.py::test_decode_ignores_unknown_fields];
- events are immutable, so one decoded instance is shared by every handler
  [tests/events/test_event.py::test_events_are_frozen].
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from .exceptions import EventDefinitionError
from .registry import EventRegistry, default_registry
from .types import DeliveryPattern, EventCacheDomain, EventDomain

__all__ = ("AbstractAnycastEvent", "AbstractBroadcastEvent", "AbstractEvent")

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


class AbstractEvent(BaseModel):
    """Base of every event; subclass it with ``name=``, ``domain=`` and ``delivery=``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_name: ClassVar[str]
    """The wire name (snake_case); set by the ``name=`` class keyword."""
    event_domain: ClassVar[EventDomain]
    """The domain; set by ``domain=`` here or on a base class."""
    delivery_pattern: ClassVar[DeliveryPattern]
    """Anycast or broadcast; set by ``delivery=`` here or on a base class."""
    cache_domain: ClassVar[EventCacheDomain | None] = None
    """When set, :meth:`cache_id` names the key a cached broadcast of this event is kept under."""
    is_concrete: ClassVar[bool] = False
    """True for classes that declared ``name`` (registered and publishable)."""

    def __init_subclass__(
        cls,
        *,
        name: str | None = None,
        domain: EventDomain | None = None,
        delivery: DeliveryPattern | None = None,
        cache_domain: EventCacheDomain | None = None,
        registry: EventRegistry | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        where = f"{cls.__module__}.{cls.__qualname__}"
        if domain is not None:
            if not isinstance(domain, EventDomain):
                raise EventDefinitionError(
                    f"{where}: domain must be an EventDomain, got {domain!r}",
                    data={"class": where, "field": "domain"},
                )
            cls.event_domain = domain
        if delivery is not None:
            if not isinstance(delivery, DeliveryPattern):
                raise EventDefinitionError(
                    f"{where}: delivery must be a DeliveryPattern, got {delivery!r}",
                    data={"class": where, "field": "delivery"},
                )
            cls.delivery_pattern = delivery
        if cache_domain is not None:
            cls.cache_domain = cache_domain
        parent_concrete = cls.is_concrete
        if name is None:
            if parent_concrete:
                raise EventDefinitionError(
                    f"{where} subclasses the concrete event {cls.event_name!r} without a name=",
                    data={"class": where, "field": "name"},
                )
            return
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise EventDefinitionError(
                f"{where}: event name must be snake_case, got {name!r}",
                data={"class": where, "field": "name"},
            )
        for attr, keyword in (("event_domain", "domain"), ("delivery_pattern", "delivery")):
            if not hasattr(cls, attr):
                raise EventDefinitionError(
                    f"{where} (event {name!r}) declares no {keyword}=",
                    data={"class": where, "field": keyword},
                )
        cls.event_name = name
        cls.is_concrete = True
        (registry if registry is not None else default_registry).register(cls)

    def domain_id(self) -> str | None:
        """The id of the entity this event is about, within its domain (for the event hub)."""
        return None

    def cache_id(self) -> str | None:
        """The cache key of this event (``<cache_domain>.<domain_id>``), or ``None``."""
        if self.cache_domain is None:
            return None
        domain_id = self.domain_id()
        return None if domain_id is None else self.cache_domain.cache_id(domain_id)


class AbstractAnycastEvent(AbstractEvent, delivery=DeliveryPattern.ANYCAST):
    """Base of events handled by one consumer per group (upstream's name)."""


class AbstractBroadcastEvent(AbstractEvent, delivery=DeliveryPattern.BROADCAST):
    """Base of events every subscriber receives (upstream's name)."""
