"""Tests of ai.backend.common.exception: error codes, problem bodies, pickling, validation."""

from __future__ import annotations

import inspect
import pickle
import re
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from ai.backend.common import exception
from ai.backend.common.exception import (
    BackendAIError,
    ConfigurationError,
    ErrorCode,
    ErrorDetail,
    ErrorDomain,
    ErrorOperation,
    InvalidAPIParameters,
    InvalidArgument,
    ObjectNotFound,
    OperationTimeout,
    ServiceUnavailable,
    format_validation_errors,
)
from ai.backend.common.json import dump_json, load_json

ERROR_CLASSES: list[type[BackendAIError]] = [
    obj
    for _, obj in inspect.getmembers(exception, inspect.isclass)
    if issubclass(obj, BackendAIError) and obj.__module__ == exception.__name__
]

_CODE_PART = r"[a-z][a-z0-9-]*"
ERROR_CODE_RE = re.compile(rf"{_CODE_PART}_{_CODE_PART}_{_CODE_PART}")


class _CustomInit(BackendAIError):
    """A subclass with its own positional arguments and attributes (like package leaves)."""

    error_domain = ErrorDomain.SESSION
    error_operation = ErrorOperation.CREATE
    error_detail = ErrorDetail.CONFLICT

    def __init__(self, session: str, attempts: int) -> None:
        super().__init__(f"session {session!r} failed after {attempts} attempts")
        self.session = session
        self.attempts = attempts


def test_every_error_class_is_found() -> None:
    assert {
        BackendAIError,
        ConfigurationError,
        InvalidAPIParameters,
        InvalidArgument,
        ObjectNotFound,
        OperationTimeout,
        ServiceUnavailable,
    } <= set(ERROR_CLASSES)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    ("msg", "data"),
    [("key 'a.b' is bad: 5", {"key": "a.b", "nested": {"n": [1, 2]}}), (None, None)],
)
def test_pickle_round_trip(
    cls: type[BackendAIError], msg: str | None, data: dict[str, Any] | None
) -> None:
    original = cls(msg, data=data)
    setattr(original, "extra", "kept")  # noqa: B010  # an attribute no class declares
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        clone = pickle.loads(pickle.dumps(original, protocol=protocol))
        assert type(clone) is cls
        assert clone.msg == msg
        assert clone.data == (data or {})
        assert getattr(clone, "extra", None) == "kept"
        assert str(clone) == str(original)
        assert clone.args == original.args
        assert clone.problem() == original.problem()
        assert clone.error_code() == original.error_code()


def test_pickle_round_trip_custom_init() -> None:
    original = _CustomInit("s-1", 3)
    original.data["attempt_errors"] = ["timeout", "refused"]
    clone = pickle.loads(pickle.dumps(original))
    assert type(clone) is _CustomInit
    assert (clone.session, clone.attempts) == ("s-1", 3)
    assert clone.msg == "session 's-1' failed after 3 attempts"
    assert clone.data == {"attempt_errors": ["timeout", "refused"]}
    assert str(clone.error_code()) == "session_create_conflict"


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_problem_body_shape(cls: type[BackendAIError]) -> None:
    err = cls("field 'x' is wrong: 3", data={"field": "x"})
    body = err.problem()
    assert list(body) == ["type", "title", "error_code", "msg", "data"]
    assert body["type"] == cls.error_type
    assert body["type"].startswith("https://")
    assert body["title"] == cls.error_title
    assert ERROR_CODE_RE.fullmatch(body["error_code"]), body["error_code"]
    assert body["error_code"] == str(err.error_code())
    assert ErrorCode.parse(body["error_code"]) == err.error_code()
    assert body["msg"] == "field 'x' is wrong: 3"
    assert body["data"] == {"field": "x"}
    assert 400 <= cls.status_code < 600
    assert load_json(dump_json(body)) == body
    bare = cls().problem()
    assert bare["msg"] == cls.error_title
    assert bare["data"] == {}


