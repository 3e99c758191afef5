"""Requests/s of a hello-world aiohttp handler: the full middleware stack (ours) vs none (bare).

``ours`` runs ``install_middleware_stack`` with request id, access log (logger below INFO, so
no record is written), metrics (a private CollectorRegistry), CORS (every request carries an
allowed ``Origin``), errors and HMAC verification (memory keypair store, no replay store).
``bare`` runs the same handler with no middleware. Both are served by ``WebServer`` in this
process, one at a time; the load comes from a second process (this script with
``--load-generator``): a small asyncio HTTP/1.1 keep-alive client that signs every request
afresh (``HMACSigner``, a new date each time) so the signing cost stays in the client, and sends
the same headers to both servers. Rounds alternate ours/bare; each figure is the median.
Besides ``rps`` it reports ``server_cpu``, the server process's CPU time per request, which a
busy shared machine disturbs less than the wall-clock rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import time
import uuid

from _bench import Report, alternate, parse_args

BENCH = "web"
ORIGIN = "https://console.example.com"
ACCESS_KEY = "AKIABENCHBENCHBENCH0"
SECRET_KEY = "benchbenchbenchbenchbenchbenchbenchbench"


# --------------------------------------------------------------------------- load generator


async def _one_connection(host: str, port: int, deadline: float, counts: list[int]) -> None:
    from ai.backend.common.auth import HMACSigner

    signer = HMACSigner(ACCESS_KEY, SECRET_KEY, f"http://{host}:{port}")
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            headers = signer.sign("GET", "/hello", content_type="application/json")
            lines = ["GET /hello HTTP/1.1", f"Host: {host}:{port}", f"Origin: {ORIGIN}"]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            counts[0 if status == 200 else 1] += 1
    finally:
        writer.close()
        await writer.wait_closed()


async def _generate(host: str, port: int, duration: float, concurrency: int) -> dict[str, float]:
    counts = [0, 0]
    warmup_deadline = time.perf_counter() + min(0.5, duration / 4)
    await asyncio.gather(
        *(_one_connection(host, port, warmup_deadline, [0, 0]) for _ in range(concurrency))
    )
    start = time.perf_counter()
    deadline = start + duration
    await asyncio.gather(
        *(_one_connection(host, port, deadline, counts) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - start
    return {"ok": counts[0], "errors": counts[1], "elapsed": elapsed}


def _load_generator_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--load-generator", action="store_true")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    ns = parser.parse_args(argv)
    result = asyncio.run(_generate(ns.host, ns.port, ns.duration, ns.concurrency))
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------- servers


def _build_app(impl: str) -> object:
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from ai.backend.common.auth import HMACVerifier, Keypair, MemoryKeypairStore
    from ai.backend.common.metrics import CommonMetricRegistry
    from ai.backend.common.middlewares import CORSOptions, install_middleware_stack

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="Hello, world!")

    app = web.Application()
    if impl == "ours":
        keypair = Keypair(access_key=ACCESS_KEY, secret_key=SECRET_KEY, user_id=uuid.uuid4())
        install_middleware_stack(
            app,
            metrics=CommonMetricRegistry(CollectorRegistry()),
            cors=CORSOptions(allow_origins=[ORIGIN]),
            hmac=HMACVerifier(MemoryKeypairStore([keypair])),
        )
    app.router.add_get("/hello", hello)
    return app


async def _round(impl: str, duration: float, concurrency: int) -> tuple[float, float]:
    """``(requests/s, server CPU microseconds per request)`` of one round."""
    from ai.backend.common.web import WebServer

    app = _build_app(impl)
    async with WebServer(app, shutdown_timeout=1) as server:  # type: ignore[arg-type]
        cpu_start = time.process_time()  # this process only serves; the load is elsewhere
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--load-generator",
            "--host",
            server.host,
            "--port",
            str(server.port),
            "--duration",
            str(duration),
            "--concurrency",
            str(concurrency),
            stdout=subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        cpu = time.process_time() - cpu_start
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed with exit code {proc.returncode}")
    result = json.loads(out)
    if result["errors"] or not result["ok"]:
        raise RuntimeError(f"{impl}: {result['errors']} non-200 responses, {result['ok']} ok")
    # The CPU figure includes the warm-up requests, which the load generator does not count.
    return float(result["ok"]) / float(result["elapsed"]), cpu / float(result["ok"]) * 1e6


def main() -> None:
    """Run the rounds and print the figures."""
    if "--load-generator" in sys.argv[1:]:
        _load_generator_main(sys.argv[1:])
        return
    args = parse_args(__doc__ or BENCH, default_rounds=5)
    logging.getLogger("ai.backend.common.access").setLevel(logging.WARNING)
    duration = 2.0 if args.quick else 5.0
    concurrency = 16
    results = alternate(
        ["ours", "bare"], args.rounds, lambda impl: asyncio.run(_round(impl, duration, concurrency))
    )
    report = Report(BENCH, args.json)
    for impl in ("ours", "bare"):
        report.add(impl, "rps", [rps for rps, _ in results[impl]], "req/s")
    for impl in ("ours", "bare"):
        report.add(impl, "server_cpu", [cpu for _, cpu in results[impl]], "us/req")
    report.ratio("rps", "ours", "bare")
    report.ratio("server_cpu", "ours", "bare")
    report.finish()


if __name__ == "__main__":
    main()
