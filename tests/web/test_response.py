"""JSON and problem+json responses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson

from ai.backend.common.exception import InvalidArgument
from ai.backend.common.web import PROBLEM_CONTENT_TYPE, json_response, problem_response


def test_json_response_encodes_rich_types() -> None:
    uid = uuid.UUID(int=5)
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    resp = json_response({"id": uid, "at": when}, status=201, headers={"X-A": "1"})
    assert resp.status == 201
    assert resp.content_type == "application/json"
    assert resp.headers["X-A"] == "1"
    assert isinstance(resp.body, bytes)
    assert orjson.loads(resp.body) == {"id": str(uid), "at": "2025-01-02T03:04:05+00:00"}


def test_problem_response() -> None:
    error = InvalidArgument("field 'x' is bad", data={"field": "x"})
    resp = problem_response(error)
    assert resp.status == 400
    assert resp.content_type == PROBLEM_CONTENT_TYPE
    assert isinstance(resp.body, bytes)
    assert orjson.loads(resp.body) == error.problem()
