"""Pydantic base classes for transfer objects: requests, responses and config models (layer 2).

- :class:`BaseDTO`: frozen, unknown fields rejected, no NaN/infinity, defaults validated.
- :class:`BaseRequestModel`: what a client sends; an unknown field is an error (a typo never
  passes unnoticed).
- :class:`BaseResponseModel`: what a peer answers; unknown fields are ignored, so a newer peer
  that adds a field does not break an older reader.
- :class:`BaseConfigModel`: config-facing models; keys are accepted as ``snake_case`` field
  names and as their ``kebab-case`` aliases, unknown keys are errors.
- :func:`validate_or_raise`: validate data into a model or raise
  :class:`~ai.backend.common.exception.InvalidAPIParameters` (400) listing each failing field.

Guarantees:
- a request model rejects unknown fields and a response model drops them
  [tests/dto/test_base.py::test_request_forbids_and_response_ignores_extra];
- every model built on :class:`BaseDTO` is immutable
  [tests/dto/test_base.py::test_models_are_frozen];
- a config model accepts both ``snake_case`` and ``kebab-case`` keys
  [tests/dto/test_base.py::test_config_model_accepts_both_spellings];
- :func:`validate_or_raise` never lets a pydantic ``ValidationError`` escape; the 400 it raises
  names every failing field [tests/dto/test_base.py::test_validate_or_raise_lists_every_field].
"""

from .base import (
    BaseConfigModel,
    BaseDTO,
    BaseRequestModel,
    BaseResponseModel,
    to_kebab,
    validate_or_raise,
)

__all__ = (
    "BaseConfigModel",
    "BaseDTO",
    "BaseRequestModel",
    "BaseResponseModel",
    "to_kebab",
    "validate_or_raise",
)
