"""etcd members on loopback free ports, single or as a 3-member cluster, for tests.

Guarantees: each member has its own client and peer ports and data directory, binds 127.0.0.1
only, and reports healthy (``/health`` answers ``true``, which needs a leader) when a start
returns. A stop sends SIGTERM, then SIGKILL after a grace period: members that lost quorum may
ignore SIGTERM. Each member's etcd name carries a random token, and a start checks that the
member answering on the port has that name: if another process holds the port, the start
retries on new ports, or fails with `HarnessError`, and never hands out (or lets a test wipe)
a stranger's etcd [harness/test_etcd.py::test_start_never_adopts_a_foreign_member].
Limits: the methods block the calling thread. The state checks use etcd's JSON gateway
(``/v3/...``), so they need no client library.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
from .redis import AddressInUseError, ForeignServerError, parse_addr

ETCD_ADDR_ENV = "BACKEND_ETCD_ADDR"
"""Environment variable naming an existing etcd (``host:port``) to use instead of our own."""

START_TIMEOUT = 30.0
"""Seconds a member (or a cluster) gets to report healthy after it was spawned."""

_START_ATTEMPTS = 3
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class EtcdServer:
    """One etcd member: one the harness runs, or an external one it cannot control."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        name: str = "external",
        peer_port: int | None = None,
        process: ManagedProcess | None = None,
        member_name: str | None = None,
    ) -> None:
        """Wrap a member address; ``process`` is None for an external server."""
        self.host = host
        self.port = port
        self.name = name
        self.member_name = member_name if member_name is not None else name
        """The member's name inside etcd (``--name``): ``name`` plus a random token."""
        self._peer_port = peer_port
        self.process = process

    def __repr__(self) -> str:
        kind = "external" if self.process is None else self.name
        return f"<EtcdServer {kind} {self.endpoint}>"

    @property
    def external(self) -> bool:
        """Whether the server was given by the environment rather than started by the harness."""
        return self.process is None

    @property
    def endpoint(self) -> str:
        """``host:port`` of the client API."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://host:port`` of the client API."""
        return f"http://{self.endpoint}"

    @property
    def peer_port(self) -> int:
        """Port of the peer (raft) API."""
        if self._peer_port is None:
            raise ExternalServerError(
                f"the peer port of the external etcd at {self.endpoint} is unknown"
            )
        return self._peer_port

    @property
    def peer_url(self) -> str:
        """``http://host:peer_port``."""
        return f"http://{self.host}:{self.peer_port}"

    @property
    def data_dir(self) -> Path:
        """The member's data directory."""
        return self._process("locate the data of").workdir / "data"

    def _process(self, action: str) -> ManagedProcess:
        if self.process is None:
            raise ExternalServerError(
                f"cannot {action} the external etcd at {self.endpoint} "
                f"(given by {ETCD_ADDR_ENV}); the harness only controls servers it started"
            )
        return self.process

    @property
    def pid(self) -> int:
        """PID of the member process."""
        return self._process("get the PID of").pid

    def is_running(self) -> bool:
        """Whether our process is alive; for an external server, whether it reports healthy."""
        if self.process is None:
            return self.healthy()
        return self.process.is_running()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the member again with the same ports and data, and wait until it is healthy."""
        self._process("start").start()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process without waiting (cluster members only get healthy together)."""
        self._process("start").start()

    def stop(self, grace: float = DEFAULT_GRACE) -> None:
        """SIGTERM the member, then SIGKILL it after ``grace`` seconds; returns once it exited."""
        self._process("stop").stop(grace)

    def kill(self) -> None:
        """SIGKILL the member and wait until it exited."""
        self._process("kill").kill()

    def destroy(self, grace: float = DEFAULT_GRACE) -> None:
        """Stop the member for good and remove its directory (no-op for an external server)."""
        if self.process is not None:
            self.process.stop(grace)
            remove_workdir(self.process.workdir)

    def call(self, path: str, body: Mapping[str, Any] | None = None, timeout: float = 2.0) -> Any:
        """GET (no body) or POST JSON to the member's HTTP API and return the decoded reply."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, headers={"Content-Type": "application/json"}
        )
        with _HTTP.open(request, timeout=timeout) as response:
            return json.loads(response.read())

    def healthy(self, timeout: float = 2.0) -> bool:
        """Whether ``/health`` answers true now (the member has a leader and no alarm)."""
        try:
            return bool(self.call("/health", timeout=timeout).get("health") == "true")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def status(self, timeout: float = 2.0) -> dict[str, Any]:
        """The member's maintenance status (``member_id``, ``leader``, ``raftTerm``, ...)."""
        reply: dict[str, Any] = self.call("/v3/maintenance/status", {}, timeout)
        return reply

    def member_id(self) -> str:
        """The member's raft id, as the decimal string the JSON gateway uses."""
        return str(self.status()["header"]["member_id"])

    def answering_member_name(self) -> str:
        """The etcd name of the member that answers on our client port."""
        member_id = str(self.status()["header"]["member_id"])
        for member in self.call("/v3/cluster/member/list", {}).get("members", []):
            if str(member.get("ID")) == member_id:
                return str(member.get("name", ""))
        return ""

    def check_identity(self) -> None:
        """Raise `ForeignServerError` if the member on our port is not the one we started."""
        if self.process is None:
            return  # an external server: nothing to compare with
        found = self.answering_member_name()
        if found != self.member_name:
            raise ForeignServerError(
                f"port {self.port} is answered by etcd member {found!r}, not by our "
                f"{self.member_name!r}: another process holds the port"
            )

    def delete_all_keys(self) -> None:
        """Delete every key (the whole keyspace)."""
        self.call("/v3/kv/deleterange", {"key": _b64(b"\0"), "range_end": _b64(b"\0")})

    def check_alive(self) -> None:
        """Raise the start-up failure (with the log tail) if our process has exited."""
        process = self.process
        if process is not None and not process.is_running():
            if "address already in use" in process.log_since_start().lower():
                raise AddressInUseError(str(process.failure("a port is taken")))
            raise process.failure("exited during start-up")

    def log_tail(self) -> str:
        """The end of the member's log, for error messages."""
        return "" if self.process is None else self.process.log_tail()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the member reports healthy; fail fast with its log if the process exits."""
        _wait_healthy([self], timeout)


def _wait_healthy(members: Sequence[EtcdServer], timeout: float) -> None:
    """Wait until all ``members`` report healthy; fail as soon as one of them exits."""

    def ready() -> bool:
        for member in members:
            member.check_alive()
        if not all(member.healthy() for member in members):
            return False
        for member in members:
            member.check_identity()
        return True

    wait_until(
        ready,
        timeout,
        f"{list(members)} to report healthy",
        details=lambda: "\n".join(m.log_tail() for m in members),
    )


def _etcd_binary() -> str:
    path = shutil.which("etcd")
    if path is None:
        raise HarnessError("etcd is not on PATH; run scripts/system-deps.sh")
    return path


def _describe_members(names: Sequence[str]) -> list[EtcdServer]:
    """Pick ports and directories for members that form one new cluster."""
    suffix = uuid.uuid4().hex[:12]
    token = f"bai-harness-{suffix}"
    ports = {name: (free_port(), free_port()) for name in names}
    member_names = {name: f"{name}-{suffix}" for name in names}
    initial = ",".join(
        f"{member_names[n]}=http://{LOOPBACK}:{peer}" for n, (_, peer) in ports.items()
    )
    members = []
    for name, (client, peer) in ports.items():
        workdir = make_workdir(f"etcd-{name}")
        argv = [
            _etcd_binary(),
            f"--name={member_names[name]}",
            f"--data-dir={workdir / 'data'}",
            f"--listen-client-urls=http://{LOOPBACK}:{client}",
            f"--advertise-client-urls=http://{LOOPBACK}:{client}",
            f"--listen-peer-urls=http://{LOOPBACK}:{peer}",
            f"--initial-advertise-peer-urls=http://{LOOPBACK}:{peer}",
            f"--initial-cluster={initial}",
            f"--initial-cluster-token={token}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        process = ManagedProcess(f"etcd-{name}", argv, workdir)
        members.append(
            EtcdServer(
                LOOPBACK,
                client,
                name=name,
                peer_port=peer,
                process=process,
                member_name=member_names[name],
            )
        )
    return members


def _start_members(names: Sequence[str], timeout: float) -> list[EtcdServer]:
    """Start a new cluster of ``names``; retry on new ports if one was taken meanwhile."""
    for attempt in range(1, _START_ATTEMPTS + 1):
        members = _describe_members(names)
        try:
            for member in members:
                member.spawn()
            _wait_healthy(members, timeout)
        except AddressInUseError:
            for member in members:
                member.destroy(grace=0)
            if attempt == _START_ATTEMPTS:
                raise
            continue
        except BaseException:
            for member in members:
                member.destroy(grace=0)
            raise
        return members
    raise AssertionError("unreachable")


def start_etcd_server(timeout: float = START_TIMEOUT) -> EtcdServer:
    """Start a single-member etcd; the caller must `EtcdServer.destroy` it."""
    return _start_members(["single"], timeout)[0]


class EtcdCluster:
    """A cluster of etcd members on loopback."""

    def __init__(self, members: list[EtcdServer]) -> None:
        """Wrap started members; use `start_etcd_cluster` to start them."""
        self.members = members

    def __repr__(self) -> str:
        return f"<EtcdCluster {self.endpoints}>"

    @property
    def endpoints(self) -> list[str]:
        """``host:port`` of every member's client API."""
        return [m.endpoint for m in self.members]

    def running(self) -> list[EtcdServer]:
        """The members whose process is alive."""
        return [m for m in self.members if m.is_running()]

    def _leader_now(self) -> EtcdServer | None:
        by_id: dict[str, EtcdServer] = {}
        seen: set[str] = set()
        for member in self.running():
            try:
                status = member.status()
            except (OSError, ValueError, urllib.error.URLError):
                continue
            by_id[str(status["header"]["member_id"])] = member
            seen.add(str(status.get("leader", "0")))
        if len(by_id) <= len(self.members) // 2 or len(seen) != 1:
            return None
        return by_id.get(seen.pop())

    def leader(self, timeout: float = START_TIMEOUT) -> EtcdServer:
        """The member that a majority of running members agree leads (waits for an election)."""
        found: list[EtcdServer] = []

        def elected() -> bool:
            leader = self._leader_now()
            if leader is not None:
                found.append(leader)
            return leader is not None

        wait_until(elected, timeout, f"{self!r} to agree on a running leader", interval=0.1)
        return found[-1]

    def followers(self, timeout: float = START_TIMEOUT) -> list[EtcdServer]:
        """The running members other than the leader."""
        leader = self.leader(timeout)
        return [m for m in self.running() if m is not leader]

    def kill(self, member: EtcdServer) -> None:
        """SIGKILL one member and wait until it exited."""
        member.kill()

    def stop(self, member: EtcdServer, grace: float = DEFAULT_GRACE) -> None:
        """SIGTERM one member, SIGKILL after ``grace`` seconds."""
        member.stop(grace)

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until every running member reports healthy."""
        wait_until(
            lambda: all(m.healthy() for m in self.running()),
            timeout,
            f"the running members of {self!r} to report healthy",
        )

    def destroy(self) -> None:
        """Stop every member (SIGKILL after a short grace) and remove their directories."""
        for member in self.members:
            with contextlib.suppress(Exception):
                member.destroy(grace=1.0)


def start_etcd_cluster(size: int = 3, timeout: float = START_TIMEOUT) -> EtcdCluster:
    """Start a new cluster of ``size`` members with a unique token; caller must `destroy` it."""
    return EtcdCluster(_start_members([f"m{i}" for i in range(size)], timeout))


def etcd_server_from_env(environ: Mapping[str, str] | None = None) -> EtcdServer | None:
    """The external server named by ``BACKEND_ETCD_ADDR``, or None when it is unset or empty."""
    value = (os.environ if environ is None else environ).get(ETCD_ADDR_ENV, "")
    if not value.strip():
        return None
    host, port = parse_addr(value, ETCD_ADDR_ENV)
    return EtcdServer(host, port)


__all__ = (
    "ETCD_ADDR_ENV",
    "EtcdCluster",
    "EtcdServer",
    "etcd_server_from_env",
    "start_etcd_cluster",
    "start_etcd_server",
)
