"""Requests/s of a hello-world aiohttp handler: the full middleware stack (ours) vs none (bare).

``ours`` runs ``install_middleware_stack`` with request id, access log (logger below INFO, so
no record is written), metrics (a private CollectorRegistry), CORS (every request carries an
allowed ``Origin``), errors and HMAC verification (memory keypair store, no replay store).
``bare`` runs the same handler with no middleware. Both are served by ``WebServer`` in this
process, one at a time; the load comes from a second process (this script with
``--load-generator``): 16 keep-alive HTTP/1.1 connections on asyncio protocols (no streams),
each signing every request afresh (``HMACSigner``, a new date each time, so every signature and
date the server verifies is new) and sending the same headers to both servers. Rounds
alternate ours/bare; each figure is the median.

Figures, all over the same measured window (after a warm-up):
- ``rps``: answered requests per second (the issue's metric; ratio ``rps:ours/bare``);
- ``server_us_per_req``: the server process's CPU time (utime + stime from
  ``/proc/<pid>/stat``) per request, which machine load disturbs far less than ``rps``
  (ratio ``server_us_per_req:bare/ours``, higher is better like the other);
- ``server_sys_us_per_req``: the kernel's share of it (stime: socket calls, wake-ups);
- ``loadgen_us_per_req`` and ``loadgen_busy``: the load generator's own CPU per request and in
  % of one core, to show it is not the bottleneck.

With ``--floor`` two more impls run in the same rounds: ``noop`` (one pass-through middleware:
aiohttp's cost of dispatching any middleware) and ``hmac_only`` (one middleware that only awaits
``HMACVerifier.verify_request``), whose ``server_us_per_req:bare/hmac_only`` bounds what any
stack that verifies HMAC signatures can reach.

On 2 cores the server and the load generator each want one; when other work takes a core they
share the other, ``rps`` then follows 1 / (server + load generator CPU per request), and the
ratio of ``rps`` moves with the machine's load while ``server_us_per_req`` does not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from typing import NamedTuple

from _bench import Report, alternate, parse_args

BENCH = "web"
ORIGIN = "https://console.example.com"
ACCESS_KEY = "AKIABENCHBENCHBENCH0"
SECRET_KEY = "benchbenchbenchbenchbenchbenchbenchbench"


# --------------------------------------------------------------------------- load generator


def _cpu_ticks(pid: int | str) -> tuple[int, int]:
    """``(utime, stime)`` of a process in clock ticks, from ``/proc/<pid>/stat`` (Linux)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()  # the command name may hold spaces
    return int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)


class _Client(asyncio.Protocol):
    """One keep-alive connection sending a freshly signed GET as soon as the last answer is in."""

    def __init__(self, load: _Load, host: str, port: int) -> None:
        from ai.backend.common.auth import HMACSigner

        self._load = load
        self._signer = HMACSigner(ACCESS_KEY, SECRET_KEY, f"http://{host}:{port}")
        self._prefix = f"GET /hello HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: {ORIGIN}\r\n"
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._send()

    def _send(self) -> None:
        assert self._transport is not None
        if not self._load.running:
            self._transport.close()
            return
        headers = self._signer.sign("GET", "/hello", content_type="application/json")
        text = self._prefix + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._transport.write((text + "\r\n").encode())

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end].lower()
            at = head.find(b"\r\ncontent-length:")
            length = int(head[at + 17 : head.find(b"\r\n", at + 2)]) if at >= 0 else 0
            if len(buffer) < end + 4 + length:
                break
            self._load.count(head[9:12] == b"200")
            buffer = buffer[end + 4 + length :]
            self._send()
        self._buffer = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self._load.running:
            self._load.lost += 1


class _Load:
    """Counts answers between the end of the warm-up and the deadline, and the CPU spent then."""

    def __init__(self, server_pid: int, warmup: float, duration: float) -> None:
        self._server_pid = server_pid
        self._measure_at = time.perf_counter() + warmup
        self._deadline = self._measure_at + duration
        self.running = True
        self.measuring = False
        self.ok = self.errors = self.lost = 0
        self._start: tuple[float, tuple[int, int], tuple[int, int]] = (0.0, (0, 0), (0, 0))
        self.result: dict[str, float] = {}

    def _snapshot(self) -> tuple[float, tuple[int, int], tuple[int, int]]:
        return time.perf_counter(), _cpu_ticks(self._server_pid), _cpu_ticks("self")

    def count(self, ok: bool) -> None:
        if not self.measuring:
            if time.perf_counter() < self._measure_at:
                return
            self.measuring = True
            self._start = self._snapshot()
        if ok:
            self.ok += 1
        else:
            self.errors += 1
        if (self.ok + self.errors) % 64 == 0 and time.perf_counter() >= self._deadline:
            end = self._snapshot()
            self.running = self.measuring = False
            tick = os.sysconf("SC_CLK_TCK")
            self.result = {
                "ok": self.ok,
                "errors": self.errors,
                "lost": self.lost,
                "elapsed": end[0] - self._start[0],
                "server_user": (end[1][0] - self._start[1][0]) / tick,
                "server_sys": (end[1][1] - self._start[1][1]) / tick,
                "loadgen_cpu": (sum(end[2]) - sum(self._start[2])) / tick,
            }


