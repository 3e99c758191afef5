"""Fallback: which errors are replaced, by what, and what always propagates."""

from __future__ import annotations

import asyncio

import pytest

from ai.backend.common.exception import InvalidArgument
from ai.backend.common.resilience import BreakerOpen, Fallback, FallbackUsed

from ._helpers import Recorder, Script


async def test_only_chosen_errors() -> None:
    rec = Recorder()
    fallback = Fallback(value="cached", on=(BreakerOpen, ConnectionError), observers=(rec,))
    assert await fallback.call(Script([BreakerOpen("open")])) == "cached"
    assert await fallback.call(Script([ConnectionError("down")])) == "cached"
    assert await fallback.call(Script(["fresh"])) == "fresh"
    with pytest.raises(ValueError):
        await fallback.call(Script([ValueError("other")]))
    catch_all = Fallback(value=None)
    with pytest.raises(asyncio.CancelledError):
        await catch_all.call(Script([asyncio.CancelledError()]))
    assert [type(e.error) for e in rec.of(FallbackUsed)] == [BreakerOpen, ConnectionError]


async def test_handler_gets_error() -> None:
    seen: list[Exception] = []

    async def handler(exc: Exception) -> str:
        seen.append(exc)
        if isinstance(exc, KeyError):
            raise LookupError("no fallback either")
        return f"fallback for {exc}"

    fallback = Fallback(handler=handler)
    err = ConnectionError("down")
    assert await fallback.call(Script([err])) == "fallback for down"
    assert seen == [err]
    with pytest.raises(LookupError) as info:
        await fallback.call(Script([KeyError("k")]))
    assert isinstance(info.value.__context__, KeyError)


def test_invalid_settings_name_the_field() -> None:
    with pytest.raises(InvalidArgument, match="value"):
        Fallback()
    with pytest.raises(InvalidArgument, match="on="):
        Fallback(value=1, on=(asyncio.CancelledError,))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="on="):
        Fallback(value=1, on=())


async def test_fallback_cannot_guard_a_block() -> None:
    with pytest.raises(InvalidArgument, match="cannot guard"):
        Fallback(value=1).guard()