def test_generic_error_code_and_text() -> None:
    err = BackendAIError()
    assert str(err.error_code()) == "backendai_generic_internal-error"
    assert err.status_code == 500
    assert str(err) == err.error_title
    assert repr(BackendAIError("boom")) == (
        "BackendAIError('boom', error_code='backendai_generic_internal-error')"
    )
    assert str(ConfigurationError().error_code()) == "config_parse_invalid-parameters"
    assert str(InvalidAPIParameters().error_code()) == "backendai_generic_bad-request"


def test_builtin_leaves() -> None:
    assert isinstance(InvalidArgument("x"), ValueError)
    assert isinstance(ObjectNotFound("x"), LookupError)
    assert isinstance(OperationTimeout("x"), TimeoutError)
    with pytest.raises(ValueError, match="bad"):
        raise InvalidArgument("bad")
    assert InvalidArgument.status_code == 400
    assert ObjectNotFound.status_code == 404
    assert OperationTimeout.status_code == 504
    assert ServiceUnavailable.status_code == 503


def test_error_code_parse() -> None:
    code = ErrorCode.parse("message-queue_consume_data-expired")
    assert code == ErrorCode("message-queue", "consume", "data-expired")
    assert str(code) == "message-queue_consume_data-expired"
    # the detail may itself hold underscores; only the first two split
    assert ErrorCode.parse("a_b_c_d").error_detail == "c_d"
    for bad in ["", "a_b", "a__c", "_b_c", "a_b_"]:
        with pytest.raises(InvalidArgument) as info:
            ErrorCode.parse(bad)
        assert repr(bad) in str(info.value)


class _Port(BaseModel):
    number: int
    protocol: str


class _Inner(BaseModel):
    ports: list[_Port]
    name: str


class _Outer(BaseModel):
    a: _Inner
    count: int


def _validation_error(data: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        _Outer.model_validate(data)
    return info.value


def test_from_validation_error_lists_each_field() -> None:
    exc = _validation_error(
        {
            "a": {"ports": [{"number": "x", "protocol": "tcp"}, {"number": 2}], "name": 5},
            "count": "many",
        }
    )
    err = InvalidAPIParameters.from_validation_error(exc)
    assert err.status_code == 400
    locs = [e["loc"] for e in err.data["errors"]]
    assert sorted(locs) == sorted(["a.ports[0].number", "a.ports[1].protocol", "a.name", "count"])
    for entry in err.data["errors"]:
        assert set(entry) == {"loc", "msg", "type"}
        assert entry["msg"]
        assert entry["type"]
    assert "4 invalid field(s)" in str(err)
    for loc in locs:
        assert loc in str(err)
    body = err.problem()
    assert body["error_code"] == "backendai_generic_bad-request"
    assert load_json(dump_json(body))["data"]["errors"] == err.data["errors"]
    clone = pickle.loads(pickle.dumps(err))
    assert clone.data == err.data


def test_from_validation_error_names_source_and_root() -> None:
    err = InvalidAPIParameters.from_validation_error(
        _validation_error("not a mapping"), source="POST /sessions body"
    )
    assert err.data["source"] == "POST /sessions body"
    assert "in POST /sessions body" in str(err)
    assert err.data["errors"][0]["loc"] == ""
    assert "<root>" in str(err)


def test_format_validation_errors_locations() -> None:
    errors = format_validation_errors(
        [
            {"loc": ("a", "b", 0), "msg": "m1", "type": "t1", "input": "secret"},
            {"loc": (0, "x"), "msg": "m2", "type": "t2"},
            {"loc": ("m", "key.with.dots"), "msg": "m3", "type": "t3"},
            {"msg": "m4", "type": "t4"},
        ]
    )
    assert [e["loc"] for e in errors] == ["a.b[0]", "[0].x", "m.key.with.dots", ""]
    assert all("input" not in e for e in errors)  # inputs may hold secrets
