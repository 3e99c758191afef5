"""redis-server and redis-sentinel processes on loopback free ports, for tests.

Guarantees: each server has its own port and directory, persists nothing (``save ""``,
``appendonly no``), binds 127.0.0.1 only, and is ready (answers PING) when a start returns.
A start verifies that the server answering on the port is ours (``INFO server`` reports our
process id): if another process holds the port, the start retries on a new port, or fails with
`HarnessError`, and never hands out (or lets a test FLUSHALL) a stranger's server
[harness/test_redis.py::test_start_never_adopts_a_foreign_server].
Limits: the methods block the calling thread; from async code call them through
``asyncio.to_thread`` when other tasks must keep running meanwhile.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .ports import LOOPBACK, free_port
from .process import (
    DEFAULT_GRACE,
    ExternalServerError,
    HarnessError,
    ManagedProcess,
    make_workdir,
    remove_workdir,
    wait_until,
)

REDIS_ADDR_ENV = "BACKEND_REDIS_ADDR"
"""Environment variable naming an existing Redis (``host:port``) to use instead of our own."""

START_TIMEOUT = 15.0
"""Seconds a redis process gets to answer PING after it was spawned."""

_START_ATTEMPTS = 3

ConfigBuilder = Callable[[int, Path], list[str]]
"""Builds the config file lines of a server from its port and directory."""


class AddressInUseError(HarnessError):
    """The port picked for a server was taken by another process before the server bound it."""


class ForeignServerError(AddressInUseError):
    """Something answers on our server's port, but it is not the process we started."""


def parse_addr(value: str, variable: str) -> tuple[str, int]:
    """Parse ``host:port`` (``[v6]:port`` for IPv6) from an environment variable."""
    host, sep, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise HarnessError(f"{variable}={value!r} is not host:port")
    return host, int(port)


def server_config(
    port: int,
    workdir: Path,
    *,
    replicaof: tuple[str, int] | None = None,
    extra_config: Sequence[str] = (),
    options: Mapping[str, str | int] | None = None,
) -> list[str]:
    """Config lines of a redis-server that persists nothing; ``options`` use ``_`` for ``-``."""
    lines = [
        f"port {port}",
        f"bind {LOOPBACK}",
        f"dir {workdir}",
        "daemonize no",
        'save ""',
        "appendonly no",
        # A replica would otherwise wait 5 s before its first full sync.
        "repl-diskless-sync yes",
        "repl-diskless-sync-delay 0",
    ]
    if replicaof is not None:
        lines.append(f"replicaof {replicaof[0]} {replicaof[1]}")
    for key, value in (options or {}).items():
        lines.append(f"{key.replace('_', '-')} {value}")
    lines.extend(extra_config)
    return lines