async def _generate(
    host: str, port: int, server_pid: int, duration: float, concurrency: int
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    load = _Load(server_pid, min(0.5, duration / 4), duration)
    clients = []
    for _ in range(concurrency):
        _, client = await loop.create_connection(lambda: _Client(load, host, port), host, port)
        clients.append(client)
    await asyncio.gather(*(client.closed for client in clients))
    if not load.result:
        raise RuntimeError(f"the server closed {load.lost} connections before the deadline")
    return load.result


def _load_generator_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--load-generator", action="store_true")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    ns = parser.parse_args(argv)
    result = asyncio.run(_generate(ns.host, ns.port, ns.server_pid, ns.duration, ns.concurrency))
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------- servers


def _build_app(impl: str) -> object:
    from aiohttp import web
    from aiohttp.typedefs import Handler
    from prometheus_client import CollectorRegistry

    from ai.backend.common.auth import HMACVerifier, Keypair, MemoryKeypairStore
    from ai.backend.common.metrics import CommonMetricRegistry
    from ai.backend.common.middlewares import CORSOptions, install_middleware_stack

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="Hello, world!")

    keypair = Keypair(access_key=ACCESS_KEY, secret_key=SECRET_KEY, user_id=uuid.uuid4())
    verifier = HMACVerifier(MemoryKeypairStore([keypair]))

    @web.middleware
    async def noop(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request)

    @web.middleware
    async def hmac_only(request: web.Request, handler: Handler) -> web.StreamResponse:
        await verifier.verify_request(request)
        return await handler(request)

    app = web.Application()
    if impl == "ours":
        install_middleware_stack(
            app,
            metrics=CommonMetricRegistry(CollectorRegistry()),
            cors=CORSOptions(allow_origins=[ORIGIN]),
            hmac=verifier,
        )
    elif impl == "noop":
        app.middlewares.append(noop)
    elif impl == "hmac_only":
        app.middlewares.append(hmac_only)
    app.router.add_get("/hello", hello)
    return app


class Figures(NamedTuple):
    """One round's figures."""

    rps: float
    server_us_per_req: float
    server_sys_us_per_req: float
    loadgen_us_per_req: float
    loadgen_busy: float


async def _round(impl: str, duration: float, concurrency: int) -> Figures:
    """Serve ``impl`` in this process while a load generator process drives it."""
    from ai.backend.common.web import WebServer

    app = _build_app(impl)
    async with WebServer(app, shutdown_timeout=1) as server:  # type: ignore[arg-type]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--load-generator",
            "--host",
            server.host,
            "--port",
            str(server.port),
            "--server-pid",
            str(os.getpid()),
            "--duration",
            str(duration),
            "--concurrency",
            str(concurrency),
            stdout=subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed with exit code {proc.returncode}")
    result = json.loads(out)
    if result["errors"] or not result["ok"]:
        raise RuntimeError(f"{impl}: {result['errors']} non-200 responses, {result['ok']} ok")
    ok, elapsed = float(result["ok"]), float(result["elapsed"])
    return Figures(
        rps=ok / elapsed,
        server_us_per_req=(result["server_user"] + result["server_sys"]) / ok * 1e6,
        server_sys_us_per_req=result["server_sys"] / ok * 1e6,
        loadgen_us_per_req=result["loadgen_cpu"] / ok * 1e6,
        loadgen_busy=result["loadgen_cpu"] / elapsed * 100,
    )


def main() -> None:
    """Run the rounds and print the figures."""
    if "--load-generator" in sys.argv[1:]:
        _load_generator_main(sys.argv[1:])
        return
    floor = "--floor" in sys.argv[1:]
    args = parse_args(
        __doc__ or BENCH, [a for a in sys.argv[1:] if a != "--floor"], default_rounds=5
    )
    logging.getLogger("ai.backend.common.access").setLevel(logging.WARNING)
    duration = 2.0 if args.quick else 5.0
    concurrency = 16
    impls = ["ours", "bare", "noop", "hmac_only"] if floor else ["ours", "bare"]
    results = alternate(
        impls, args.rounds, lambda impl: asyncio.run(_round(impl, duration, concurrency))
    )
    report = Report(BENCH, args.json)
    for metric, unit in (
        ("rps", "req/s"),
        ("server_us_per_req", "us/req"),
        ("server_sys_us_per_req", "us/req"),
        ("loadgen_us_per_req", "us/req"),
        ("loadgen_busy", "% of a core"),
    ):
        for impl in impls:
            report.add(impl, metric, [getattr(f, metric) for f in results[impl]], unit)
    report.ratio("rps", "ours", "bare")
    report.ratio("server_us_per_req", "bare", "ours")
    if floor:
        # The best any stack that verifies HMAC signatures could reach.
        report.ratio("server_us_per_req", "bare", "noop")
        report.ratio("server_us_per_req", "bare", "hmac_only")
    report.finish()


if __name__ == "__main__":
    main()
