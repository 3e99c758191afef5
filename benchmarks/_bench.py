"""Shared plumbing of the benchmark scripts: options, alternating rounds, output format, servers.

Every script runs the peers and ours in one process run, alternating rounds so that machine noise
hits every implementation alike, and reports the median of the rounds. Output (see README.md):
human lines by default; with ``--json`` one object per figure,
``{"bench", "impl", "metric", "value", "unit"}``, and a last line
``{"bench", "ratios": {"<metric>:<impl>/<impl>": value}}``. This package's impl is ``ours``.

Scripts that need Redis or etcd use :func:`own_redis` / :func:`own_etcd`: the server named by
``BACKEND_REDIS_ADDR`` / ``BACKEND_ETCD_ADDR`` (``host:port``), or else a private one started on
a free loopback port in a temporary directory, stopped (SIGTERM, then SIGKILL after 5 s) and
removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

__all__ = (
    "BenchArgs",
    "Report",
    "alternate",
    "flush_redis",
    "free_port",
    "own_etcd",
    "own_redis",
    "parse_args",
)

T = TypeVar("T")


@dataclass(frozen=True)
class BenchArgs:
    """Command-line options common to every benchmark."""

    quick: bool
    json: bool
    rounds: int


def parse_args(
    description: str, argv: Sequence[str] | None = None, *, default_rounds: int = 5
) -> BenchArgs:
    """Parse ``--quick``, ``--json`` and ``--rounds``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds per impl")
    ns = parser.parse_args(argv)
    rounds = ns.rounds if ns.rounds is not None else (2 if ns.quick else default_rounds)
    if rounds < 1:
        parser.error("--rounds must be >= 1")
    return BenchArgs(quick=ns.quick, json=ns.json, rounds=rounds)


def alternate(impls: Sequence[str], rounds: int, run: Callable[[str], T]) -> dict[str, list[T]]:
    """Run ``run(impl)`` for each impl in turn, ``rounds`` times; results per impl."""
    results: dict[str, list[T]] = {impl: [] for impl in impls}
    for _ in range(rounds):
        for impl in impls:
            results[impl].append(run(impl))
    return results


@dataclass
class Report:
    """Collects figures (medians) and ratios of one benchmark and prints them."""

    bench: str
    as_json: bool
    figures: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)

    def add(
        self,
        impl: str,
        metric: str,
        samples: Sequence[float],
        unit: str,
        *,
        reduce: Literal["median", "min"] = "median",
    ) -> float:
        """Record the median (or the min, for per-call overheads) of ``samples`` and print it."""
        value = float(statistics.median(samples) if reduce == "median" else min(samples))
        self.figures[(impl, metric)] = (value, unit)
        if self.as_json:
            line = {"bench": self.bench, "impl": impl, "metric": metric}
            print(json.dumps({**line, "value": value, "unit": unit}), flush=True)
        else:
            lo, hi = min(samples), max(samples)
            spread = f" (min {lo:,.1f}, max {hi:,.1f})" if len(samples) > 1 else ""
            head = f"{self.bench:12} {impl:12} {metric:20}"
            print(f"{head} {value:14,.1f} {unit}{spread}", flush=True)
        return value

    def ratio(self, metric: str, num: str, den: str) -> float:
        """Record ``metric`` of ``num`` divided by that of ``den``."""
        value = self.figures[(num, metric)][0] / self.figures[(den, metric)][0]
        self.ratios[f"{metric}:{num}/{den}"] = round(value, 4)
        return value

    def finish(self) -> None:
        """Print the ratios line (JSON) or a ratio table (human)."""
        if self.as_json:
            print(json.dumps({"bench": self.bench, "ratios": self.ratios}), flush=True)
        else:
            for key, value in self.ratios.items():
                print(f"{self.bench:12} ratio {key:40} {value:8.3f}", flush=True)
        sys.stdout.flush()


# -- servers ------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _own_server(
    binary: str,
    env_var: str,
    port: int,
    argv: Callable[[Path], list[str]],
    ready: Callable[[], bool],
    *,
    timeout: float,
    workdir_prefix: str,
) -> Iterator[None]:
    """Run ``binary argv(workdir)`` until ``ready()`` (OSError counts as not yet), then yield.

    Stops the process (SIGTERM, SIGKILL after 5 s) and removes the directory at the end.
    """
    path = shutil.which(binary)
    if path is None:
        raise SystemExit(f"{binary} not found (or set {env_var}=host:port)")
    workdir = Path(tempfile.mkdtemp(prefix=workdir_prefix))
    proc = subprocess.Popen(
        [path, *argv(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                if ready():
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{binary} did not start on port {port}")
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def own_redis(workdir_prefix: str = "bench-redis-") -> Iterator[str]:
    """A redis url: BACKEND_REDIS_ADDR, or a private server (no persistence) started here.

    The benchmarks FLUSHALL their server between rounds, so an external server is used only
    with ``BACKEND_TEST_ALLOW_FLUSH=1`` (the same opt-in the test harness asks for).
    """
    addr = os.environ.get("BACKEND_REDIS_ADDR")
    if addr:
        if os.environ.get("BACKEND_TEST_ALLOW_FLUSH") != "1":
            raise SystemExit(
                f"BACKEND_REDIS_ADDR={addr}: the benchmark wipes its Redis between rounds;"
                " set BACKEND_TEST_ALLOW_FLUSH=1 to allow it, or unset BACKEND_REDIS_ADDR"
            )
        yield f"redis://{addr}"
        return
    port = free_port()

    def argv(workdir: Path) -> list[str]:
        return [
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
        ]

    def pong() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    with _own_server(
        "redis-server",
        "BACKEND_REDIS_ADDR",
        port,
        argv,
        pong,
        timeout=10,
        workdir_prefix=workdir_prefix,
    ):
        yield f"redis://127.0.0.1:{port}"


@contextlib.contextmanager
def own_etcd(workdir_prefix: str = "bench-etcd-") -> Iterator[str]:
    """``host:port`` of BACKEND_ETCD_ADDR, or of a private single-member etcd started here."""
    addr = os.environ.get("BACKEND_ETCD_ADDR")
    if addr:
        yield addr
        return
    client, peer = free_port(), free_port()

    def argv(workdir: Path) -> list[str]:
        return [
            "--name=bench",
            f"--data-dir={workdir}/data",
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=bench=http://127.0.0.1:{peer}",
        ]

    def healthy() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=1) as r:
            return b"true" in r.read()

    with _own_server(
        "etcd",
        "BACKEND_ETCD_ADDR",
        client,
        argv,
        healthy,
        timeout=30,
        workdir_prefix=workdir_prefix,
    ):
        yield f"127.0.0.1:{client}"


async def flush_redis(url: str) -> None:
    """``FLUSHALL`` the server at ``url`` (before each round)."""
    import redis.asyncio as aioredis  # here: scripts without Redis do not need redis-py

    client = aioredis.Redis.from_url(url, socket_timeout=None)
    try:
        await client.flushall()
    finally:
        await client.aclose()
