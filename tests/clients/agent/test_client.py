"""AgentClient: upstream method names and argument order on the wire, typed results."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ai.backend.common.clients.agent import (
    AgentClient,
    AgentProtocolError,
    AgentRPCPool,
    AgentRPCServer,
    CreateKernelsRequest,
    DestroyKernelRequest,
    ExecuteRequest,
    PurgeImagesRequest,
    RestartKernelRequest,
    UploadFileRequest,
)

_CANNED: dict[str, Any] = {
    "ping": None,
    "health": {"status": "healthy"},
    "gather_hwinfo": {"cpu": {"status": "healthy", "status_info": None, "metadata": {}}},
    "scan_gpu_alloc_map": {},
    "check_and_pull": {"python:3.11": "bgtask-1"},
    "purge_images": {"responses": [{"image": "a", "error": None}]},
    "create_kernels": [{"id": "k1"}],
    "destroy_kernel": None,
    "restart_kernel": {"container_id": "c1"},
    "execute": {"status": "finished", "runId": "r1", "exitCode": 0, "console": [["stdout", "hi"]]},
    "interrupt_kernel": {},
    "get_logs": {"logs": "line"},
    "upload_file": None,
    "download_file": b"tar",
    "download_single": b"raw",
    "list_files": {"files": "[]", "errors": "", "abspath": "/home/work"},
}


@pytest.fixture
async def recorded() -> AsyncIterator[tuple[AgentRPCServer, list[tuple[str, Any, Any]]]]:
    """A server answering every method with a canned reply and recording each call."""
    calls: list[tuple[str, Any, Any]] = []
    srv = AgentRPCServer("tcp://127.0.0.1:0")
    for name, reply in _CANNED.items():

        async def handler(*args: Any, _n: str = name, _r: Any = reply, **kwargs: Any) -> Any:
            calls.append((_n, args, kwargs))
            return args[0] if _n == "ping" else _r

        srv.register(name, handler)
    async with srv:
        yield srv, calls


async def test_facade_wire_calls(
    recorded: tuple[AgentRPCServer, list[tuple[str, Any, Any]]], pool: AgentRPCPool
) -> None:
    srv, calls = recorded
    agent = AgentClient(pool.peer(srv.address), agent_id="i-agent")
    assert await agent.ping("hello") == "hello"
    assert (await agent.health())["status"] == "healthy"
    assert "cpu" in await agent.gather_hwinfo()
    assert await agent.scan_gpu_alloc_map() == {}
    assert await agent.check_and_pull({"python:3.11": {"digest": "d"}}) == {
        "python:3.11": "bgtask-1"
    }
    purged = await agent.purge_images(PurgeImagesRequest(images=["a"], force=True))
    assert purged.responses[0]["image"] == "a"
    create = CreateKernelsRequest(
        session_id="s1", kernel_ids=["k1"], kernel_configs=[{"image": "x"}], cluster_info={}
    )
    assert await agent.create_kernels(create) == ({"id": "k1"},)
    await agent.destroy_kernel(DestroyKernelRequest(kernel_id="k1", session_id="s1", reason="x"))
    restart = RestartKernelRequest(session_id="s1", kernel_id="k1", image_ref="img")
    assert await agent.restart_kernel(restart) == {"container_id": "c1"}
    result = await agent.execute(
        ExecuteRequest(
            session_id="s1",
            kernel_id="k1",
            major_api_version=8,
            run_id="r1",
            mode="query",
            code="print(1)",
        )
    )
    assert (result.status, result.run_id, result.exit_code) == ("finished", "r1", 0)
    assert await agent.interrupt_kernel("k1") == {}
    assert (await agent.get_logs("k1")).logs == "line"
    upload = UploadFileRequest(kernel_id="k1", filename="a.txt", payload=b"data")
    assert await agent.upload_file(upload) == {}
    assert await agent.download_file("k1", "a.txt") == b"tar"
    assert await agent.download_single("k1", "a.txt") == b"raw"
    assert (await agent.list_files("k1", ".")).abspath == "/home/work"

    by_method = {name: (args, kwargs) for name, args, kwargs in calls}
    aid = {"agent_id": "i-agent"}
    assert by_method["ping"] == (("hello",), {})
    assert by_method["purge_images"] == ((("a",), True, False), aid)
    assert by_method["create_kernels"] == (
        ("s1", ("k1",), ({"image": "x"},), {}, {}),
        aid,
    )
    assert by_method["destroy_kernel"] == (("k1", "s1", "x"), {"suppress_events": True, **aid})
    assert by_method["restart_kernel"] == (("s1", "k1", "img", {}), aid)
    assert by_method["execute"] == (("s1", "k1", 8, "r1", "query", "print(1)", {}, None), aid)
    assert by_method["upload_file"] == (("k1", "a.txt", b"data"), aid)
    assert by_method["list_files"] == (("k1", "."), aid)
    assert len(calls) == len(_CANNED)


async def test_unexpected_reply_shape(pool: AgentRPCPool) -> None:
    async def bad(*_: Any, **__: Any) -> Any:
        return {"status": 5}

    async with AgentRPCServer("tcp://127.0.0.1:0", handlers={"execute": bad}) as srv:
        agent = AgentClient(pool.peer(srv.address))
        with pytest.raises(AgentProtocolError):
            await agent.execute(
                ExecuteRequest(
                    session_id="s",
                    kernel_id="k",
                    major_api_version=8,
                    run_id=None,
                    mode="query",
                    code="",
                )
            )
