"""A small storage-proxy manager API served by a real aiohttp server (aiohttp.test_utils)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ai.backend.common.clients.http import AUTH_HEADER, HTTPSessionPool

SECRET = "s3cr3t"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeStorageProxy:
    """In-memory volumes, folders, quota scopes and files behind upstream's paths."""

    def __init__(self) -> None:
        self.quota: dict[tuple[str, str], dict[str, Any]] = {}
        self.folders: dict[tuple[str, str], dict[str, str]] = {}
        self.seen_headers: list[dict[str, str]] = []
        self.fail_next: list[int] = []

    def app(self) -> web.Application:
        @web.middleware
        async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.seen_headers.append(dict(request.headers))
            if self.fail_next:
                status = self.fail_next.pop(0)
                return web.json_response(
                    {"type": "about:blank", "title": "fail", "error_code": "storage_x_y"},
                    status=status,
                    content_type="application/problem+json",
                )
            if request.path != "/" and request.headers.get(AUTH_HEADER) != SECRET:
                raise web.HTTPForbidden()
            return await handler(request)

        app = web.Application(middlewares=[auth])
        r = app.router
        r.add_get("/", self.status)
        r.add_get("/volumes", self.volumes)
        r.add_get("/volume/hwinfo", self.hwinfo)
        r.add_post("/quota-scope", self.create_qs)
        r.add_get("/quota-scope", self.get_qs)
        r.add_patch("/quota-scope", self.update_qs)
        r.add_delete("/quota-scope/quota", self.unset_quota)
        r.add_post("/folder/create", self.create_folder)
        r.add_post("/folder/delete", self.delete_folder)
        r.add_get("/folder/usage", self.usage)
        r.add_post("/folder/file/mkdir", self.mkdir)
        r.add_post("/folder/file/list", self.list_files)
        r.add_post("/folder/file/download", self.download)
        r.add_get("/slow", self.slow)
        return app

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "type": "manager-facing", "storage-proxy": "1"})

    async def volumes(self, request: web.Request) -> web.Response:
        vol = {
            "name": "local",
            "backend": "vfs",
            "path": "/vfroot/local",
            "fsprefix": ".",
            "capabilities": ["vfolder", "quota"],
        }
        return web.json_response({"volumes": [vol]})

    async def hwinfo(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"status": "healthy", "volume": body["volume"]})

    async def create_qs(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = (body["volume"], body["qsid"])
        if key in self.quota:
            return web.json_response(
                {"msg": "Volume already exists with given quota scope."}, status=409
            )
        self.quota[key] = {"limit_bytes": (body["options"] or {}).get("limit_bytes")}
        return web.Response(status=204)

    async def get_qs(self, request: web.Request) -> web.Response:
        body = await request.json()
        entry = self.quota.get((body["volume"], body["qsid"]))
        if entry is None:
            return web.json_response(
                {
                    "type": "https://api.backend.ai/probs/quota-scope-not-found",
                    "title": "Quota scope not found",
                    "error_code": "storage-proxy_read_not-found",
                    "msg": "no such quota scope",
                },
                status=404,
                content_type="application/problem+json",
            )
        return web.json_response({"used_bytes": 10, "limit_bytes": entry["limit_bytes"]})

    async def update_qs(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.quota[(body["volume"], body["qsid"])] = {"limit_bytes": body["options"]["limit_bytes"]}
        return web.Response(status=204)

    async def unset_quota(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.quota[(body["volume"], body["qsid"])]["limit_bytes"] = None
        return web.Response(status=204)

    async def create_folder(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.folders[(body["volume"], body["vfid"])] = {}
        return web.Response(status=204)

    async def delete_folder(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.folders.pop((body["volume"], body["vfid"]), None) is None:
            return web.Response(status=410)
        return web.Response(status=202)

    async def usage(self, request: web.Request) -> web.Response:
        body = await request.json()
        files = self.folders[(body["volume"], body["vfid"])]
        return web.json_response({"file_count": len(files), "used_bytes": 0})

    async def mkdir(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.folders[(body["volume"], body["vfid"])][body["relpath"]] = "DIRECTORY"
        return web.Response(status=204)

    async def list_files(self, request: web.Request) -> web.Response:
        body = await request.json()
        files = self.folders[(body["volume"], body["vfid"])]
        items = [{"name": n, "type": t, "stat": {"size": 0}} for n, t in files.items()]
        return web.json_response({"items": items})

    async def download(self, request: web.Request) -> web.Response:
        return web.json_response({"token": "tok-1"})

    async def slow(self, request: web.Request) -> web.Response:
        import asyncio

        await asyncio.sleep(3600)
        return web.Response()


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[FakeStorageProxy, str]]:
    """The fake storage proxy on a real loopback server: (state, endpoint URL)."""
    fake = FakeStorageProxy()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("/"))
    finally:
        await server.close()


@pytest.fixture
async def pool() -> AsyncIterator[HTTPSessionPool]:
    """An HTTP session pool with the default policies."""
    async with HTTPSessionPool(timeout=10.0) as p:
        yield p
