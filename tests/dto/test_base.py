"""Tests of the dto base classes and validate_or_raise."""

from __future__ import annotations

import math
import uuid

import pytest
from pydantic import ValidationError

from ai.backend.common.dto import (
    BaseConfigModel,
    BaseDTO,
    BaseRequestModel,
    BaseResponseModel,
    to_kebab,
    validate_or_raise,
)
from ai.backend.common.exception import BackendAIError, InvalidAPIParameters


class CreateSession(BaseRequestModel):
    name: str
    image: str
    cluster_size: int = 1


class SessionInfo(BaseResponseModel):
    session_id: uuid.UUID
    status: str


class Limits(BaseDTO):
    ratio: float


class PoolConfig(BaseConfigModel):
    max_connections: int = 10
    connect_timeout_: float = 5.0


def test_to_kebab() -> None:
    assert to_kebab("max_connections") == "max-connections"
    assert to_kebab("port") == "port"
    assert to_kebab("from_") == "from"


def test_request_forbids_and_response_ignores_extra() -> None:
    with pytest.raises(ValidationError) as info:
        CreateSession.model_validate({"name": "s", "image": "python", "clustr_size": 2})
    assert info.value.errors()[0]["loc"] == ("clustr_size",)
    assert info.value.errors()[0]["type"] == "extra_forbidden"

    sid = uuid.uuid4()
    info_ = SessionInfo.model_validate(
        {"session_id": str(sid), "status": "RUNNING", "added_in_v2": True}
    )
    assert info_.session_id == sid
    assert "added_in_v2" not in info_.model_dump()


def test_models_are_frozen() -> None:
    req = CreateSession(name="s", image="python")
    with pytest.raises(ValidationError):
        req.name = "other"  # type: ignore[misc]
    resp = SessionInfo(session_id=uuid.uuid4(), status="RUNNING")
    with pytest.raises(ValidationError):
        resp.status = "TERMINATED"  # type: ignore[misc]
    cfg = PoolConfig()
    with pytest.raises(ValidationError):
        cfg.max_connections = 3  # type: ignore[misc]


def test_dto_rejects_nan_and_infinity() -> None:
    for bad in (math.nan, math.inf, "nan", "-inf"):
        with pytest.raises(ValidationError):
            Limits.model_validate({"ratio": bad})
    assert Limits(ratio=0.5).ratio == 0.5


def test_config_model_accepts_both_spellings() -> None:
    assert PoolConfig.model_validate({"max-connections": 3}).max_connections == 3
    assert PoolConfig.model_validate({"max_connections": 4}).max_connections == 4
    assert PoolConfig.model_validate({"connect-timeout": 1.5}).connect_timeout_ == 1.5
    assert PoolConfig.model_dump(PoolConfig(), by_alias=True) == {
        "max-connections": 10,
        "connect-timeout": 5.0,
    }
    with pytest.raises(ValidationError) as info:
        PoolConfig.model_validate({"max-conections": 3})
    assert info.value.errors()[0]["type"] == "extra_forbidden"


def test_validate_or_raise_returns_the_model() -> None:
    req = validate_or_raise(CreateSession, {"name": "s", "image": "python"})
    assert req == CreateSession(name="s", image="python")


def test_validate_or_raise_lists_every_field() -> None:
    with pytest.raises(InvalidAPIParameters) as info:
        validate_or_raise(
            CreateSession, {"image": 3, "cluster_size": "many", "x": 1}, source="request body"
        )
    err = info.value
    assert isinstance(err, BackendAIError)
    assert err.status_code == 400
    assert isinstance(err.__cause__, ValidationError)
    locs = sorted(e["loc"] for e in err.data["errors"])
    assert locs == ["cluster_size", "image", "name", "x"]
    assert err.data["source"] == "request body"
    assert "request body" in str(err)
    assert str(err.error_code()) == "backendai_generic_bad-request"
