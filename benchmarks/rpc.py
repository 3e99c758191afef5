"""Agent RPC: calls/s and latency of a trivial call through our pooled client, callosum and raw zmq.

Impls (alternating rounds, same run): ``ours`` (``AgentRPCPool`` calling a plain callosum peer,
the way a manager calls a real agent), ``callosum`` (a bare ``callosum.rpc.Peer`` client calling
the same server), ``zmq`` (a raw pyzmq DEALER against a ROUTER echo: the floor), and
``ours_server`` (our pool against our ``AgentRPCServer``). Servers run in subprocesses so the
client under test has the event loop to itself. Metrics: ``calls_per_s_seq`` (one caller),
``calls_per_s_100`` (100 concurrent callers), ``p50_us`` / ``p99_us`` (sequential latency).
Targets: ``calls_per_s_seq:ours/callosum`` >= 0.8 and ``calls_per_s_100:ours/callosum`` >= 0.8.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import zmq
import zmq.asyncio

from _bench import Report, alternate, free_port, parse_args

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ai.backend.common.clients.agent import (  # noqa: E402
    AgentRPCMetrics,
    AgentRPCPool,
    AgentRPCServer,
)

Call = Callable[[int], Awaitable[Any]]
Sample = tuple[float, float, list[float]]


def _packb(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=False)


# -- servers (run as subprocesses: ``rpc.py --serve KIND ADDRESS``) ----------------------------


async def _serve_callosum(address: str) -> None:
    from callosum.lower.zeromq import ZeroMQAddress, ZeroMQRPCTransport
    from callosum.rpc import Peer, RPCMessage

    async def echo(request: RPCMessage) -> Any:
        body: Any = request.body
        return body["args"][0]

    peer = Peer(
        bind=ZeroMQAddress(address),
        transport=ZeroMQRPCTransport,
        serializer=_packb,
        deserializer=_unpackb,
    )
    peer.handle_function("echo", echo)
    async with peer:
        print("READY", flush=True)
        await asyncio.Event().wait()


async def _serve_ours(address: str) -> None:
    async def echo(value: Any) -> Any:
        return value

    async with AgentRPCServer(address, handlers={"echo": echo}, max_concurrency=200):
        print("READY", flush=True)
        await asyncio.Event().wait()


async def _serve_zmq(address: str) -> None:
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(address)
    print("READY", flush=True)
    while True:
        await sock.send_multipart(await sock.recv_multipart())


def _start(kind: str) -> tuple[subprocess.Popen[bytes], str]:
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, address], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"READY", f"{kind} server did not start"
    return proc, address


# -- clients -------------------------------------------------------------------------------------


async def _measure(call: Call, n_seq: int, n_conc: int) -> tuple[float, float, list[float]]:
    for i in range(200):  # warm up
        await call(i)
    lat: list[float] = []
    t0 = time.perf_counter()
    for i in range(n_seq):
        s = time.perf_counter()
        await call(i)
        lat.append(time.perf_counter() - s)
    seq = n_seq / (time.perf_counter() - t0)

    per_worker = n_conc // 100

    async def worker(w: int) -> None:
        for i in range(per_worker):
            await call(w * per_worker + i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(100)))
    conc = per_worker * 100 / (time.perf_counter() - t0)
    return seq, conc, lat


async def _run_ours(address: str, n_seq: int, n_conc: int) -> tuple[float, float, list[float]]:
    metrics = AgentRPCMetrics(registry=None)
    async with AgentRPCPool(metrics=metrics, max_in_flight=256) as pool:
        peer = pool.peer(address)

        async def call(i: int) -> Any:
            return await peer.invoke("echo", (i,))

        return await _measure(call, n_seq, n_conc)


async def _run_callosum(address: str, n_seq: int, n_conc: int) -> tuple[float, float, list[float]]:
    from callosum.lower.zeromq import ZeroMQAddress, ZeroMQRPCTransport
    from callosum.rpc import Peer

    peer = Peer(
        connect=ZeroMQAddress(address),
        transport=ZeroMQRPCTransport,
        serializer=_packb,
        deserializer=_unpackb,
        invoke_timeout=30.0,
    )
    async with peer:

        async def call(i: int) -> Any:
            return await peer.invoke("echo", {"args": (i,), "kwargs": {}}, order_key="")

        return await _measure(call, n_seq, n_conc)


async def _run_zmq(address: str, n_seq: int, n_conc: int) -> tuple[float, float, list[float]]:
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(address)
    pending: dict[int, asyncio.Future[bytes]] = {}

    async def reader() -> None:
        while True:
            seq, body = await sock.recv_multipart()
            fut = pending.pop(int.from_bytes(seq, "little"), None)
            if fut is not None:
                fut.set_result(body)

    task = asyncio.create_task(reader())
    loop = asyncio.get_running_loop()

    async def call(i: int) -> Any:
        fut = loop.create_future()
        pending[i] = fut
        await sock.send_multipart([i.to_bytes(8, "little"), _packb(i)])
        return _unpackb(await fut)

    try:
        return await _measure(call, n_seq, n_conc)
    finally:
        task.cancel()
        await asyncio.wait([task])
        sock.close()
        ctx.term()


def main() -> None:
    """Run the benchmark (or a server, with ``--serve``)."""
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        kind, address = sys.argv[2], sys.argv[3]
        server = {"callosum": _serve_callosum, "ours": _serve_ours, "zmq": _serve_zmq}[kind]
        asyncio.run(server(address))
        return
    args = parse_args(__doc__ or "rpc", default_rounds=5)
    n_seq = 1_000 if args.quick else 5_000
    n_conc = 2_000 if args.quick else 10_000
    servers = {kind: _start(kind) for kind in ("callosum", "ours", "zmq")}
    runners: dict[str, Callable[[], Coroutine[Any, Any, Sample]]] = {
        "ours": lambda: _run_ours(servers["callosum"][1], n_seq, n_conc),
        "callosum": lambda: _run_callosum(servers["callosum"][1], n_seq, n_conc),
        "zmq": lambda: _run_zmq(servers["zmq"][1], n_seq, n_conc),
        "ours_server": lambda: _run_ours(servers["ours"][1], n_seq, n_conc),
    }
    try:
        results: dict[str, list[Sample]] = alternate(
            list(runners), args.rounds, lambda impl: asyncio.run(runners[impl]())
        )
    finally:
        for proc, _ in servers.values():
            proc.kill()
            proc.wait()
    report = Report("rpc", args.json)
    for impl, rounds in results.items():
        report.add(impl, "calls_per_s_seq", [r[0] for r in rounds], "calls/s")
        report.add(impl, "calls_per_s_100", [r[1] for r in rounds], "calls/s")
        lat = sorted(x for r in rounds for x in r[2])
        report.add(impl, "p50_us", [lat[len(lat) // 2] * 1e6], "us")
        report.add(impl, "p99_us", [lat[int(len(lat) * 0.99)] * 1e6], "us")
    for metric in ("calls_per_s_seq", "calls_per_s_100"):
        report.ratio(metric, "ours", "callosum")
        report.ratio(metric, "ours", "zmq")
        report.ratio(metric, "ours_server", "callosum")
    report.finish()


if __name__ == "__main__":
    main()
