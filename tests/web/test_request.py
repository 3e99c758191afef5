"""Request parsing into pydantic models, through a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, Field

from ai.backend.common.middlewares import error_middleware
from ai.backend.common.web import json_response, parse_body, parse_match_info, parse_query


class Body(BaseModel):
    name: str
    size: int = Field(gt=0)
    tags: list[str] = []


class Query(BaseModel):
    limit: int = 10
    owner: list[str] | str | None = None


class Path(BaseModel):
    name: str
    index: int


async def create(request: web.Request) -> web.Response:
    body = await parse_body(request, Body)
    return json_response(body)


async def search(request: web.Request) -> web.Response:
    return json_response(parse_query(request, Query))


async def item(request: web.Request) -> web.Response:
    return json_response(parse_match_info(request, Path))


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(middlewares=[error_middleware()])
    app.router.add_post("/items", create)
    app.router.add_get("/items", search)
    app.router.add_get("/items/{name}/{index}", item)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_body_parsed(client: TestClient[web.Request, web.Application]) -> None:
    resp = await client.post("/items", json={"name": "a", "size": 3})
    assert resp.status == 200
    assert await resp.json() == {"name": "a", "size": 3, "tags": []}


async def test_body_errors_name_fields(client: TestClient[web.Request, web.Application]) -> None:
    resp = await client.post("/items", json={"size": 0, "tags": ["ok", 5]})
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = await resp.json()
    locs = {e["loc"] for e in body["data"]["errors"]}
    assert locs == {"name", "size", "tags[1]"}
    assert body["data"]["source"] == "body"
    assert "name" in body["msg"]
    assert "size" in body["msg"]


async def test_body_malformed(client: TestClient[web.Request, web.Application]) -> None:
    resp = await client.post(
        "/items", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert "malformed JSON" in (await resp.json())["msg"]
    resp = await client.post("/items", data={"name": "a"})
    assert resp.status == 400
    assert "must be JSON" in (await resp.json())["msg"]
    resp = await client.post("/items")  # empty body: the required fields are named
    assert resp.status == 400
    assert {e["loc"] for e in (await resp.json())["data"]["errors"]} == {"name", "size"}


async def test_query_and_path(client: TestClient[web.Request, web.Application]) -> None:
    resp = await client.get("/items?limit=5&owner=a&owner=b")
    assert await resp.json() == {"limit": 5, "owner": ["a", "b"]}
    resp = await client.get("/items?limit=x")
    assert resp.status == 400
    body = await resp.json()
    assert body["data"]["source"] == "query"
    assert body["data"]["errors"][0]["loc"] == "limit"
    resp = await client.get("/items/disk/3")
    assert await resp.json() == {"name": "disk", "index": 3}
    resp = await client.get("/items/disk/three")
    assert resp.status == 400
    assert (await resp.json())["data"]["source"] == "path"