class RedisServer:
    """A Redis (or Sentinel) server: one the harness runs, or an external one it cannot control."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        process: ManagedProcess | None = None,
        config_path: Path | None = None,
    ) -> None:
        """Wrap a server address; ``process`` is None for an external server."""
        self.host = host
        self.port = port
        self.process = process
        self.config_path = config_path

    def __repr__(self) -> str:
        kind = "external" if self.process is None else self.process.name
        return f"<RedisServer {kind} {self.host}:{self.port}>"

    @property
    def external(self) -> bool:
        """Whether the server was given by the environment rather than started by the harness."""
        return self.process is None

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``."""
        return self.host, self.port

    @property
    def url(self) -> str:
        """``redis://host:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}"

    def _process(self, action: str) -> ManagedProcess:
        if self.process is None:
            raise ExternalServerError(
                f"cannot {action} the external Redis at {self.host}:{self.port} "
                f"(given by {REDIS_ADDR_ENV}); the harness only controls servers it started"
            )
        return self.process

    @property
    def pid(self) -> int:
        """PID of the server process."""
        return self._process("get the PID of").pid

    def is_running(self) -> bool:
        """Whether our process is alive; for an external server, whether it answers PING."""
        if self.process is None:
            return self.ping()
        return self.process.is_running()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the server again on the same port and directory, and wait until it answers."""
        self._process("start").start()
        self.wait_ready(timeout)

    def stop(self, grace: float = DEFAULT_GRACE) -> None:
        """SIGTERM the server, then SIGKILL it after ``grace`` seconds; returns once it exited."""
        self._process("stop").stop(grace)

    def kill(self) -> None:
        """SIGKILL the server and wait until it exited."""
        self._process("kill").kill()

    def destroy(self) -> None:
        """Stop the server for good and remove its directory (no-op for an external server)."""
        if self.process is not None:
            self.process.stop()
            remove_workdir(self.process.workdir)

    def client(self, timeout: float = 2.0) -> redis.Redis:
        """A new synchronous client (decoded responses, explicit timeouts, no retries)."""
        return redis.Redis(
            host=self.host,
            port=self.port,
            retry=Retry(NoBackoff(), 0),  # the harness polls with its own deadlines
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
        )

    def command(self, *args: str | int, timeout: float = 2.0) -> Any:
        """Run one command on a short-lived connection and return the decoded reply."""
        with self.client(timeout) as conn:
            return conn.execute_command(*args)

    def ping(self, timeout: float = 1.0) -> bool:
        """Whether the server answers PING now."""
        try:
            return bool(self.command("PING", timeout=timeout))
        except redis.RedisError:
            return False

    def role(self) -> str:
        """The first field of ROLE: ``master``, ``slave`` or ``sentinel``."""
        return str(self.command("ROLE")[0])

    def server_pid(self, timeout: float = 1.0) -> int:
        """The process id the server on our port reports (``INFO server``)."""
        info = self.command("INFO", "server", timeout=timeout)
        return int(info["process_id"])

    def check_identity(self) -> None:
        """Raise `ForeignServerError` if the server on our port is not our process."""
        process = self.process
        if process is None:
            return  # an external server: nothing to compare with
        reported = self.server_pid()
        ours = process.spawned_pid  # also when ours just died failing to bind the port
        if reported != ours:
            raise ForeignServerError(
                f"port {self.port} is answered by a server with pid {reported}, not by our "
                f"{process.name} (pid {ours}): another process holds the port"
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until our server answers PING; fail fast with its log if the process exits,
        and with `ForeignServerError` if another process answers on the port."""
        process = self.process

        def answered() -> bool:
            if process is not None and not process.is_running():
                if "Address already in use" in process.log_since_start():
                    raise AddressInUseError(str(process.failure(f"port {self.port} is taken")))
                raise process.failure("exited during start-up")
            if not self.command("PING", timeout=1.0):
                return False
            self.check_identity()
            return True

        wait_until(
            answered,
            timeout,
            f"{self!r} to answer PING",
            details=process.log_tail if process is not None else None,
        )


def _argv(config_path: Path, sentinel: bool) -> list[str]:
    if sentinel:
        exe = shutil.which("redis-sentinel")
        if exe is not None:
            return [exe, str(config_path)]
        return [_which("redis-server"), str(config_path), "--sentinel"]
    return [_which("redis-server"), str(config_path)]


def _which(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise HarnessError(f"{program} is not on PATH; run scripts/system-deps.sh")
    return path


def launch(
    name: str,
    build_config: ConfigBuilder,
    *,
    sentinel: bool = False,
    timeout: float = START_TIMEOUT,
) -> RedisServer:
    """Start a new server on a free port in a new directory; retry if the port gets taken."""
    workdir = make_workdir(name)
    config_path = workdir / ("sentinel.conf" if sentinel else "redis.conf")
    try:
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = free_port()
            config_path.write_text("\n".join(build_config(port, workdir)) + "\n")
            process = ManagedProcess(name, _argv(config_path, sentinel), workdir)
            server = RedisServer(LOOPBACK, port, process=process, config_path=config_path)
            try:
                server.start(timeout)
            except AddressInUseError:
                process.kill()
                if attempt == _START_ATTEMPTS:
                    raise
                continue
            except BaseException:
                process.kill()
                raise
            return server
    except BaseException:
        remove_workdir(workdir)
        raise
    raise AssertionError("unreachable")


def start_redis_server(
    *,
    name: str = "redis",
    replicaof: tuple[str, int] | None = None,
    extra_config: Sequence[str] = (),
    timeout: float = START_TIMEOUT,
    **options: str | int,
) -> RedisServer:
    """Start a private redis-server; ``options`` become config lines (``maxmemory="10mb"``)."""

    def build(port: int, workdir: Path) -> list[str]:
        return server_config(
            port, workdir, replicaof=replicaof, extra_config=extra_config, options=options
        )

    return launch(name, build, timeout=timeout)


def redis_server_from_env(environ: Mapping[str, str] | None = None) -> RedisServer | None:
    """The external server named by ``BACKEND_REDIS_ADDR``, or None when it is unset or empty."""
    value = (os.environ if environ is None else environ).get(REDIS_ADDR_ENV, "")
    if not value.strip():
        return None
    host, port = parse_addr(value, REDIS_ADDR_ENV)
    return RedisServer(host, port)


__all__ = (
    "REDIS_ADDR_ENV",
    "START_TIMEOUT",
    "AddressInUseError",
    "ForeignServerError",
    "RedisServer",
    "launch",
    "parse_addr",
    "redis_server_from_env",
    "server_config",
    "start_redis_server",
)
