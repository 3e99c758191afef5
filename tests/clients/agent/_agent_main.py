"""A stand-alone agent process for the chaos tests: ``python _agent_main.py tcp://host:port``.

It serves ``echo`` and ``hang`` with :class:`AgentRPCServer`, prints ``READY`` once bound and
``HANG`` when a ``hang`` call starts, and runs until killed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from ai.backend.common.clients.agent import AgentRPCServer


async def main(address: str) -> None:
    """Serve until killed."""
    server = AgentRPCServer(address)

    @server.register("echo")
    async def echo(*args: Any) -> list[Any]:
        return list(args)

    @server.register("hang")
    async def hang() -> None:
        print("HANG", flush=True)
        await asyncio.Event().wait()

    async with server:
        print("READY", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
