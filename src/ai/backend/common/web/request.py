"""Parse request bodies, query strings and path parameters into pydantic models.

Guarantees: a failure is an ``InvalidAPIParameters`` (400) naming each failing field and where
it came from (``body``, ``query``, ``path``)
[tests/web/test_request.py::test_body_errors_name_fields].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ..exception import InvalidAPIParameters, InvalidArgument
from ..json import load_json

__all__ = ("parse_body", "parse_match_info", "parse_query")

M = TypeVar("M", bound=BaseModel)
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _validate(model: type[M], data: Any, source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidAPIParameters.from_validation_error(exc, source=source) from exc


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The JSON body validated as ``model`` (an empty body is ``{}``)."""
    if request.content_type in _FORM_TYPES:
        raise InvalidAPIParameters(
            f"request body must be JSON, got {request.content_type}", data={"source": "body"}
        )
    raw = await request.read()
    data: Any = {}
    if raw.strip():
        try:
            data = load_json(raw, source="request body")
        except InvalidArgument as exc:
            raise InvalidAPIParameters(str(exc), data={"source": "body"}) from exc
    return _validate(model, data, "body")


def _flatten(values: Mapping[str, str] | Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key in values:
        if key in result:
            continue
        items = values.getall(key) if hasattr(values, "getall") else [values[key]]
        result[key] = items[0] if len(items) == 1 else list(items)
    return result


def parse_query(request: web.Request, model: type[M]) -> M:
    """The query string validated as ``model`` (a repeated key becomes a list)."""
    return _validate(model, _flatten(request.query), "query")


def parse_match_info(request: web.Request, model: type[M]) -> M:
    """The path parameters (``/folders/{name}``) validated as ``model``."""
    return _validate(model, dict(request.match_info), "path")
