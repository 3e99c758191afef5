"""Tests of the context variables, their bind_* managers and ContextBundle."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from ai.backend.common.contexts import (
    ContextBundle,
    bind_client_ip,
    bind_request_id,
    bind_traceparent,
    bind_triggered_user,
    bind_user,
    current_client_ip,
    current_request_id,
    current_traceparent,
    current_triggered_user,
    current_user,
    new_request_id,
)
from ai.backend.common.data import UserData, UserRole
from ai.backend.common.exception import InvalidArgument

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ALICE = UserData(user_id=uuid.UUID(int=1), role=UserRole.ADMIN, is_admin=True)
BOB = UserData(user_id=uuid.UUID(int=2), domain_name="research", domain_id=uuid.UUID(int=9))

Binder = Callable[[Any], AbstractContextManager[Any]]

CASES: list[tuple[str, Binder, Callable[[], Any], Any, Any]] = [
    ("request_id", bind_request_id, current_request_id, "req-outer", "req-inner"),
    ("user", bind_user, current_user, ALICE, BOB),
    ("triggered_user", bind_triggered_user, current_triggered_user, ALICE, BOB),
    ("client_ip", bind_client_ip, current_client_ip, "10.0.0.1", "::1"),
    (
        "traceparent",
        bind_traceparent,
        current_traceparent,
        TRACEPARENT,
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    ),
]


class Boom(Exception):
    pass


def fail_inside(bind: Binder, current: Callable[[], Any], value: Any) -> None:
    with bind(value):
        assert current() == value
        raise Boom(value)


def full_bundle() -> ContextBundle:
    return ContextBundle(
        request_id="req-0123456789abcdef",
        user=ALICE,
        triggered_user=BOB,
        client_ip="192.0.2.7",
        traceparent=TRACEPARENT,
    )


@pytest.mark.parametrize(("name", "bind", "current", "outer", "inner"), CASES)
def test_bind_restores_on_error(
    name: str, bind: Binder, current: Callable[[], Any], outer: Any, inner: Any
) -> None:
    assert current() is None
    with bind(outer):
        assert current() == outer
        with pytest.raises(Boom):
            fail_inside(bind, current, inner)
        assert current() == outer
    assert current() is None


def test_bind_request_id_generates_one() -> None:
    with bind_request_id() as rid:
        assert rid.startswith("req-")
        assert len(rid) == 20
        assert current_request_id() == rid
    assert new_request_id() != new_request_id()


@pytest.mark.parametrize("bad", ["", "x" * 257, "req\n1", "req\x00"])
def test_request_id_validation(bad: str) -> None:
    with pytest.raises(InvalidArgument) as info, bind_request_id(bad):
        pass
    assert info.value.data == {"field": "request_id"}
    assert current_request_id() is None


def test_request_id_limits_accepted() -> None:
    with bind_request_id("x" * 256) as rid:
        assert current_request_id() == rid


@pytest.mark.parametrize(
    "bad",
    [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # uppercase
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",  # short parent id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        " " + TRACEPARENT,
        TRACEPARENT + "\n",
    ],
)
def test_traceparent_validation(bad: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        bind_traceparent(bad)
    assert info.value.data == {"field": "traceparent"}
    assert current_traceparent() is None


def test_traceparent_valid_and_none() -> None:
    with bind_traceparent(TRACEPARENT):
        assert current_traceparent() == TRACEPARENT
        with bind_traceparent(None):
            assert current_traceparent() is None
        assert current_traceparent() == TRACEPARENT


async def test_values_follow_tasks_not_back() -> None:
    seen: list[Any] = []
    inside = asyncio.Event()
    release = asyncio.Event()

    async def child() -> None:
        seen.append((current_request_id(), current_user()))
        with bind_request_id("req-child"), bind_user(BOB):
            seen.append((current_request_id(), current_user()))
            await asyncio.sleep(0)

    async def holder() -> None:
        with bind_client_ip("203.0.113.1"):
            inside.set()
            await release.wait()
            seen.append(current_client_ip())

    with bind_request_id("req-parent"), bind_user(ALICE):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(child())
            tg.create_task(holder())
            await inside.wait()
            # The holder task is inside its block right now; its value stays there.
            assert current_client_ip() is None
            release.set()
        assert current_request_id() == "req-parent"
        assert current_user() == ALICE
    assert seen == [("req-parent", ALICE), ("req-child", BOB), "203.0.113.1"]
    # A task created outside any block sees nothing.
    assert await asyncio.create_task(asyncio.to_thread(current_request_id)) is None


def test_bundle_capture() -> None:
    assert ContextBundle.capture() == ContextBundle()
    expected = full_bundle()
    with (
        bind_request_id(expected.request_id),
        bind_user(expected.user),
        bind_triggered_user(expected.triggered_user),
        bind_client_ip(expected.client_ip),
        bind_traceparent(expected.traceparent),
    ):
        assert ContextBundle.capture() == expected
    assert ContextBundle.capture() == ContextBundle()


def test_bundle_applied_binds_and_restores() -> None:
    bundle = full_bundle()
    with bundle.applied() as applied:
        assert applied is bundle
        assert ContextBundle.capture() == bundle
        # An empty bundle clears every value inside its block.
        with ContextBundle().applied():
            assert ContextBundle.capture() == ContextBundle()
        assert ContextBundle.capture() == bundle
    assert ContextBundle.capture() == ContextBundle()


def test_bundle_applied_restores_on_error() -> None:
    with bind_request_id("req-outer"), pytest.raises(Boom), full_bundle().applied():
        raise Boom()
    assert ContextBundle.capture() == ContextBundle()


def test_bundle_with_bad_value_binds_nothing() -> None:
    bad = ContextBundle(request_id="req-1", user=ALICE, traceparent="not-a-traceparent")
    with pytest.raises(InvalidArgument), bad.applied():
        pass
    assert ContextBundle.capture() == ContextBundle()


def test_bundle_round_trip() -> None:
    for bundle in (full_bundle(), ContextBundle(), ContextBundle(user=BOB)):
        data = bundle.to_dict()
        assert ContextBundle.from_dict(data) == bundle
        assert ContextBundle.from_dict(json.loads(json.dumps(data))) == bundle


def test_bundle_dict_shape() -> None:
    data = full_bundle().to_dict()
    assert list(data) == ["request_id", "user", "triggered_user", "traceparent", "client_ip"]
    assert data["user"] == {
        "user_id": str(uuid.UUID(int=1)),
        "is_authorized": True,
        "is_admin": True,
        "is_superadmin": False,
        "role": "admin",
        "domain_name": "default",
        "domain_id": None,
    }


def test_bundle_from_dict_tolerates_missing_and_unknown_keys() -> None:
    assert ContextBundle.from_dict({}) == ContextBundle()
    assert ContextBundle.from_dict({"request_id": "r", "extra": 1}) == ContextBundle(request_id="r")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"request_id": 5}, "request_id"),
        ({"client_ip": ["1.2.3.4"]}, "client_ip"),
        ({"traceparent": {}}, "traceparent"),
    ],
)
def test_bundle_from_dict_rejects_wrong_types(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        ContextBundle.from_dict(data)
    assert info.value.data == {"field": field}
    assert field in str(info.value)


def test_bundle_from_dict_rejects_bad_user() -> None:
    with pytest.raises(InvalidArgument) as info:
        ContextBundle.from_dict({"user": {"user_id": "not-a-uuid"}})
    assert "user" in str(info.value)


def test_bundle_from_dict_drops_malformed_traceparent() -> None:
    bundle = ContextBundle.from_dict({"request_id": "req-1", "traceparent": "00-not-a-trace"})
    assert bundle.traceparent is None
    assert bundle.request_id == "req-1"
    with bundle.applied():
        assert current_traceparent() is None


@pytest.mark.parametrize("bad", ["", "x" * 257, "r" * 300, "req\n1", "req\x00", "req\u2028"])
def test_bundle_from_dict_drops_invalid_request_id(bad: str) -> None:
    # A peer's bad request id must not make applied() fail in every handler of its event.
    bundle = ContextBundle.from_dict(
        {"request_id": bad, "user": ALICE.model_dump(mode="json"), "traceparent": TRACEPARENT}
    )
    assert bundle == ContextBundle(user=ALICE, traceparent=TRACEPARENT)
    with bundle.applied():
        assert current_request_id() is None
        assert current_user() == ALICE
        assert current_traceparent() == TRACEPARENT


def test_bundle_from_dict_keeps_request_id_at_the_limit() -> None:
    bundle = ContextBundle.from_dict({"request_id": "x" * 256})
    assert bundle.request_id == "x" * 256
    with bundle.applied():
        assert current_request_id() == "x" * 256


def test_bundle_from_dict_keeps_valid_traceparent() -> None:
    bundle = ContextBundle.from_dict({"traceparent": TRACEPARENT})
    assert bundle.traceparent == TRACEPARENT
