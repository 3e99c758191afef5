"""JSON and problem+json responses encoded with orjson."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..exception import BackendAIError
from ..json import dump_json

__all__ = ("PROBLEM_CONTENT_TYPE", "ProblemResponse", "json_response", "problem_response")

PROBLEM_CONTENT_TYPE = "application/problem+json"


def json_response(
    data: Any,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    sort_keys: bool = False,
) -> web.Response:
    """An ``application/json`` response of ``data`` (UUIDs, datetimes, models all encode)."""
    return web.Response(
        body=dump_json(data, sort_keys=sort_keys),
        status=status,
        headers=headers,
        content_type="application/json",
    )


class ProblemResponse(web.Response):
    """A problem+json response that remembers its error (metrics read ``error_code``)."""

    def __init__(self, error: BackendAIError, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(
            body=dump_json(error.problem()),
            status=error.status_code,
            headers=headers,
            content_type=PROBLEM_CONTENT_TYPE,
        )
        self.error = error
        self.error_code = error.error_code()


def problem_response(
    error: BackendAIError, *, headers: Mapping[str, str] | None = None
) -> ProblemResponse:
    """The RFC 7807 response of ``error``: ``error.problem()`` with ``error.status_code``."""
    return ProblemResponse(error, headers=headers)
