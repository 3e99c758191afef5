"""The base model classes of :mod:`ai.backend.common.dto` and :func:`validate_or_raise`."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ..exception import InvalidAPIParameters

__all__ = (
    "BaseConfigModel",
    "BaseDTO",
    "BaseRequestModel",
    "BaseResponseModel",
    "to_kebab",
    "validate_or_raise",
)

M = TypeVar("M", bound=BaseModel)


def to_kebab(name: str) -> str:
    """The kebab-case alias of a field name: ``max_connections`` -> ``max-connections``."""
    return name.strip("_").replace("_", "-")


class BaseDTO(BaseModel):
    """A transfer object: immutable, unknown fields rejected, finite numbers only."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        validate_default=True,
    )


class BaseRequestModel(BaseDTO):
    """The body or query of a request; an unknown field is a client error."""

    model_config = ConfigDict(extra="forbid")


class BaseResponseModel(BaseDTO):
    """The answer of a peer; fields it adds in a newer version are ignored."""

    model_config = ConfigDict(extra="ignore")


class BaseConfigModel(BaseModel):
    """A config-facing model: kebab-case aliases, snake_case accepted too, unknown keys rejected.

    Config models are frozen so a loaded config can be shared between tasks and swapped
    whole (see :class:`ai.backend.common.configs.ConfigHolder`). A model that must accept keys
    it does not declare opts in with ``model_config = ConfigDict(extra="allow")``.
    """

    model_config = ConfigDict(
        alias_generator=to_kebab,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )


def validate_or_raise(model: type[M], data: Any, *, source: str | None = None) -> M:
    """Validate ``data`` into ``model``; failures raise ``InvalidAPIParameters`` naming each field.

    ``source`` (e.g. ``"request body"``, ``"query string"``) is named in the message.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidAPIParameters.from_validation_error(exc, source=source) from exc
